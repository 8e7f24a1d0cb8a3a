"""The HTTP collector (``segstream collector``): websites put shop events on Kafka.

``service`` is the aiohttp service and its endpoints, ``intake`` the pure request-to-event
rules, ``guards`` write keys, CORS and the rate limiter, ``identity`` anonymous ids in
Redis, ``config`` its settings (``SEGSTREAM_COLLECTOR__*``). Nothing is imported here,
so the settings can import ``config`` without the service.
"""
