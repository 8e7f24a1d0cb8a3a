"""``python -m streams.cli``: the same as ``segstream``."""

from . import main

main()
