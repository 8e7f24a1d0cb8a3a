"""Rule files are checked against the deployment's segments at start and at hot reload."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from segmenters.actions.policy import PolicyError
from segmenters.core import Context
from streams.settings import Settings
from streams.worker.actions import PolicySource
from streams.worker.context import ContextRefresher
from streams.worker.rules import load_policy_file, policy_vocabulary
from tests.unit.streams.worker.test_timer_service import FakeStore

SEGMENTS = 'version = "s1"\n[segments.big]\nrule = "revenue >= 1000"\n'
POLICY = (
    '[actions.email.vip]\ntemplate = "vip_v1"\n'
    '[[rules]]\ndimension = "custom:big"\ncurrent = "member"\nactions = ["email/vip"]\n'
)


def _files(tmp_path: Path) -> tuple[Path, Path]:
    segments, policy = tmp_path / "segments.toml", tmp_path / "actions.toml"
    segments.write_text(SEGMENTS)
    policy.write_text(POLICY)
    return segments, policy


def test_the_vocabulary_holds_the_configured_clusters_and_custom_segments(tmp_path):
    segments, _ = _files(tmp_path)
    assert policy_vocabulary(Settings(clusters=4)).custom == frozenset()
    v = policy_vocabulary(Settings(clusters=4, segments_file=segments))
    assert (v.clusters, v.custom) == (4, frozenset({"big"}))
    segments.write_text("[segments.big]\nrule = \"journey == 'lost'\"\n")
    with pytest.raises(PolicyError, match="custom segments .*line 2: segment 'big'"):
        policy_vocabulary(Settings(segments_file=segments))
    assert policy_vocabulary(Settings(segments_file=segments), strict=False).custom is None


def test_a_policy_naming_an_undefined_custom_segment_is_refused(tmp_path):
    segments, policy = _files(tmp_path)
    assert load_policy_file(policy, Settings(segments_file=segments)).rules
    with pytest.raises(PolicyError, match="line 4: .*no custom segments are configured"):
        load_policy_file(policy, Settings())


def test_removing_a_custom_segment_the_policy_uses_is_reported_at_reload(tmp_path, caplog):
    segments, policy = _files(tmp_path)
    source = PolicySource(policy, Settings(segments_file=segments))
    loaded = source.policy
    segments.write_text('version = "s2"\n[segments.bigger]\nrule = "revenue >= 5000"\n')
    os.utime(segments, (1, 1))  # only the segments file changed
    with caplog.at_level(logging.ERROR):
        assert source.reload() is loaded  # the previous policy stays in force
    assert "line 4: rule 1 (custom:big -> member): unknown custom segment 'big'" in caplog.text
    assert "(did you mean 'bigger'?)" in caplog.text


def test_a_segments_reload_checks_clusters_against_the_configured_k(tmp_path):
    path = tmp_path / "segments.toml"
    path.write_text('version = "a"\n[segments.c]\nrule = "behaviour == \'cluster_3\'"\n')
    svc = ContextRefresher(Settings(segments_file=path, clusters=4), FakeStore([]))  # type: ignore[arg-type]
    ctx = svc.reload_segments(Context())
    assert ctx.custom is not None and ctx.custom.version == "a"
    path.write_text('version = "b"\n[segments.c]\nrule = "behaviour == \'cluster_4\'"\n')
    os.utime(path, (1, 1))
    assert svc.reload_segments(ctx).custom is ctx.custom  # cluster_4 does not exist for k=4


def test_each_reload_is_recorded_with_its_version_and_a_bad_file_with_its_error(tmp_path):
    segments, policy = _files(tmp_path)
    settings = Settings(segments_file=segments)
    source = PolicySource(policy, settings)
    svc = ContextRefresher(settings, FakeStore([]), source)  # type: ignore[arg-type]
    ctx = svc.reload_segments(Context())
    seg, act = svc.reload_statuses()
    assert (seg.file, seg.path, seg.version, seg.failing) == ("segments", segments, "s1", False)
    assert (act.file, act.path, act.version, act.errors) == ("actions", policy, "1", 0)
    loaded_at = seg.loaded_at
    assert loaded_at is not None and act.loaded_at is not None

    segments.write_text("[segments.big]\nrule = \"journey == 'lost'\"\n")
    os.utime(segments, (1, 1))
    assert svc.reload_segments(ctx) is ctx
    policy.write_text(POLICY.replace('"member"', '"membr"'))
    os.utime(policy, (1, 1))
    source.reload()
    assert seg.failing and seg.errors == 1 and "line 2: segment 'big'" in (seg.last_error or "")
    assert seg.loaded_at == loaded_at and seg.version == "s1"  # the last success stays
    assert act.failing and act.errors == 1 and act.last_error_at is not None

    segments.write_text(SEGMENTS.replace('"s1"', '"s2"'))
    os.utime(segments, (2, 2))
    policy.write_text(POLICY)
    os.utime(policy, (2, 2))
    svc.reload_segments(ctx)
    source.reload()
    assert (seg.version, seg.failing, seg.errors) == ("s2", False, 1)
    assert not act.failing and act.last_error is not None  # kept, with its time
    assert ContextRefresher(Settings(), FakeStore([])).reload_statuses() == []  # type: ignore[arg-type]
