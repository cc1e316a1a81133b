"""Build the app: `demo = build_app()`; `demo.launch(**launch_kwargs())`."""

from __future__ import annotations

import gradio as gr

from rtdemo.ui.task_tab import build_task_tab

TITLE = "Reasoning Teacher Studio"


def build_app() -> gr.Blocks:
    """The Gradio Blocks of the whole app (no network, no model loading while building)."""
    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown(
            f"# {TITLE}\nTeach a small model to reason from a large one "
            "([Fine-tune-CoT](https://arxiv.org/abs/2212.10071)). This build has the task browser; "
            "teacher, review, training and evaluation are being built."
        )
        with gr.Tab("Task"):
            build_task_tab()
    return demo
