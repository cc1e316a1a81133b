"""The Teacher tab: choose a teacher and its sampling, see the cost, start, watch, cancel, resume.

An API key is typed into a password box: it lives in the browser session and reaches the job
through its environment only. Handlers live in `teacher_actions.py` (plain functions that raise
`UserError`); this file lays out and wires, showing a `UserError` as a "⚠️" line in the tab.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from rtdemo.errors import UserError
from rtdemo.hosting.fairness import serving
from rtdemo.tasks.types import SPLITS
from rtdemo.ui.forms import FormFields
from rtdemo.ui.model_notes import LOCAL_MODEL, default_local_model, model_note
from rtdemo.ui.session import ACTIVE, AppContext
from rtdemo.ui.teacher_actions import (
    SAMPLE_COLUMNS,
    TeacherChoice,
    cancel_generation,
    estimate_generation,
    generation_status,
    resume_generation,
    start_generation,
    watch_generation,
)

TEACHERS = [
    ("Built-in offline teacher (coin flip, last letters)", "builtin"),
    ("OpenAI-compatible server", "openai"),
    ("Local model (transformers)", "hf"),
    ("Replay an uploaded completion file", "replay"),
]


def _shown(fn: Callable[..., Any], blanks: int = 0) -> Callable[..., Any]:
    """`fn` with a `UserError` turned into a "⚠️" message (and `blanks` empty outputs after it)."""

    @functools.wraps(fn)  # Gradio names the API parameters after fn's signature
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError as err:
            return (f"⚠️ {err}", *[""] * blanks) if blanks else f"⚠️ {err}"

    return run


def teacher_choice(
    *,
    teacher: str,
    base_url: str | None,
    model: str | None,
    mode: str | None,
    replay_file: str | None,
    split: str | None,
    samples: float | None,
    temperature: float | None,
    max_tokens: float | None,
    concurrency: float | None,
    budget: float | None,
    limit: float | None,
) -> TeacherChoice:
    """The tab's values as a `TeacherChoice` (Gradio numbers come as floats, a cleared box as
    None); a sample count of 0 stays 0: the command says what is wrong with it."""

    def number(value: float | None, default: float) -> float:
        return default if value is None else value

    return TeacherChoice(
        teacher=teacher,
        base_url=base_url or "",
        model=model or "",
        mode=mode or "chat",
        replay_file=replay_file or None,
        split=split or "train",
        samples=int(number(samples, 1)),
        temperature=float(number(temperature, 0.0)),
        max_tokens=int(number(max_tokens, 128)),
        concurrency=int(number(concurrency, 8)),
        budget=float(budget) if budget else None,
        limit=int(limit or 0),
    )


def _with_choice(
    ctx: AppContext,
    form: FormFields[TeacherChoice],
    action: Callable[..., tuple[str, str]],
    hub_token: bool = False,
) -> Callable[..., Any]:
    """`action(ctx, owner, experiment, TeacherChoice, key)` over the tab's inputs, by name; with
    `hub_token`, also the signed-in user's own Hub token (`hub_token=`, for a local teacher)."""

    def run(
        owner: str | None,
        experiment: str | None,
        request: gr.Request,
        oauth: gr.OAuthToken | None,
        *,
        api_key: str | None = None,
        **values: Any,
    ) -> tuple[str, str]:
        hub = {"hub_token": oauth.token if oauth else None} if hub_token else {}
        with serving(request):  # a job it starts counts for this client (fair turns, its cap)
            return action(ctx, owner, experiment, form.build(values), api_key or "", **hub)

    return _shown(run, 1)


@dataclass
class _Tab:
    """The tab's components: the form, the key, the buttons and what shows the newest job."""

    form: FormFields[TeacherChoice]
    key: gr.Textbox
    model_note: gr.Markdown  # a local model: whether smollm2-135m is prepared, how to prepare it
    server_row: gr.Row
    buttons: dict[str, gr.Button]  # estimate, start, cancel, resume, refresh
    message: gr.Markdown
    command: gr.Code
    watched: list[gr.components.Component]  # status, progress, log, samples
    timer: gr.Timer


