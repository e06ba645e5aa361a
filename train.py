"""Train the pongxp agent: ``python train.py --help`` lists every flag."""

import signal
import sys

# Ctrl-C while Python imports pongxp ends the process as SIGTERM does there, with no
# line (Python's KeyboardInterrupt would print a traceback); interrupts.command handles
# all three signals from then on. A SIGINT ignored at start (a background job) stays so.
if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, signal.SIG_DFL)

from pongxp import interrupts  # before the rest: a signal during start-up ends in one line

if __name__ == "__main__":

    def train() -> int:
        from pongxp.cli import train_main

        return train_main()

    sys.exit(interrupts.command(train, interrupts.BEFORE_TRAINING))
