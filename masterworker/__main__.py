"""``python -m masterworker`` and the ``mw`` command: the command line, loaded.

Loading the command line's modules takes about 0.3 s. A Ctrl-C in that time (a user who
changed their mind, a script that stops ``mw submit`` at once) would print a traceback of
imports; here it ends the command with exit 130 and nothing else, as a Ctrl-C does later on.
"""

import sys


def main() -> None:
    try:
        from masterworker.cli import main as command_line
    except KeyboardInterrupt:
        sys.exit(130)
    command_line()


if __name__ == "__main__":
    main()
