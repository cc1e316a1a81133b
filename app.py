"""Hugging Face Spaces entry point: `python app.py` runs the app on the offline default."""

import os
import warnings

from rtdemo.ui.app import build_app
from rtdemo.ui.theme import launch_kwargs

# In the app every user types their own teacher key; a key in the server's environment must not
# reach jobs that visitors start (background jobs inherit this process's environment).
if os.environ.pop("OPENAI_API_KEY", None):
    warnings.warn(
        "OPENAI_API_KEY is ignored by the app: users type their key in the Teacher tab",
        stacklevel=1,
    )

demo = build_app()

if __name__ == "__main__":
    demo.launch(**launch_kwargs())
