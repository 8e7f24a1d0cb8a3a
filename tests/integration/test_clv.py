"""The value models end to end: the CDNOW sample replayed through a real worker, then
``segstream clv --fit`` on the stored purchase days gives the published parameters."""

from __future__ import annotations

import gzip
import json
import re
import time
from collections import Counter

from tests.integration.conftest import Deployment
from tests.integration.test_cli import segstream
from tests.realdata import data_file

CALIBRATION_END = "1997-09-30"


def test_cdnow_replayed_and_fitted_gives_the_published_parameters(deployment: Deployment) -> None:
    path = data_file("cdnow_sample.txt.gz")
    with gzip.open(path, "rt") as f:
        rows = [line.split() for line in f if line.strip()]
    expected = Counter(f"cdnow-{r[1]}" for r in rows if r[2] <= CALIBRATION_END.replace("-", ""))
    assert len(expected) == 2357

    # fast rescoring passes and refreshes: the value dimension fills within seconds
    deployment.start_worker(SEGSTREAM_RESCORE_PASS_S="1", SEGSTREAM_RFM_REFRESH_S="1")
    sent = segstream(
        deployment,
        *("replay", str(path), "--format", "cdnow", "--until", CALIBRATION_END),
        *("--quiet", "--no-actions"),
    )
    assert sent.returncode == 0, sent.stderr
    assert f"events produced  {expected.total()} (purchase" in sent.stdout
    assert f"after --until    {len(rows) - expected.total()}" in sent.stdout
    deployment.wait_applied(dict(expected), timeout=60)

    out = segstream(deployment, "clv", "--fit", "--as-of", CALIBRATION_END, "--json")
    assert out.returncode == 0, out.stderr
    m = json.loads(out.stdout)
    # Fader, Hardie and Lee (2005): BG/NBD r = 0.243, alpha = 4.414 weeks, a = 0.793,
    # b = 2.426; Gamma-Gamma p = 6.25, q = 3.74, v = 15.44 on the 946 repeat buyers
    bgnbd = (round(m["r"], 3), round(m["alpha_days"] / 7, 3), round(m["a"], 3), round(m["b"], 3))
    assert bgnbd == (0.243, 4.414, 0.793, 2.426), m
    assert (round(m["p"], 2), round(m["q"], 2), round(m["v"], 2)) == (6.25, 3.74, 15.44), m
    assert (m["customers"], m["repeat_customers"]) == (2357, 946)
    assert m["version"] >= 1  # the worker's own trainer may have published one before

    shown = segstream(deployment, "clv", "--json")
    assert shown.returncode == 0, shown.stderr
    latest = json.loads(shown.stdout)  # this fit, unless the worker's trainer published since
    assert list(latest) == list(m) and latest["version"] >= m["version"]

    # The rest of the file: the holdout period of the paper (1997-10-01 to 1998-06-30).
    everything = Counter(f"cdnow-{r[1]}" for r in rows)
    rest = segstream(
        deployment, "replay", str(path), "--format", "cdnow", "--quiet", "--no-actions"
    )
    assert rest.returncode == 0, rest.stderr
    deployment.wait_applied(dict(everything), timeout=60)
    checked = segstream(
        deployment,
        *("clv", "--holdout-from", "1997-10-01", "--until", "1998-06-30", "--json"),
    )
    assert checked.returncode == 0, checked.stderr
    h = json.loads(checked.stdout)
    fit = h["model"]  # fitted on the calibration period again: the same parameters
    assert (round(fit["r"], 3), round(fit["a"], 3), round(fit["b"], 3)) == (0.243, 0.793, 2.426)
    days = {(r[1], r[2]) for r in rows if r[2] >= "19971001"}  # buyer, day in the holdout
    actual = sum(d["actual"] * d["customers"] for d in h["deciles"])
    assert round(actual) == len(days)
    predicted = sum(d["predicted"] * d["customers"] for d in h["deciles"])
    # 1,653 predicted against 1,882 purchase days here: BG/NBD under-forecasts CDNOW's
    # holdout by about a tenth (the papers' cumulative-sales plots show the same gap)
    assert abs(predicted - actual) / actual < 0.15, (predicted, actual)
    top, bottom = h["deciles"][-1], h["deciles"][0]
    assert top["actual"] > 5 * bottom["actual"] and top["predicted"] > 5 * bottom["predicted"]

    # The value dimension on the whole file: every buyer placed, verify agrees, and churn
    # fires at its deadline (a UTC midnight) with the figures in the reason.
    buyers = sorted(everything)
    ends = time.monotonic() + 90
    placed: dict[str, str] = {}
    while time.monotonic() < ends:
        states = {c: deployment.state(c) for c in buyers}
        placed = {
            c: s["segments"]["value"][0]
            for c, s in states.items()
            if s and "value" in s.get("segments", {})
        }
        tiers = Counter(placed.values())
        if len(placed) == len(buyers) and tiers["top"] and tiers["churned"]:
            break
        time.sleep(1)
    assert len(placed) == len(buyers), f"{len(placed)} of {len(buyers)} buyers placed"
    # The ranks settle once the shared histogram holds every buyer's final CLV and a
    # rescoring pass has run against the cuts it gives (passes and refreshes every 1 s).
    ends = time.monotonic() + 60
    while time.monotonic() < ends:
        time.sleep(3)
        now = {c: (deployment.state(c) or {})["segments"]["value"][0] for c in buyers}
        if now == placed:
            break
        placed = now
    tiers = Counter(placed.values())
    alive = len(buyers) - tiers["churned"]
    assert 0.05 < tiers["top"] / alive < 0.15 and 0.2 < tiers["low"] / alive, tiers
    report = segstream(deployment, "verify", "--quiet", "--json")
    assert report.returncode == 0, report.stderr
    value = json.loads(report.stdout)["report"]["dimensions"]["value"]
    assert value["compared"] == len(buyers) and value["agree"] >= 0.99 * value["compared"], value
    churns = [
        json.loads(r.value) for r in deployment.read_topic("segments.changes", timeout=30, settle=3)
    ]
    churns = [c for c in churns if c["dimension"] == "value" and c["current"] == "churned"]
    assert churns
    reason = re.compile(r"^p_alive 0\.\d{3} < 0\.30 \(x=\d+, t_x=\d+ d, T=\d+ d; model v\d+\)$")
    assert all(reason.match(c["reason"]) for c in churns), churns[0]
    midnight = [c for c in churns if c["changed_at"].endswith("T00:00:00Z")]
    assert len(midnight) >= len(churns) / 2, (len(midnight), len(churns))
