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
def clv(as_json: bool, fit: bool, as_of: datetime | None) -> None:
    """Show the value models (BG/NBD and Gamma-Gamma) the workers predict with, or fit
    them now (--fit) as the next snapshot version. See docs/value.md."""
    from streams.tools.clv import ClvError, fit_now, latest_model, render_model

    if as_of is not None and not fit:
        raise click.UsageError("--as-of goes with --fit")
    settings = _settings()
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
