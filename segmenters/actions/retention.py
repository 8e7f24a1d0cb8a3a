"""The retention step of the one pipeline: a customer's segment changes in, actions out.

``core.fold`` (or ``tick``, ``rescore``) gives a customer's new state and the changes it
caused; :func:`decide` then carries the customer's :class:`~attribution.ActionDoc` forward
over those changes and the purchases of the same batch, in event-time order, and returns
the decisions and the messages to publish. Both are written in the same atomic call as
the state, so there is no second engine that reads ``segments.changes`` back.

Nothing here reads a clock or a store: ``wall`` (the shell's clock, read once per batch)
tells news from history, ``due_at`` is the partition clock when the due index visits.

>>> from segmenters.changes import SegmentChange
>>> from segmenters.actions.policy import DEFAULT_POLICY
>>> from segmenters.state import CustomerState
>>> ch = SegmentChange.make(customer_id="c-1", dimension="journey", previous="active_cart",
...                         current="cart_abandoner", at=43000.0, reason="r", position=1)
>>> customer = CustomerState("c-1", profile={"marketing_consent": True}, last_seen=42000.0)
>>> out = decide(DEFAULT_POLICY, None, customer, [ch], [], wall=43100.0)
>>> [(d.action, d.outcome) for d in out.decisions], [m.topic for m in out.messages]
([('email/abandoned_cart', 'send')], ['actions.email'])
>>> decide(DEFAULT_POLICY, out.doc, customer, [], [], wall=43100.0).changed
False
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from segmenters.actions import (
    ActionMessage,
    ActionState,
    Decision,
    Feature,
    consent_of,
    due,
    next_due,
    plan,
)
from segmenters.actions.campaign import Campaign, plan_campaign
from segmenters.actions.document import ActionDoc, current_segments, customer_features
from segmenters.actions.policy import Policy
from segmenters.changes import SegmentChange
from segmenters.clv.model import ClvModel
from segmenters.config import KEEP_PURCHASES_S
from segmenters.state import CustomerState


@dataclass(frozen=True, slots=True)
class Purchase:
    """A purchase of the batch, for the uplift report's conversions."""

    order_id: str
    at: float
    amount: float


@dataclass(slots=True)
class Decided:
    """What :func:`decide` returns for one customer."""

    doc: ActionDoc
    decisions: list[Decision] = field(default_factory=list)
    #: Messages to send (outcome ``send``), in decision order.
    messages: list[ActionMessage] = field(default_factory=list)
    #: The doc differs from the one given (write it).
    changed: bool = False

    @property
    def due(self) -> float | None:
        """When delayed actions come due (for the partition's due index)."""
        return next_due(self.doc.state)


