"""Reasoning Teacher Studio: Fine-tune-CoT (Ho et al., ACL 2023) end to end.

The package is a functional core (tasks, teachers, generation, curation, training, evaluation,
publishing) with a thin Gradio shell in `rtdemo.ui` and a CLI in `rtdemo.cli.main`
(`python -m rtdemo --help`).
"""

__version__ = "0.1.0"