def build_teacher_tab(ctx: AppContext, owner: gr.State, experiment: gr.Dropdown) -> None:
    """Lay out the Teacher tab inside the current Blocks context, and wire it."""
    tab = _layout()
    _wire_form(tab)
    _wire_jobs(ctx, owner, experiment, tab)


def _layout() -> _Tab:
    gr.Markdown(
        "A teacher writes a rationale and an answer for each question (two-step Zero-shot-CoT). "
        "The paper's diverse setting is D > 1 samples at temperature 0.7; on the **test** split, "
        "D = 1 at temperature 0 gives the teacher's accuracy for the Evaluate tab."
    )
    teacher = gr.Radio(TEACHERS, value="builtin", label="Teacher")
    with gr.Row(visible=False) as server_row:
        base_url = gr.Textbox(
            label="Base URL", placeholder="empty = OpenAI; or http://host:8000/v1"
        )
        key = gr.Textbox(label="API key (kept in this browser session only)", type="password")
        mode = gr.Radio(["chat", "completions"], value="chat", label="Mode")
    model = gr.Textbox(
        label="Model", placeholder="e.g. gpt-4o-mini, or a model folder", visible=False
    )
    model_notes = gr.Markdown(visible=False)
    replay = gr.File(
        label="Completion file to replay",
        file_types=[".json", ".jsonl"],
        type="filepath",
        visible=False,
    )
    with gr.Row():
        split = gr.Radio(list(SPLITS), value="train", label="Split")
        samples = gr.Number(1, label="Samples per question (D)", precision=0, minimum=1)
        temperature = gr.Slider(0.0, 2.0, value=0.0, step=0.05, label="Temperature")
        max_tokens = gr.Number(128, label="Max tokens per call", precision=0, minimum=1)
    with gr.Row():
        concurrency = gr.Number(8, label="Requests in flight", precision=0, minimum=1)
        budget = gr.Number(0, label="Budget in USD (0 = none)", minimum=0)
        limit = gr.Number(0, label="First N questions (0 = all)", precision=0, minimum=0)
    form = FormFields(
        TeacherChoice,
        teacher_choice,
        teacher=teacher,
        base_url=base_url,
        model=model,
        mode=mode,
        replay_file=replay,
        split=split,
        samples=samples,
        temperature=temperature,
        max_tokens=max_tokens,
        concurrency=concurrency,
        budget=budget,
        limit=limit,
    )
    with gr.Row():
        buttons = {
            "estimate": gr.Button("Estimate cost"),
            "start": gr.Button("Start", variant="primary"),
            "cancel": gr.Button("Cancel", variant="stop"),
            "resume": gr.Button("Resume"),
            "refresh": gr.Button("Refresh"),
        }
    message = gr.Markdown()
    command = gr.Code(
        label="Equivalent command line",
        language="shell",
        interactive=False,
        wrap_lines=True,
        lines=2,
        max_lines=6,
    )
    watched = [
        gr.Markdown("No job yet."),
        gr.Slider(0.0, 1.0, value=0.0, label="Progress", interactive=False),
        gr.Textbox(label="Log (last lines)", lines=6, max_lines=12, interactive=False),
        gr.Dataframe(
            headers=list(SAMPLE_COLUMNS),
            datatype=list(SAMPLE_COLUMNS.values()),
            interactive=False,
            label="Newest samples (what the teacher wrote, as plain text)",
            wrap=True,
            column_widths=["6%", "5%", "6%", "7%", "7%", "9%", "35%", "12%", "13%"],
        ),
    ]
    return _Tab(
        form=form,
        key=key,
        model_note=model_notes,
        server_row=server_row,
        buttons=buttons,
        message=message,
        command=command,
        watched=watched,
        timer=gr.Timer(2.0),
    )


