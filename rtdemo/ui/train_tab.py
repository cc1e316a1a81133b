"""The Train tab: fine-tune a student on the experiment's kept rationales (Fine-tune-CoT), on the
gold answers (the vanilla baseline), or both, as background jobs; watch, cancel and resume them.

Handlers live in `train_actions.py` (plain functions over the core); this file lays out and wires.
"""

from __future__ import annotations

from functools import partial

import gradio as gr

from rtdemo.errors import UserError
from rtdemo.ui.session import AppContext, shown_errors
from rtdemo.ui.train_actions import (
    DEFAULT_STEPS,
    FORMATS,
    RECIPE_DEFAULTS,
    TrainForm,
    cancel_training,
    loss_frame,
    resume_training,
    start_training,
    train_command,
    training_status,
)


def build_train_tab(ctx: AppContext, owner: gr.State, experiment: gr.Dropdown) -> None:
    """Lay out the Train tab inside the current Blocks context."""
    gr.Markdown(
        "Fine-tune a small **student** on the kept rationales (**Fine-tune-CoT**) and, to compare, "
        "on the gold answers alone (the **vanilla baseline**). Jobs run in the background: "
        "leave the page and come back."
    )
    with gr.Row():
        student = gr.Dropdown(
            ["tiny", "gpt2", "google/flan-t5-large"],
            value="tiny",
            allow_custom_value=True,
            label="Student",
            info="'tiny' (built here, offline), a Hub id, or a model folder",
        )
        recipe = gr.Radio(["tiny", "paper"], value="tiny", label="Recipe")
        method = gr.Radio(["full", "lora"], value="full", label="Method")
        formats = gr.Radio(list(FORMATS), value="both", label="Format")
    with gr.Row():
        run_name = gr.Textbox(label="Run name", placeholder="default: cot / vanilla")
        max_steps = gr.Number(DEFAULT_STEPS, precision=0, label="Max steps", info="0: use Epochs")
        epochs = gr.Number(20, label="Epochs", info="when Max steps is 0")
        batch_size = gr.Number(TrainForm.batch_size, precision=0, label="Batch size")
        lr = gr.Number(TrainForm.learning_rate, label="Learning rate")
        d = gr.Number(1, precision=0, label="Samples per question (D)")
        keep = gr.Checkbox(True, label="Only correct rationales")
    form = [student, recipe, method, formats, run_name, max_steps, epochs, batch_size, lr, d, keep]
    with gr.Row():
        start = gr.Button("Start training", variant="primary")
        cancel = gr.Button("Cancel", variant="stop")
        resume = gr.Button("Resume")
        refresh = gr.Button("Refresh")
    message = gr.Markdown()
    command = gr.Code(
        train_command(None, TrainForm()), language="shell", label="Equivalent CLI command", lines=2
    )
    status = gr.Markdown("No training yet.")
    progress = gr.Slider(0, 100, value=0, label="Progress (%)", interactive=False)
    loss = gr.LinePlot(loss_frame(None), x="step", y="loss", label="Training loss", height=260)
    log = gr.Textbox(label="Log (last lines)", lines=8, max_lines=16, interactive=False)
    timer = gr.Timer(2.0, active=False)
    view = [status, progress, loss, log]

    def tick(who: str | None, name: str | None) -> tuple:
        try:
            v = training_status(ctx, who, name)
        except UserError as err:
            return f"⚠️ {err}", 0.0, loss_frame(None), "", gr.Timer(active=False)
        return v.status, v.percent, v.loss, v.log, gr.Timer(active=v.active)

    def start_clicked(
        owner: str | None,
        experiment: str | None,
        student: str,
        recipe: str,
        method: str,
        formats: str,
        run_name: str,
        max_steps: int,
        epochs: float,
        batch_size: int,
        learning_rate: float,
        samples_per_question: int,
        filter_answers: bool,
    ) -> tuple[str, str]:
        values = (student, recipe, method, formats, run_name, max_steps, epochs, batch_size)
        settings = TrainForm.of(*values, learning_rate, samples_per_question, filter_answers)
        try:
            return start_training(ctx, owner, experiment, settings)
        except UserError as err:
            return f"⚠️ {err}", train_command(experiment, settings)

    def status_of(owner: str | None, experiment: str | None) -> tuple:
        return tick(owner, experiment)[:4]

    poll = dict(fn=tick, inputs=[owner, experiment], outputs=[*view, timer])
    private = dict(api_visibility="private", concurrency_limit=None)
    start.click(
        start_clicked, [owner, experiment, *form], [message, command], api_name="start_training"
    ).then(**poll, **private)
    refresh.click(
        status_of,
        [owner, experiment],
        view,
        api_name="training_status",
        concurrency_limit=None,
    )
    for button, handler in ((cancel, cancel_training), (resume, resume_training)):
        button.click(
            shown_errors(partial(handler, ctx)),
            [owner, experiment],
            message,
            api_name=handler.__name__,
        ).then(**poll, **private)
    timer.tick(**poll, **private)
    experiment.change(**poll, **private)  # a reload or another experiment: re-attach
    gr.on(
        [c.change for c in (experiment, *form)],
        lambda name, *values: train_command(name, TrainForm.of(*values)),
        [experiment, *form],
        command,
        trigger_mode="always_last",
        **private,
    )
    recipe.change(lambda r: RECIPE_DEFAULTS[r], recipe, [batch_size, lr], **private)
