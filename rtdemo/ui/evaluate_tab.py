"""The Evaluate tab (being built)."""

from __future__ import annotations

import gradio as gr

from rtdemo.ui.session import AppContext


def build_evaluate_tab(ctx: AppContext, owner: gr.State, experiment: gr.Dropdown) -> None:
    """Lay out the Evaluate tab inside the current Blocks context."""
    gr.Markdown("This tab is being built.")
