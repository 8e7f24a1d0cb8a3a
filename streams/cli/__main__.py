"""``python -m streams.cli``: the same as ``segstream``."""

from streams.cli import main

main()
