"""Topic names (without the deployment prefix) and which event types each input topic
carries: part of the contract, so the pure core, the contract's schemas and the Kafka
shell (streams/kafka/topics.py) all read them from here.
"""

from __future__ import annotations

BROWSE = "events.browse"
CART = "events.cart"
PURCHASE = "events.purchase"
PROFILE = "events.profile"
INPUTS = (BROWSE, CART, PURCHASE, PROFILE)
DEADLETTER = "events.deadletter"
CHANGES = "segments.changes"
#: Internal: feature vectors that moved, for the one cluster trainer (one partition).
FEATURES = "segments.features"
#: Compacted: a tombstone (key ``customer_id``, no value) per erased customer.
ERASED = "customers.erased"
#: Retention actions, one topic per channel, keyed by customer (docs/actions.md).
ACTION_TOPICS = ("actions.email", "actions.ads", "actions.push", "actions.webhook")

#: Topic name of each event ``type`` (without the deployment prefix).
TOPIC_OF_TYPE = {
    "browse": BROWSE,
    "cart": CART,
    "purchase": PURCHASE,
    "refund": PURCHASE,
    "profile": PROFILE,
}

#: Which ``type`` may arrive on which topic (topic names without the deployment prefix).
#:
#: >>> TOPIC_TYPES[PURCHASE] == frozenset({"purchase", "refund"})
#: True
TOPIC_TYPES: dict[str, frozenset[str]] = {
    topic: frozenset(t for t, on in TOPIC_OF_TYPE.items() if on == topic) for topic in INPUTS
}
