"""segstream's I/O shell: the Faust app, topics, agents, Redis store and CLI."""
