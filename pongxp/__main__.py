import sys

from pongxp.cli import main

sys.exit(main())
