"""Train the pongxp agent: ``python train.py --help`` lists every flag."""

import sys

from pongxp.cli import train_main

if __name__ == "__main__":
    sys.exit(train_main())
