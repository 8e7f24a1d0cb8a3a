"""Predicted value: ``segstream clv`` shows the latest value-model snapshot or fits one."""

from __future__ import annotations

import json
from datetime import datetime

import click

from streams.cli.root import _settings, main


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the snapshot as JSON.")
@click.option("--fit", is_flag=True, help="Fit now on the stored buyers and publish the fit.")
@click.option(
    "--as-of",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="With --fit: count T to this UTC day in every partition (default: each "
    "partition's clock day) and leave later purchases out.",
)
@click.option(
    "--holdout-from",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Check the models: fit on purchases before this UTC day (nothing is published) "
    "and compare predicted with actual purchase days from it on, by decile.",
)
@click.option(
    "--until",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="With --holdout-from: the holdout's last day (default: the latest clock day).",
)
def clv(
    as_json: bool,
    fit: bool,
    as_of: datetime | None,
    holdout_from: datetime | None,
    until: datetime | None,
) -> None:
    """Show the value models (BG/NBD and Gamma-Gamma) the workers predict with, or fit
    them now (--fit) as the next snapshot version, or check them against a holdout
    period (--holdout-from). See docs/value.md."""
    from streams.tools.clv import (
        ClvError,
        fit_now,
        holdout,
        latest_model,
        render_holdout,
        render_model,
    )

    if as_of is not None and not fit:
        raise click.UsageError("--as-of goes with --fit")
    if until is not None and holdout_from is None:
        raise click.UsageError("--until goes with --holdout-from")
    if holdout_from is not None and fit:
        raise click.UsageError("--holdout-from checks the models and publishes nothing: no --fit")
    settings = _settings(redis=True)
    if holdout_from is not None:
        try:
            model, rows, first, last = holdout(
                settings, holdout_from.date(), end=None if until is None else until.date()
            )
        except ClvError as exc:
            raise click.ClickException(str(exc)) from None
        if as_json:
            doc = {
                "model": model.model_dump(),
                "holdout_days": last - first + 1,
                "deciles": [r.__dict__ for r in rows],
            }
            click.echo(json.dumps(doc, indent=2))
        else:
            click.echo(render_holdout(model, rows, first, last))
        return
    try:
        if fit:
            model = fit_now(settings, as_of=None if as_of is None else as_of.date())
        else:
            model = latest_model(settings)
    except ClvError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(model.model_dump(), indent=2))
    else:
        click.echo(render_model(model))
