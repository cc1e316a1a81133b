"""The Chat tab (being built)."""

from __future__ import annotations

import gradio as gr

from rtdemo.ui.session import AppContext


def build_chat_tab(ctx: AppContext, owner: gr.State, experiment: gr.Dropdown) -> None:
    """Lay out the Chat tab inside the current Blocks context."""
    gr.Markdown("This tab is being built.")
