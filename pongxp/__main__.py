import sys

from pongxp import interrupts  # before the rest: a signal during start-up ends in one line


def _main() -> int:
    from pongxp.cli import main

    return main()


sys.exit(interrupts.command(_main))
