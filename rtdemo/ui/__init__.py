"""The Gradio shell: one file per tab, wired to plain functions of the core (`rtdemo.ui.app`)."""
