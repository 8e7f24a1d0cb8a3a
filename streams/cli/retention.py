"""``segstream actions``: check a policy file, and the uplift report."""

from __future__ import annotations

import json
from pathlib import Path

import click

from streams.cli.root import _settings, main


@main.group()
def actions() -> None:
    """Retention actions: the policy file and the uplift report (docs/actions.md)."""


@actions.command("check")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--segments",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Custom-segment file the rules may use (default: SEGSTREAM_SEGMENTS_FILE).",
)
def actions_check(path: Path, segments: Path | None) -> None:
    """Validate a retention policy file against the segments that exist (journey, rfm,
    SEGSTREAM_CLUSTERS clusters, the custom segments); errors name the line."""
    from segmenters.actions.policy import PolicyError
    from streams.worker.rules import load_policy_file

    try:
        policy = load_policy_file(path, _settings(), segments)
    except PolicyError as exc:
        raise click.ClickException(f"{path}: {exc}") from None
    click.echo(
        f"{path}: version {policy.version}, experiment {policy.experiment}, "
        f"{len(policy.actions)} action(s), {len(policy.rules)} rule(s) OK"
    )
    for a in sorted(policy.actions.values(), key=lambda a: (-a.priority, a.id)):
        target = f"template {a.template}" if a.template else f"audience {a.audience}"
        click.echo(
            f"  {a.id:<28} {target:<30} priority {a.priority:<4} holdout {a.holdout:.0%}"
            f"  cooldown {a.cooldown_s / 3600:g} h  delay {a.delay_s:g} s"
        )
    for r in policy.rules:
        click.echo(
            f"  {r.dimension}: {r.previous or '*'} -> {r.current}  =>  {', '.join(r.actions)}"
        )


@actions.command("report")
@click.option("--experiment", help="Experiment id (default: the policy's).")
@click.option(
    "--since", help="Count decisions made at or after this ISO date/datetime (UTC if no offset)."
)
@click.option("--until", help="Count decisions made before this ISO datetime (a date: to its end).")
@click.option(
    "--min-group",
    type=click.IntRange(min=0),
    help="Fewest customers per group for an interval (default SEGSTREAM_UPLIFT_MIN_GROUP, 30).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (numbers, no display strings).")
def actions_report(
    experiment: str | None,
    since: str | None,
    until: str | None,
    min_group: int | None,
    as_json: bool,
) -> None:
    """Per action: treated vs control customers, conversion and revenue per customer in
    the policy's conversion window, the differences with 95% CI (or "too few" below
    --min-group customers per group), suppressions by reason (docs/actions.md)."""
    from segmenters.actions.policy import DEFAULT_POLICY, PolicyError, load_policy
    from segmenters.actions.uplift import parse_when, render
    from streams.store.clients import redis_client
    from streams.store.queries import iso
    from streams.worker.actions import report_data

    settings = _settings(redis=True)
    if min_group is not None:
        settings = settings.model_copy(update={"uplift_min_group": min_group})
    try:
        start = parse_when(since) if since else None
        end = parse_when(until, end=True) if until else None
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if start is not None and end is not None and end <= start:
        raise click.BadParameter("--until must be after --since")
    policy = DEFAULT_POLICY
    if settings.actions_file is not None:
        try:
            policy = load_policy(settings.actions_file.read_text())
        except (OSError, PolicyError) as exc:
            raise click.ClickException(f"{settings.actions_file}: {exc}") from None
    data = report_data(redis_client(settings), settings, policy, experiment)
    if as_json:
        click.echo(json.dumps(data.to_json(settings, since=start, until=end), indent=2))
        return
    results = data.results(min_group=settings.uplift_min_group, since=start, until=end)
    days = data.window_s / 86400
    window = "all decisions"
    if start is not None or end is not None:
        window = f"decisions {iso(start) or '…'} .. {iso(end) or '…'}"
    click.echo(
        f"experiment {data.experiment}: {len(data.assignments)} assignment(s) recorded, "
        f"{window}, conversion window {days:g} day(s), intervals from "
        f"{settings.uplift_min_group} customers per group, amounts in {settings.currency}"
    )
    if start is not None or end is not None:
        click.echo("(suppressions are counted over all time: they carry no time)")
    if not results:
        click.echo("no decisions recorded yet")
        return
    click.echo(render(results, currency=settings.currency))


@actions.command("send")
@click.argument("action")
@click.option(
    "--segment",
    "target",
    required=True,
    metavar="DIMENSION:SEGMENT",
    help="The segment whose current members get the action, e.g. journey:at_risk.",
)
@click.option(
    "--campaign-id",
    help="Names the campaign in its idempotency keys: the same id sends each member once "
    "(default: a digest of ACTION, the segment and today's UTC date).",
)
@click.option("--dry-run", is_flag=True, help="Decide and count per guard; write and send nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
def actions_send(
    action: str, target: str, campaign_id: str | None, dry_run: bool, as_json: bool
) -> None:
    """Send ACTION (channel/name, from the policy in force) once to every customer now in
    a segment, through the guards of a transition: consent, cooldown, frequency cap,
    holdout, quiet hours (docs/actions.md, "Campaigns to current members")."""
    import asyncio
    import sys
    from datetime import UTC, datetime

    from segmenters.actions.campaign import (
        Campaign,
        action_error,
        default_campaign_id,
        parse_target,
    )
    from segmenters.actions.policy import DEFAULT_POLICY, PolicyError
    from streams.tools.campaign import run_campaign
    from streams.worker.rules import load_policy_file, policy_vocabulary

    settings = _settings(kafka=not dry_run, redis=True)
    if not settings.actions_enabled:
        raise click.ClickException("actions are off (SEGSTREAM_ACTIONS_ENABLED=false)")
    policy, source = DEFAULT_POLICY, "the packaged default policy"
    try:
        if settings.actions_file is not None:
            source = str(settings.actions_file)
            policy = load_policy_file(settings.actions_file, settings)
        dimension, segment = parse_target(target, policy_vocabulary(settings))
    except (OSError, PolicyError) as exc:
        raise click.ClickException(f"{source}: {exc}") from None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--segment") from None
    error = action_error(policy, action)
    if error is not None:
        raise click.BadParameter(f"{error} in {source}", param_hint="ACTION")
    day = datetime.now(UTC).date().isoformat()
    campaign = Campaign(
        campaign_id or default_campaign_id(action, dimension, segment, day),
        action,
        dimension,
        segment,
    )

    shown: list[int] = []

    def progress(done: int, total: int) -> None:
        shown.append(done)
        click.echo(f"\r{done}/{total} member(s) decided", nl=False, err=True)

    report = asyncio.run(
        run_campaign(
            settings,
            policy,
            campaign,
            dry_run=dry_run,
            progress=progress if sys.stderr.isatty() else None,
        )
    )
    if shown:
        click.echo("", err=True)  # ends the progress line
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        click.echo(report.render())
