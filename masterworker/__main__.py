"""``python -m masterworker`` is the same as the ``mw`` command."""

from masterworker.cli import main

main()
