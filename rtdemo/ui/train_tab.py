"""The Train tab: fine-tune a student on the experiment's kept rationales (Fine-tune-CoT), on the
gold answers (the vanilla baseline), or both, as background jobs; watch, cancel and resume them.

Handlers live in `train_actions.py` (plain functions over the core); this file lays out and wires.
The student's line says whether a preparable model (`smollm2-135m`) is prepared on this server and
how to prepare it. Choosing a student picks the recipe made for it (`suggested_recipe`: `small` for
`smollm2-135m`); choosing a student or a recipe sets the method, batch size, learning rate, steps
and epochs to the recipe's (`recipe_defaults`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import gradio as gr

from rtdemo.errors import UserError
from rtdemo.hosting.fairness import serving
from rtdemo.training.recipes import RECIPES
from rtdemo.ui.forms import FormFields
from rtdemo.ui.model_notes import model_note
from rtdemo.ui.session import AppContext, shown_errors
from rtdemo.ui.train_actions import (
    DEFAULT_STEPS,
    FORMATS,
    STUDENTS,
    TrainForm,
    cancel_training,
    loss_frame,
    recipe_defaults,
    resume_training,
    start_training,
    suggested_recipe,
    train_command,
    training_status,
)


@dataclass
class _Tab:
    """The tab's components: the form, its buttons and what shows the current job."""

    form: FormFields[TrainForm]
    student_note: gr.Markdown
    start: gr.Button
    cancel: gr.Button
    resume: gr.Button
    refresh: gr.Button
    message: gr.Markdown
    command: gr.Code
    view: list[gr.components.Component]  # status, progress, loss, log
    timer: gr.Timer


def build_train_tab(ctx: AppContext, owner: gr.State, experiment: gr.Dropdown) -> None:
    """Lay out the Train tab inside the current Blocks context, and wire it."""
    _wire(ctx, owner, experiment, _layout())


def _layout() -> _Tab:
    gr.Markdown(
        "Fine-tune a small **student** on the kept rationales (**Fine-tune-CoT**) and, to compare, "
        "on the gold answers alone (the **vanilla baseline**). Jobs run in the background: "
        "leave the page and come back."
    )
    with gr.Row():
        student = gr.Dropdown(
            STUDENTS,
            value="tiny",
            allow_custom_value=True,
            label="Student",
            info="'tiny' (built here, offline), 'smollm2-135m' (a pretrained 135M model, once "
            "prepared), a Hub id, or a model folder",
        )
        recipe = gr.Radio(list(RECIPES), value="tiny", label="Recipe")
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
        max_length = gr.Number(
            0, precision=0, minimum=0, label="Max length (tokens)", info="0: the recipe's"
        )
    student_note = gr.Markdown()
    form = FormFields(
        TrainForm,
        student=student,
        recipe=recipe,
        method=method,
        formats=formats,
        run_name=run_name,
        max_steps=max_steps,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=lr,
        diverse_samples=d,
        filter_answers=keep,
        max_length=max_length,
    )
    with gr.Row():
        start = gr.Button("Start training", variant="primary")
        cancel = gr.Button("Cancel", variant="stop")
        resume = gr.Button("Resume")
        refresh = gr.Button("Refresh")
    return _Tab(
        form=form,
        student_note=student_note,
        start=start,
        cancel=cancel,
        resume=resume,
        refresh=refresh,
        message=gr.Markdown(),
        command=gr.Code(
            train_command(None, TrainForm()),
            language="shell",
            label="Equivalent CLI command",
            lines=2,
        ),
        view=[
            gr.Markdown("No training yet."),
            gr.Slider(0, 100, value=0, label="Progress (%)", interactive=False),
            gr.LinePlot(loss_frame(None), x="step", y="loss", label="Training loss", height=260),
            gr.Textbox(label="Log (last lines)", lines=8, max_lines=16, interactive=False),
        ],
        timer=gr.Timer(2.0, active=False),
    )


def _wire(ctx: AppContext, owner: gr.State, experiment: gr.Dropdown, tab: _Tab) -> None:
    form = tab.form

    def tick(who: str | None, name: str | None) -> tuple:
        try:
            v = training_status(ctx, who, name)
        except UserError as err:
            return f"⚠️ {err}", 0.0, loss_frame(None), "", gr.Timer(active=False)
        return v.status, v.percent, v.loss, v.log, gr.Timer(active=v.active)

    def start_clicked(
        owner: str | None,
        experiment: str | None,
        oauth: gr.OAuthToken | None,
        request: gr.Request,
        **values: Any,
    ) -> tuple[str, str]:
        settings = form.build(values)
        token = oauth.token if oauth else None  # a Hub id student: the signed-in user's own token
        try:
            with serving(request):  # the jobs count for this client (fair turns, its cap)
                return start_training(ctx, owner, experiment, settings, token)
        except UserError as err:
            return f"⚠️ {err}", train_command(experiment, settings)

    def status_of(owner: str | None, experiment: str | None) -> tuple:
        return tick(owner, experiment)[:4]

    def command_of(experiment: str | None, **values: Any) -> str:
        return train_command(experiment, form.build(values))

    poll = dict(fn=tick, inputs=[owner, experiment], outputs=[*tab.view, tab.timer])
    private = dict(api_visibility="private", concurrency_limit=None)
    tab.start.click(
        start_clicked,
        [owner, experiment],
        [tab.message, tab.command],
        inputs_kwargs=form.kwargs,
        api_name="start_training",
    ).then(**poll, **private)
    tab.refresh.click(
        status_of,
        [owner, experiment],
        tab.view,
        api_name="training_status",
        concurrency_limit=None,
    )

    @shown_errors
    def resume_clicked(
        owner: str | None, experiment: str | None, oauth: gr.OAuthToken | None
    ) -> str:
        return resume_training(ctx, owner, experiment, oauth.token if oauth else None)

    for button, handler, api_name in (
        (tab.cancel, shown_errors(partial(cancel_training, ctx)), "cancel_training"),
        (tab.resume, resume_clicked, "resume_training"),
    ):
        button.click(handler, [owner, experiment], tab.message, api_name=api_name).then(
            **poll, **private
        )
    tab.timer.tick(**poll, **private)
    experiment.change(**poll, **private)  # a reload or another experiment: re-attach
    gr.on(
        [c.change for c in (experiment, *form.inputs)],
        command_of,
        experiment,
        tab.command,
        inputs_kwargs=form.kwargs,
        trigger_mode="always_last",
        **private,
    )
    fields = form.components
    student, recipe = fields["student"], fields["recipe"]

    def defaults(student: str | None, recipe: str | None) -> tuple:
        try:
            return tuple(recipe_defaults(student, recipe))
        except UserError:  # a bad student or recipe: Start says what is wrong with it
            return (gr.skip(),) * 5

    def student_chosen(student: str | None, recipe: str | None) -> tuple:
        recipe = suggested_recipe(student, recipe)
        return (recipe, *defaults(student, recipe))

    recipe_fields = [fields[n] for n in ("method", "batch_size", "learning_rate")]
    recipe_fields += [fields["max_steps"], fields["epochs"]]
    student.input(student_chosen, [student, recipe], [recipe, *recipe_fields], **private)
    recipe.input(defaults, [student, recipe], recipe_fields, **private)
    student.change(model_note, student, tab.student_note, **private)
