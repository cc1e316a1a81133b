"""CLI command groups, one module each; each has `register(subparsers)` called by `rtdemo.cli`."""
