"""``segstream deadletters``: top reasons, show records, redrive fixed records."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from streams.cli.root import _settings, main

SINCE_HELP = (
    "Window: a span back from now (90s, 30m, 24h, 7d), an ISO-8601 time with a zone, or "
    "'all' (everything the topic retains). Dead letters count by their dead_lettered_at."
)


def _since(text: str, now: float) -> float | None:
    from segmenters.deadletters import SelectionError, parse_since

    try:
        return parse_since(text, now)
    except SelectionError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None


def _ids(values: tuple[str, ...]) -> list[tuple[int, int]]:
    from segmenters.deadletters import SelectionError, parse_id

    try:
        return [parse_id(v) for v in values]
    except SelectionError as exc:
        raise click.BadParameter(str(exc), param_hint="--offset") from None


@main.group()
def deadletters() -> None:
    """Dead letters (events.deadletter): the top reasons, a record, and redrive (send
    fixed records back to their input topic). A dead letter's id is
    <partition>:<offset> in the dead-letter topic. See docs/reliability.md, "Dead letters"."""


@deadletters.command()
@click.option("--since", default="24h", show_default=True, help=SINCE_HELP)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="Print the kinds as JSON.")
def top(since: str, limit: int, as_json: bool) -> None:
    """Reason kinds ranked by count over a window. A kind is the reason with its variable
    parts masked (numbers <n>, times <time>, durations <duration>, an unknown type's name
    <type>); each shows its latest example and id, the source topics, first and last seen."""
    from segmenters.deadletters import iso, rank
    from streams.kafka.topics import DEADLETTER
    from streams.tools.deadletters import DeadLetterError, read_window, render_top

    settings = _settings(kafka=True)
    now = time.time()
    start = _since(since, now)
    try:
        rows = rank(read_window(settings, start), since=start)
    except DeadLetterError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        doc = {
            "topic": settings.topic(DEADLETTER),
            "since": None if start is None else iso(start),
            "total": sum(r.count for r in rows),
            "kinds": [r.to_json() for r in rows[:limit]],
        }
        click.echo(json.dumps(doc, indent=2))
        return
    click.echo(
        render_top(rows, topic=settings.topic(DEADLETTER), since=start, limit=limit, now=now)
    )


@deadletters.command()
@click.argument("n", required=False, type=click.IntRange(min=1))
@click.option(
    "--offset",
    "offsets",
    multiple=True,
    metavar="P:O",
    help="The dead letter at this id (partition:offset of the dead-letter topic); repeatable.",
)
@click.option("--reason", help="The most recent dead letters whose reason or kind has this text.")
@click.option(
    "--limit",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="With --reason: how many.",
)
@click.option("--since", default="24h", show_default=True, help="With --reason: " + SINCE_HELP)
@click.option("--full", is_flag=True, help="The whole payload (else cut at 4096 characters).")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="One JSON line per record, the whole payload: edit the payload and give the "
    "lines to `redrive --from-file`.",
)
def show(
    n: int | None,
    offsets: tuple[str, ...],
    reason: str | None,
    limit: int,
    since: str,
    full: bool,
    as_json: bool,
) -> None:
    """Print dead letters: reason, source topic/partition/offset, key, time and the
    original payload. N is the N-th most recent (1, the default, is the newest, by
    dead_lettered_at); --offset P:O takes one by its id; --reason the most recent ones
    whose reason matches."""
    from segmenters.deadletters import letter_json, newest_first
    from streams.tools.deadletters import (
        DeadLetterError,
        read_newest,
        redriven_ids,
        render_letter,
        select_ids,
        select_window,
    )

    if sum(x is not None and x != () for x in (n, offsets or None, reason)) > 1:
        raise click.UsageError("give one of N, --offset or --reason")
    settings = _settings(kafka=True)
    try:
        if offsets:
            letters = select_ids(settings, _ids(offsets))
        elif reason is not None:
            window = select_window(settings, since=_since(since, time.time()), reason=reason)
            letters = newest_first(window)[:limit]
            if not letters:
                raise click.ClickException(f"no dead letter matches {reason!r} ({since})")
        else:
            newest = read_newest(settings, n or 1)
            if len(newest) < (n or 1):
                raise click.ClickException(f"there are {len(newest)} dead letters, not {n or 1}")
            letters = [newest[(n or 1) - 1]]
    except DeadLetterError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        for x in letters:
            click.echo(json.dumps(letter_json(x), ensure_ascii=False))
        return
    held = redriven_ids(settings, letters)
    for i, x in enumerate(letters):
        if i:
            click.echo("")
        click.echo(
            render_letter(
                x, limit=None if full else 4096, redriven=None if held is None else x.id in held
            )
        )


@deadletters.command()
@click.option("--reason", help="Dead letters of the window whose reason or kind has this text.")
@click.option("--all", "every", is_flag=True, help="Every dead letter of the window.")
@click.option("--since", default="24h", show_default=True, help=SINCE_HELP)
@click.option(
    "--offset",
    "offsets",
    multiple=True,
    metavar="P:O",
    help="The dead letter at this id (partition:offset of the dead-letter topic); repeatable.",
)
@click.option(
    "--from-file",
    "from_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help='JSON lines {"deadletter": "P:O", "payload": ...} (`show --json`, edited): '
    'send each line\'s payload (and "key", if given) instead of the original.',
)
@click.option("--dry-run", is_flag=True, help="Report what would be sent; send nothing.")
@click.option(
    "--force",
    is_flag=True,
    help="Send also the dead letters redriven before (the engine drops events whose "
    "event_id it has applied).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def redrive(
    reason: str | None,
    every: bool,
    since: str,
    offsets: tuple[str, ...],
    from_file: Path | None,
    dry_run: bool,
    force: bool,
    as_json: bool,
) -> None:
    """Send the selected dead letters' payloads back to their source topic (with their
    original key), each dead letter once: a ledger in Redis remembers the ones sent.
    Select with --reason or --all (over --since), --offset, or --from-file. A source
    topic that is not an input topic of this deployment is refused. A payload still
    bad is dead-lettered again, as a new dead letter."""
    from segmenters.deadletters import SelectionError, parse_fix
    from streams.kafka.topics import DEADLETTER
    from streams.store.clients import REDIS_FAILURES
    from streams.tools.deadletters import DeadLetterError, redrive, select_ids, select_window

    chosen = [
        name
        for name, given in (
            ("--reason/--all", reason is not None or every),
            ("--offset", bool(offsets)),
            ("--from-file", from_file is not None),
        )
        if given
    ]
    if len(chosen) != 1:
        raise click.UsageError(
            "select with one of --reason, --all, --offset or --from-file"
            + (f" (not {' and '.join(chosen)})" if chosen else "")
        )
    if reason is not None and every:
        raise click.UsageError("--reason or --all, not both")
    settings = _settings(kafka=True, redis=True)
    fixes = {}
    try:
        if from_file is not None:
            for number, line in enumerate(from_file.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    fix = parse_fix(line)
                except SelectionError as exc:
                    raise click.ClickException(f"{from_file}:{number}: {exc}") from None
                if fix.id in fixes:
                    raise click.ClickException(f"{from_file}:{number}: {fix.id} again")
                fixes[fix.id] = fix
            letters = select_ids(settings, [(f.partition, f.offset) for f in fixes.values()])
        elif offsets:
            letters = select_ids(settings, _ids(offsets))
        else:
            letters = select_window(settings, since=_since(since, time.time()), reason=reason)
        report = redrive(settings, letters, fixes=fixes, dry_run=dry_run, force=force)
    except DeadLetterError as exc:
        raise click.ClickException(str(exc)) from None
    except REDIS_FAILURES as exc:
        raise click.ClickException(f"Redis did not answer ({type(exc).__name__}: {exc})") from None
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        click.echo(report.render(settings.topic(DEADLETTER)))
    if report.total().failed:
        raise SystemExit(1)
