"""The one background-job mechanism: records, files, processes, the runner and the child's
context."""
