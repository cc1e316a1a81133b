"""Hugging Face Spaces entry point: `python app.py` runs the app on the offline default."""

import os
import warnings

from rtdemo.hosting.credentials import space_owner_token
from rtdemo.ui.app import build_app
from rtdemo.ui.theme import launch_kwargs
from rtdemo.workspace.backup import start_backup

# In the app every user types their own teacher key; a key in the server's environment must not
# reach jobs that visitors start (background jobs inherit this process's environment).
if os.environ.pop("OPENAI_API_KEY", None):
    warnings.warn(
        "OPENAI_API_KEY is ignored by the app: users type their key in the Teacher tab",
        stacklevel=1,
    )

# With RTDEMO_BACKUP_REPO set: an empty workspace is restored from the backup before the app is
# built, then backed up every few minutes with the Space owner's token (rtdemo.workspace.backup).
# A problem is logged and the app starts anyway.
backup = start_backup(token=space_owner_token())

demo = build_app()

if __name__ == "__main__":
    demo.launch(**launch_kwargs())
