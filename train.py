"""Train the pongxp agent: ``python train.py --help`` lists every flag."""

import sys

from pongxp import interrupts  # before the rest: a signal during start-up ends in one line

if __name__ == "__main__":

    def train() -> int:
        from pongxp.cli import train_main

        return train_main()

    sys.exit(interrupts.command(train, interrupts.BEFORE_TRAINING))
