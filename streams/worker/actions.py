"""Retention actions in the shell: the policy in force and the uplift report's data.

Actions are decided inside the one batch pipeline (``pipeline.BatchProcessor`` calls
``segmenters.actions.retention.decide`` on the changes each batch produces) and written in the
same atomic call as the state: the action doc is field ``act`` of the customer's state
hash, the decision records (first assignments, suppression counts) sit per partition next
to the segment indexes, and delayed actions share the partition's due index with segment
timers. This module keeps what is left around that: :class:`PolicySource` (the policy
file, reloaded when it changes) and the report over the records ``streams.store.reports``
reads from Redis (docs/actions.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segmenters.actions.policy import DEFAULT_POLICY, Policy, PolicyError, load_policy
from segmenters.actions.uplift import ActionUplift, Assignment, Purchase, to_json, uplift
from streams.settings import Settings
from streams.store.reports import experiment_records
from streams.worker.reloads import ReloadStatus
from streams.worker.rules import load_policy_file

log = logging.getLogger(__name__)


class PolicySource:
    """The policy in force: the packaged defaults, or a file reloaded when it changes.

    With ``settings``, the file is checked against the deployment's segments (clusters,
    custom segments: streams/worker/rules.py) and read again when the segments file changes too,
    so a rule left naming a removed custom segment is reported.
    """

    def __init__(self, path: Path | None, settings: Settings | None = None) -> None:
        self.path = path
        self.settings = settings
        self.policy: Policy = DEFAULT_POLICY
        self._mtime: tuple[float | None, ...] | None = None
        #: The file's reloads: version in force, last error (None: no file).
        self.status: ReloadStatus | None = None
        if path is not None:
            self.status = ReloadStatus("actions", path)
            self.policy = self._load(path)  # a bad file stops the start
            self._mtime = self._mtimes(path)
            self.status.loaded(self.policy.version)
            log.info("retention policy %s loaded: version %s", path, self.policy.version)

    def _load(self, path: Path) -> Policy:
        if self.settings is None:
            return load_policy(path.read_text())
        return load_policy_file(path, self.settings, strict=False)

    def _mtimes(self, path: Path) -> tuple[float | None, ...]:
        segments = None if self.settings is None else self.settings.segments_file
        try:  # a missing segments file is reported by the segments reload
            seg_mtime = None if segments is None else segments.stat().st_mtime
        except OSError:
            seg_mtime = None
        return (path.stat().st_mtime, seg_mtime)

    def reload(self) -> Policy:
        """Load the file again if its mtime changed; a bad file keeps the previous policy."""
        if self.path is None:
            return self.policy
        try:
            mtime = self._mtimes(self.path)
            if mtime == self._mtime:
                return self.policy
            self._mtime = mtime
            policy = self._load(self.path)
        except (OSError, PolicyError) as exc:
            log.error(
                "retention policy %s: %s (keeping version %s)", self.path, exc, self.policy.version
            )
            if self.status is not None:
                self.status.failed(exc)
            return self.policy
        self.policy = policy
        if self.status is not None:
            self.status.loaded(policy.version)
        log.info(
            "retention policy %s reloaded: version %s, %d action(s), %d rule(s)",
            self.path,
            policy.version,
            len(policy.actions),
            len(policy.rules),
        )
        return policy


# --- the report --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ReportData:
    experiment: str
    window_s: float
    assignments: list[Assignment]
    purchases: list[Purchase]
    suppressions: list[tuple[str, str]]

    def results(
        self, *, min_group: int, since: float | None = None, until: float | None = None
    ) -> list[ActionUplift]:
        """Per action; only first assignments decided in ``[since, until)`` count."""
        return uplift(
            self.assignments,
            self.purchases,
            window_s=self.window_s,
            suppressions=self.suppressions,
            min_group=min_group,
            since=since,
            until=until,
        )

    def to_json(
        self, settings: Settings, *, since: float | None = None, until: float | None = None
    ) -> dict[str, Any]:
        """The report as numbers (``/api/actions``, ``actions report --json``)."""
        min_group = settings.uplift_min_group
        return {
            "experiment": self.experiment,
            "conversion_window_s": self.window_s,
            "since": since,
            "until": until,
            "min_group": min_group,
            "currency": settings.currency,
            "level": 0.95,
            "rows": [
                to_json(r, currency=settings.currency)
                for r in self.results(min_group=min_group, since=since, until=until)
            ],
        }


def report_data(
    client: Any,
    settings: Settings,
    policy: Policy,
    experiment: str | None = None,
    chunk: int = 2000,
) -> ReportData:
    """The decision records and purchases of an experiment, read from Redis (sync client),
    every partition's (``streams.store.reports.experiment_records``)."""
    exp = experiment or policy.experiment
    records = experiment_records(client, settings.key_prefix, settings.topic_partitions, exp, chunk)
    return ReportData(
        exp,
        policy.conversion_window_s,
        records.assignments,
        records.purchases,
        records.suppressions,
    )


def uplift_rows(
    settings: Settings, policy: Callable[[], Policy]
) -> Callable[[float | None, float | None], Awaitable[dict[str, Any]]]:
    """The dashboard's uplift table: ``actions report --json`` for a window of decision
    times ``[since, until)`` (epoch seconds, either None), read off the event loop."""
    from streams.store.clients import redis_client

    client = redis_client(settings)

    def compute(since: float | None, until: float | None) -> dict[str, Any]:
        data = report_data(client, settings, policy())
        return data.to_json(settings, since=since, until=until)

    async def rows(since: float | None, until: float | None) -> dict[str, Any]:
        return await asyncio.to_thread(compute, since, until)

    return rows
