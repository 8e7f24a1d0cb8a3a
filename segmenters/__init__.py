"""segstream's segmentation logic: pure functions of state, events and time.

Nothing in this package imports Kafka, Redis, Faust or reads the clock; ``streams``
(the I/O shell) calls it with everything it needs.
"""

ENGINE_VERSION = "0.1.0"
