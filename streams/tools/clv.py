"""``segstream clv``: show the latest value-model snapshot, or fit one now.

The worker's trainer refits on its own schedule; this fits on demand (after a replay, or
to fit as of a date), from the same stored purchase days and with the same pure fitter,
and publishes the result as the next snapshot version.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime

from segmenters.clv import day_of
from segmenters.clv.holdout import Decile, calibration, deciles
from segmenters.clv.model import ClvModel, NotEnoughData, fit_model
from segmenters.eventtime import partition_clock
from streams.settings import Settings
from streams.store.clients import redis_client
from streams.store.clocks import read_watermarks
from streams.store.clv import buyer_days, buyer_summaries, read_clv_model, save_clv_model

NO_MODEL = (
    "no value model yet: run `segstream clv --fit`, or wait for the worker to fit one "
    "(every SEGSTREAM_CLV_REFIT_S)"
)


class ClvError(Exception):
    """Nothing to show or to fit; the message says why, on one line."""


def clock_days(settings: Settings, *, wall: float) -> dict[int, int]:
    """Each partition's clock day: its saved watermark minus the allowed lateness (in
    ``live`` mode, wall time when that is later), as the worker counts it."""
    client = redis_client(settings)
    try:
        watermarks = read_watermarks(client, settings.key_prefix)
    finally:
        client.close()
    out = {}
    for p, wm in watermarks.items():
        clock = partition_clock(
            wm, lateness=settings.allowed_lateness_s, mode=settings.clock, wall=wall
        )
        if clock is not None:
            out[p] = day_of(clock)
    return out


def latest_model(settings: Settings) -> ClvModel:
    """The snapshot the workers score with; :class:`ClvError` when there is none."""
    model = read_clv_model(settings)
    if model is None:
        raise ClvError(NO_MODEL)
    return model


def fit_now(
    settings: Settings, *, as_of: date | None = None, wall: float | None = None
) -> ClvModel:
    """Fit both models on the stored buyers (a sample of ``settings.clv_sample``) and
    publish the fit as the next version.

    T is counted to each partition's clock day, or to ``as_of`` for every partition
    (purchase days after it are left out). A partition without a saved clock uses the
    latest clock of the others.
    """
    now = time.time() if wall is None else wall
    if as_of is not None:
        fixed = _day_number(as_of)
        days: dict[int, int] = {}
        latest = fixed
    else:
        days = clock_days(settings, wall=now)
        if not days:
            raise ClvError("no buyers to fit: no partition has a clock yet (no events applied)")
        latest = max(days.values())
    summaries = buyer_summaries(settings, lambda p: days.get(p, latest), sample=settings.clv_sample)
    if not summaries:
        when = f" on or before {as_of.isoformat()}" if as_of is not None else ""
        raise ClvError(f"no buyers to fit: no stored customer has a purchase{when}")
    previous = read_clv_model(settings)
    version = 1 if previous is None else previous.version + 1
    try:
        model = fit_model(summaries, fitted_at=now, version=version, start=previous)
    except NotEnoughData as exc:
        raise ClvError(f"not enough history to fit: {exc}") from None
    return save_clv_model(settings, model)


def render_model(model: ClvModel) -> str:
    """The snapshot as a table: each parameter with its model and unit."""
    fitted = datetime.fromtimestamp(model.fitted_at, UTC).isoformat().replace("+00:00", "Z")
    out = [
        f"value model version {model.version}, fitted {fitted}",
        f"  buyers {model.customers}, of whom {model.repeat_customers} repeat buyers",
        f"  {'model':<12} {'parameter':<10} value",
        f"  {'BG/NBD':<12} {'r':<10} {model.r:.4f}",
        f"  {'':<12} {'alpha':<10} {model.alpha_days:.4f} days ({model.alpha_days / 7:.4f} weeks)",
        f"  {'':<12} {'a':<10} {model.a:.4f}",
        f"  {'':<12} {'b':<10} {model.b:.4f}",
        f"  {'':<12} {'log-lik.':<10} {model.log_likelihood:.1f}",
    ]
    spend = model.spend
    if spend is None:
        out.append(f"  {'Gamma-Gamma':<12} not fitted (too few repeat buyers)")
    else:
        out += [
            f"  {'Gamma-Gamma':<12} {'p':<10} {spend.p:.4f}",
            f"  {'':<12} {'q':<10} {spend.q:.4f}",
            f"  {'':<12} {'v':<10} {spend.v:.4f}",
            f"  {'':<12} {'mean':<10} {spend.population_mean:.2f} (a random buyer's order value)",
        ]
    return "\n".join(out)


def _day_number(d: date) -> int:
    return d.toordinal() - date(1970, 1, 1).toordinal()


def holdout(
    settings: Settings, split: date, *, end: date | None = None, wall: float | None = None
) -> tuple[ClvModel, list[Decile], int, int]:
    """Fit on the purchase days before ``split`` and compare the predicted purchase days
    from ``split`` to ``end`` (default: the latest partition clock day) with the real
    ones, by decile. Publishes nothing. Returns the fit, the deciles and the two days."""
    now = time.time() if wall is None else wall
    split_day = _day_number(split)
    if end is not None:
        end_day = _day_number(end)
    else:
        days = clock_days(settings, wall=now)
        if not days:
            raise ClvError("no partition has a clock yet (no events applied): give --until")
        end_day = max(days.values())
    if end_day < split_day:
        raise ClvError(f"the holdout ends ({end_day}) before it starts ({split.isoformat()})")
    buyers = buyer_days(settings, sample=settings.clv_sample)
    summaries = [s for s in (calibration(b, split_day) for b in buyers) if s is not None]
    try:
        model = fit_model(summaries, fitted_at=now, version=0)
    except NotEnoughData as exc:
        raise ClvError(f"not enough history before {split.isoformat()}: {exc}") from None
    return model, deciles(model, buyers, split_day=split_day, end_day=end_day), split_day, end_day


def render_holdout(model: ClvModel, rows: list[Decile], split_day: int, end_day: int) -> str:
    """The holdout check as a table: predicted and actual purchase days per decile."""
    first = date.fromordinal(split_day + date(1970, 1, 1).toordinal()).isoformat()
    last = date.fromordinal(end_day + date(1970, 1, 1).toordinal()).isoformat()
    out = [
        f"fitted on {model.customers} buyers before {first} (not published); "
        f"holdout {first} to {last} ({end_day - split_day + 1} days)",
        f"  {'decile':>6} {'buyers':>7} {'predicted':>10} {'actual':>8}   (mean purchase days)",
    ]
    for r in rows:
        out.append(f"  {r.decile:>6} {r.customers:>7} {r.predicted:>10.3f} {r.actual:>8.3f}")
    n = sum(r.customers for r in rows)
    pred = sum(r.predicted * r.customers for r in rows)
    act = sum(r.actual * r.customers for r in rows)
    out.append(f"  {'all':>6} {n:>7} {pred / max(n, 1):>10.3f} {act / max(n, 1):>8.3f}")
    out.append(f"  total purchase days in the holdout: predicted {pred:.0f}, actual {act:.0f}")
    return "\n".join(out)
