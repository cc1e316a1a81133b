"""Hugging Face Spaces entry point: `python app.py` runs the app on the offline default."""

from rtdemo.ui.app import build_app
from rtdemo.ui.theme import launch_kwargs

demo = build_app()

if __name__ == "__main__":
    demo.launch(**launch_kwargs())
