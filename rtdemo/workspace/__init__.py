"""The workspace store: one SQLite file per workspace, and its migrations."""
