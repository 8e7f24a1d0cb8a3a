"""What the segments and actions are computed against, kept current in one place.

The RFM quantiles (from the shared histograms), the behaviour model (the trainer's last
snapshot), the value model (the value trainer's last snapshot), the custom segments file
and the retention policy file change while the worker runs. :class:`ContextRefresher`
holds the ones in force and renews them; the batch processor asks it for them each round
(``current``, ``policy``) and nothing else replaces them.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from segmenters.actions.policy import DEFAULT_POLICY, Policy
from segmenters.clustering import ClusterModel
from segmenters.clv.model import ClvModel
from segmenters.core import Context
from segmenters.dimensions.custom import SegmentConfigError
from segmenters.dimensions.rfm import RfmQuantiles
from segmenters.dimensions.value import ValueQuantiles
from streams.settings import Settings
from streams.store import StateStore
from streams.store.clv import load_clv_model
from streams.worker.actions import PolicySource
from streams.worker.reloads import ReloadStatus
from streams.worker.rules import load_segments

log = logging.getLogger(__name__)


class ContextRefresher:
    """The context in force and the policy in force (``policies``: the policy file's
    source; None: the packaged defaults, actions off or no file)."""

    def __init__(
        self, settings: Settings, store: StateStore, policies: PolicySource | None = None
    ) -> None:
        self.settings = settings
        self.store = store
        self.policies = policies
        self._context = Context()
        self._segments_mtime: float | None = None
        #: The custom segments file's reloads (None: no file).
        self.segments_status: ReloadStatus | None = (
            None
            if settings.segments_file is None
            else ReloadStatus("segments", settings.segments_file)
        )
        #: The value model in force (BG/NBD + Gamma-Gamma); None before the first snapshot.
        self.clv: ClvModel | None = None

    def current(self) -> Context:
        """Population statistics and models the segments depend on now."""
        return self._context

    def policy(self) -> Policy:
        """The retention policy in force."""
        return DEFAULT_POLICY if self.policies is None else self.policies.policy

    def reload_statuses(self) -> list[ReloadStatus]:
        """The config files' reload outcomes (``/metrics``, ``/api/status``)."""
        statuses = [self.segments_status]
        statuses.append(None if self.policies is None else self.policies.status)
        return [s for s in statuses if s is not None]

    def reload_policy(self) -> None:
        """Read the policy file again if it changed (a bad file keeps the policy)."""
        if self.policies is not None:
            self.policies.reload()

    def reload_segments(self, ctx: Context) -> Context:
        """Load the custom-segment file again if it changed; a bad file keeps the old one."""
        path = self.settings.segments_file
        if path is None:
            return ctx
        try:
            mtime = path.stat().st_mtime
        except OSError as exc:
            log.error("custom segments file %s: %s (keeping the previous rules)", path, exc)
            self._segments_failed(exc)
            return ctx
        if mtime == self._segments_mtime:
            return ctx
        self._segments_mtime = mtime
        try:
            custom = load_segments(path, self.settings)
        except SegmentConfigError as exc:
            log.error("custom segments file %s: %s (keeping the previous rules)", path, exc)
            self._segments_failed(exc)
            return ctx
        if self.segments_status is not None:
            self.segments_status.loaded(custom.version)
        log.info(
            "custom segments %s loaded: version %s, %d rule(s)",
            path,
            custom.version,
            len(custom.rules),
        )
        return replace(ctx, custom=custom)

    def _segments_failed(self, exc: Exception) -> None:
        if self.segments_status is not None:
            self.segments_status.failed(exc)

    async def refresh(self, as_of: float | None) -> None:
        """RFM quantiles as of the clock ``as_of``, the value dimension's CLV cuts, the
        custom segments and the latest behaviour and value models (None: no partition
        has a clock yet, nothing to renew)."""
        if as_of is None:
            return
        if self._context.cluster_margin != self.settings.cluster_margin:
            self._context = replace(self._context, cluster_margin=self.settings.cluster_margin)
        store = self.store
        counts = await store.rfm_counts()
        q = RfmQuantiles.from_counts(
            counts["recency"], counts["frequency"], counts["monetary"], as_of=as_of
        )
        v = ValueQuantiles.from_counts(counts["value"], self.settings.value)
        ctx = replace(self._context, rfm=q if q.buyers else None, value=v if v.buyers else None)
        ctx = self.reload_segments(ctx)
        doc = await store.load_model()
        if doc is not None and (
            ctx.clusters is None or ctx.clusters.version != doc["model"]["version"]
        ):
            model = ClusterModel.from_doc(doc["model"])
            ctx = replace(ctx, clusters=model)
            log.info("scoring with behaviour model v%d", model.version)
        clv = await load_clv_model(store.client, self.settings.key_prefix)
        if clv is not None and clv != self.clv:
            self.clv = clv
            log.info("value model v%d loaded", clv.version)
        if self.clv is not None:
            ctx = replace(ctx, clv=self.clv, clv_horizon_days=self.settings.clv_horizon_days)
        self._context = ctx
