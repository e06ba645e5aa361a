"""``python -m pongxp`` and the ``pongxp`` console script (``run``): nothing but the
signal set-up comes before the command, so a signal during start-up ends quietly."""

import signal
import sys

# Ctrl-C while Python imports pongxp ends the process as SIGTERM does there, with no
# line (Python's KeyboardInterrupt would print a traceback); interrupts.command handles
# all three signals from then on. A SIGINT ignored at start (a background job) stays so.
if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, signal.SIG_DFL)

from pongxp import interrupts  # before the rest: a signal during start-up ends in one line


def _main() -> int:
    from pongxp.cli import main

    return main()


def run() -> int:
    """The console script's entry: importing this module made Ctrl-C quiet first."""
    return interrupts.command(_main)


if __name__ == "__main__":
    sys.exit(run())