def decide(
    policy: Policy,
    before: ActionDoc | None,
    customer: CustomerState | None,
    changes: Sequence[SegmentChange],
    purchases: Sequence[Purchase],
    *,
    wall: float,
    due_at: float | None = None,
    currency: str | None = None,
    keep_purchases_s: float = KEEP_PURCHASES_S,
    clv: ClvModel | None = None,
    horizon_days: float = 365.0,
) -> Decided:
    """Decide the actions ``changes`` trigger and, with ``due_at``, the delayed ones due.

    ``customer`` is the state after the batch (consent, features and cart come from it);
    ``before`` is not modified. Changes and purchases are taken in event-time order (a
    purchase first at a tie: it happened with or before the change it caused).
    """
    cid = customer.customer_id if customer is not None else changes[0].customer_id
    src = before if before is not None else ActionDoc.from_doc(None, cid)
    doc = ActionDoc(src.state, {e: dict(m) for e, m in src.first.items()}, list(src.buys))
    state = doc.state
    # Most changes trigger nothing (no rule names them, nothing pending in their
    # dimension): a customer with only those, and no purchase, has nothing to decide.
    named = policy.dimensions
    changes = [c for c in changes if c.dimension in named]  # the others concern no action
    pending = {p.change.dimension for p in state.pending}
    acting = [
        c
        for c in changes
        if c.dimension in pending or policy.matching(c.dimension, c.previous, c.current)
    ]
    if not acting and not purchases and not _due(state, due_at):
        return Decided(doc)
    consent = None if customer is None else consent_of(customer.profile)
    # Only a message needs them: most planned actions are dropped first (stale history).
    features = _Features(customer, currency, clv, horizon_days)
    cart = {} if customer is None else customer.cart
    last_seen = None if customer is None else customer.last_seen
    items: list[tuple[float, int, int, SegmentChange | Purchase]] = [
        (p.at, 0, i, p) for i, p in enumerate(purchases)
    ]
    # Every change of a dimension a rule names goes on (one that triggers nothing still
    # ages the state's cooldowns and caps to its time).
    items += [(c.changed_at.timestamp(), 1, i, c) for i, c in enumerate(changes)]
    items.sort(key=lambda t: t[:3])
    decisions: list[Decision] = []
    changed = False
    latest = float("-inf")
    for at, _kind, _i, item in items:
        latest = max(latest, at)
        if isinstance(item, Purchase):
            changed |= doc.add_purchase(item.order_id, item.at, item.amount)
            continue
        state, ds = plan(
            policy,
            item,
            state,
            now=at,
            consent=consent,
            features=features,
            cart=cart,
            wall=wall,
            last_seen=last_seen,
        )
        decisions.extend(ds)
        changed |= bool(ds)
    if due_at is not None and _due(state, due_at):  # what planning scheduled counts too
        latest = max(latest, due_at)
        state, ds = due(
            policy,
            state,
            now=due_at,
            current_segments=current_segments(customer),
            consent=consent,
            features=features,
            cart=cart,
            wall=wall,
        )
        decisions.extend(ds)
        changed = True
    for d in decisions:
        a = d.assignment()
        if a is not None:
            doc.assign(d.experiment, d.action, a.group, a.at)
    doc.state = state
    if latest > float("-inf"):
        doc.prune(now=latest, window_s=policy.conversion_window_s, keep_s=keep_purchases_s)
    messages = [d.message for d in decisions if d.message is not None]
    return Decided(doc, decisions, messages, changed)


def decide_campaign(
    policy: Policy,
    before: ActionDoc | None,
    customer: CustomerState,
    campaign: Campaign,
    *,
    now: float,
    currency: str | None = None,
    clv: ClvModel | None = None,
    horizon_days: float = 365.0,
) -> Decided:
    """Decide ``campaign``'s action for one current member at the wall clock ``now``, as
    :func:`decide` decides a transition's: the same guards, the same first assignment
    and messages (``segmenters.actions.campaign``). A customer no longer in the segment
    gets no decision. ``changed`` is False when there is nothing to write (no decision,
    or only a ``duplicate``: this campaign reached the customer already).

    Purchases are not pruned here: that upkeep runs in event time, with the customer's
    next decision in the pipeline."""
    cid = customer.customer_id
    src = before if before is not None else ActionDoc.from_doc(None, cid)
    doc = ActionDoc(src.state, {e: dict(m) for e, m in src.first.items()}, list(src.buys))
    if customer.segment(campaign.dimension) != campaign.segment:
        return Decided(doc)
    state, decisions = plan_campaign(
        policy,
        campaign,
        doc.state,
        now=now,
        consent=consent_of(customer.profile),
        features=_Features(customer, currency, clv, horizon_days),
        cart=customer.cart,
    )
    for d in decisions:
        a = d.assignment()
        if a is not None:
            doc.assign(d.experiment, d.action, a.group, a.at)
    doc.state = state
    messages = [d.message for d in decisions if d.message is not None]
    changed = any(d.reason != "duplicate" for d in decisions)
    return Decided(doc, decisions, messages, changed)


class _Features(Mapping[str, Feature]):
    """:func:`~attribution.customer_features`, computed when first read."""

    __slots__ = ("_customer", "_currency", "_clv", "_horizon", "_values")

    def __init__(
        self,
        customer: CustomerState | None,
        currency: str | None,
        clv: ClvModel | None = None,
        horizon_days: float = 365.0,
    ) -> None:
        self._customer = customer
        self._currency = currency
        self._clv = clv
        self._horizon = horizon_days
        self._values: dict[str, Feature] | None = None

    def _get(self) -> dict[str, Feature]:
        if self._values is None:
            self._values = customer_features(
                self._customer, self._currency, self._clv, self._horizon
            )
        return self._values

    def __getitem__(self, key: str) -> Feature:
        return self._get()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())


def _due(state: ActionState, at: float | None) -> bool:
    """Delayed actions are due at ``at`` (a due-index visit)."""
    if at is None:
        return False
    when = next_due(state)
    return when is not None and when <= at
