"""The worker: the Faust app, its agents, the batch pipeline, timers, metrics and web views."""
