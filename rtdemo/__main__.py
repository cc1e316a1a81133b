"""`python -m rtdemo ...`: the command line (see `rtdemo.cli`)."""

import sys

from rtdemo.cli import main

if __name__ == "__main__":
    sys.exit(main())
