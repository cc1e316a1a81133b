"""`python -m rtdemo ...`: the command line (see `rtdemo.cli.main`)."""

import sys

from rtdemo.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
