"""Hugging Face Spaces entry point: `python app.py` runs the app on the offline default."""

import os
import warnings

from rtdemo.hosting.credentials import protect_server_token, space_owner_token
from rtdemo.ui.app import build_app
from rtdemo.ui.theme import launch_kwargs
from rtdemo.workspace.backup import start_backup

# Before the app serves anyone: on a shared app (Spaces, or local access refused) the host's Hub
# token leaves this process's environment and huggingface_hub's implicit token lookup is off, so a
# model a user names is fetched with their own token or none (rtdemo.hosting.credentials).
protect_server_token()

# In the app every user types their own teacher key; the server's serves no one. Jobs never
# inherit it (their environment is an allow-list), and nothing in this process falls back on it.
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