def _wire_form(tab: _Tab) -> None:
    """Show the server settings, the model box and the file box for the teachers that use them."""
    fields = tab.form.components

    def toggle(kind: str, model: str | None):
        # A local model: smollm2-135m by default once prepared, and a line on whether it is.
        model = (model or "").strip()
        if kind == "hf":
            model = model or default_local_model()
            hint = f"{LOCAL_MODEL} (once prepared), a Hub id, or a model folder"
        else:
            model = "" if model == LOCAL_MODEL else model
            hint = "e.g. gpt-4o-mini, or a model folder"
        return (
            gr.Row(visible=kind == "openai"),
            gr.Textbox(visible=kind in ("openai", "hf"), value=model, placeholder=hint),
            gr.File(visible=kind == "replay"),
            noted(kind, model or LOCAL_MODEL),
        )

    def noted(kind: str, model: str | None):
        note = model_note(model) if kind == "hf" else ""
        return gr.Markdown(note, visible=bool(note))

    fields["teacher"].change(
        toggle,
        [fields["teacher"], fields["model"]],
        [tab.server_row, fields["model"], fields["replay_file"], tab.model_note],
        api_visibility="private",
    )
    fields["model"].blur(
        noted,
        [fields["teacher"], fields["model"]],
        tab.model_note,
        api_visibility="private",
    )


def _wire_jobs(ctx: AppContext, owner: gr.State, experiment: gr.Dropdown, tab: _Tab) -> None:
    """Estimate, start, cancel, resume and refresh; poll the newest job while it may change."""

    def status_of(owner: str | None, experiment: str | None):
        try:
            return generation_status(ctx, owner, experiment)
        except UserError as err:
            return f"⚠️ {err}", 0.0, "", []

    def cancel(owner: str | None, experiment: str | None) -> str:
        return cancel_generation(ctx, owner, experiment)

    def resume(
        owner: str | None,
        experiment: str | None,
        api_key: str | None,
        base_url: str | None,
        oauth: gr.OAuthToken | None,
    ) -> str:
        hub = oauth.token if oauth else None  # a local teacher: the user's own Hub token
        return resume_generation(ctx, owner, experiment, api_key or "", base_url or "", hub)

    def tick(who, name):
        try:
            job, shown = watch_generation(ctx, who, name)
        except UserError as err:
            return f"⚠️ {err}", 0.0, "", [], gr.Timer(active=False)
        # Poll while a job may still change (or the page has no owner yet); a new job restarts it.
        keep = who is None or (job is not None and job.status in ACTIVE)
        return (*shown, gr.Timer(active=keep))

    def rewatch(who, name):
        return (*tick(who, name)[:-1], gr.Timer(active=True))

    who_what, buttons, shown = [owner, experiment], tab.buttons, [tab.message, tab.command]
    choice = dict(inputs_kwargs={**tab.form.kwargs, "api_key": tab.key})
    buttons["estimate"].click(
        _with_choice(ctx, tab.form, estimate_generation),
        who_what,
        shown,
        **choice,
        api_name="estimate_generation",
    )
    started = buttons["start"].click(
        _with_choice(ctx, tab.form, start_generation, hub_token=True),
        who_what,
        shown,
        **choice,
        api_name="start_generation",
    )
    buttons["refresh"].click(
        status_of, who_what, tab.watched, api_name="generation_status", concurrency_limit=None
    )
    cancelled = buttons["cancel"].click(
        _shown(cancel), who_what, tab.message, api_name="cancel_generation"
    )
    resumed = buttons["resume"].click(
        _shown(resume),
        [*who_what, tab.key, tab.form.components["base_url"]],
        tab.message,
        api_name="resume_generation",
    )
    watch = dict(fn=rewatch, inputs=who_what, outputs=[*tab.watched, tab.timer])
    for event in (started, cancelled, resumed):
        event.then(**watch, api_visibility="private")
    experiment.change(**watch, api_visibility="private")
    tab.timer.tick(
        tick,
        who_what,
        [*tab.watched, tab.timer],
        api_visibility="private",
        concurrency_limit=None,
        show_progress="hidden",
    )
