"""The command line: argparse over the same core functions the app calls."""
