"""Look and feel, in one place: Gradio 6 takes theme, css and head in `launch()`, not `Blocks()`.

`app.py` and the tests both launch with `launch_kwargs()`, so what the tests see is what users see.
"""

from __future__ import annotations

CSS = """
.rt-note { font-size: 0.9em; opacity: 0.85; }
"""


def launch_kwargs() -> dict:
    """Keyword arguments for `demo.launch(...)` shared by `app.py` and the tests."""
    import gradio as gr

    return {"theme": gr.themes.Soft(), "css": CSS, "show_error": True}
