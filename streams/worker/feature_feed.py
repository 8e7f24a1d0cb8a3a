"""What the trainer was last sent of each customer, so ``segments.features`` stays small.

Before this, every customer the rescoring sweep visited sent a vector, moved or not: an
idle worker filled the topic at the sweep's rate (about 6 GiB a day for 7,800
customers). Now a vector goes out only when :func:`segmenters.features.moved_enough`
says it moved far enough from the last one sent (in the current model's scaled space),
so an idle deployment sends nothing once its trainer has published a model.

The memory is this worker's, in process, bounded (least recently used customers go
first). A customer it does not remember (a new one, one evicted, every customer after
a restart or a rebalance) is sent once: a trainer that restarted with its worker gets
the population back on the first pass, then only what moves.
"""

from __future__ import annotations

from array import array
from collections import OrderedDict
from collections.abc import Iterable, Mapping

from segmenters.clustering import ClusterModel
from segmenters.features import FEATURES, MIN_MOVE, as_row, moved_enough

#: Customers remembered per worker by default (about 150 bytes each).
MEMORY = 200_000


class FeatureFeed:
    """Decides which vectors go to the trainer; remembers the last one sent per customer."""

    def __init__(self, min_move: float = MIN_MOVE, memory: int = MEMORY) -> None:
        self.min_move = min_move
        self.memory = max(1, memory)
        self._last: OrderedDict[str, array[float]] = OrderedDict()
        #: Vectors let through and held back since start (for logs and tests).
        self.sent = 0
        self.held = 0

    def admit(
        self, customer_id: str, vector: Mapping[str, float], model: ClusterModel | None
    ) -> bool:
        """Whether to send ``vector``; if so it becomes the customer's last one sent.

        Before the first model (``model`` None) every vector goes: the trainer needs its
        warm-up sample (``Trainer.warmup`` vectors), which a small population reaches
        only by being visited more than once. Distances are measured in the model's
        scaled space."""
        row = as_row(vector)
        last = None if model is None else self._last.get(customer_id)
        scale = None if model is None else [float(model.std.get(f, 1.0)) for f in FEATURES]
        if not moved_enough(last, row, scale, self.min_move):
            self._last.move_to_end(customer_id)
            self.held += 1
            return False
        self._last[customer_id] = array("f", row)
        self._last.move_to_end(customer_id)
        while len(self._last) > self.memory:
            self._last.popitem(last=False)
        self.sent += 1
        return True

    def forget(self, customer_ids: Iterable[str]) -> None:
        """Drop erased customers."""
        for cid in customer_ids:
            self._last.pop(cid, None)

    def __len__(self) -> int:
        return len(self._last)
