"""The Teacher tab: choose a teacher and its sampling, see the cost, start, watch, cancel, resume.

An API key is typed into a password box: it lives in the browser session and reaches the job
through its environment only. Handlers live in `teacher_actions.py` (plain functions that raise
`UserError`); this file lays out and wires, showing a `UserError` as a "⚠️" line in the tab.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import gradio as gr

from rtdemo.errors import UserError
from rtdemo.tasks.types import SPLITS
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
    def run(*args: Any) -> Any:
        try:
            return fn(*args)
        except UserError as err:
            return (f"⚠️ {err}", *[""] * blanks) if blanks else f"⚠️ {err}"

    return run


def _with_choice(ctx: AppContext, action: Callable[..., tuple[str, str]]) -> Callable[..., Any]:
    """`action(ctx, owner, experiment, TeacherChoice, key)` over the tab's inputs, by name."""

    def run(
        owner: str | None,
        experiment: str | None,
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
        first_n: float | None,
        api_key: str | None,
    ) -> tuple[str, str]:
        number = lambda value, default: default if value is None else value  # noqa: E731
        choice = TeacherChoice(
            teacher,
            base_url or "",
            model or "",
            mode or "chat",
            replay_file or None,
            split or "train",
            int(number(samples, 1)),  # 0 stays 0: the command says what is wrong with it
            float(number(temperature, 0.0)),
            int(number(max_tokens, 128)),
            int(number(concurrency, 8)),
            float(budget) if budget else None,
            int(first_n or 0),
        )
        return action(ctx, owner, experiment, choice, api_key or "")

    return _shown(run, 1)


def build_teacher_tab(ctx: AppContext, owner: gr.State, experiment: gr.Dropdown) -> None:
    """Lay out the Teacher tab inside the current Blocks context."""
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
    with gr.Row():
        estimate_btn = gr.Button("Estimate cost")
        start_btn = gr.Button("Start", variant="primary")
        cancel_btn = gr.Button("Cancel", variant="stop")
        resume_btn = gr.Button("Resume")
        refresh_btn = gr.Button("Refresh")
    message = gr.Markdown()
    command = gr.Code(
        label="Equivalent command line",
        language="shell",
        interactive=False,
        wrap_lines=True,
        lines=2,
        max_lines=6,
    )
    status = gr.Markdown("No job yet.")
    progress = gr.Slider(0.0, 1.0, value=0.0, label="Progress", interactive=False)
    log = gr.Textbox(label="Log (last lines)", lines=6, max_lines=12, interactive=False)
    table = gr.Dataframe(
        headers=list(SAMPLE_COLUMNS),
        datatype=list(SAMPLE_COLUMNS.values()),
        interactive=False,
        label="Newest samples (what the teacher wrote, as plain text)",
        wrap=True,
        column_widths=["6%", "5%", "6%", "7%", "7%", "9%", "35%", "12%", "13%"],
    )
    timer = gr.Timer(2.0)

    settings = [
        teacher,
        base_url,
        model,
        mode,
        replay,
        split,
        samples,
        temperature,
        max_tokens,
        concurrency,
        budget,
        limit,
    ]
    watched = [status, progress, log, table]

    def toggle(kind: str):
        return (
            gr.Row(visible=kind == "openai"),
            gr.Textbox(visible=kind in ("openai", "hf")),
            gr.File(visible=kind == "replay"),
        )

    teacher.change(toggle, teacher, [server_row, model, replay], api_visibility="private")

    def status_of(owner: str | None, experiment: str | None):
        try:
            return generation_status(ctx, owner, experiment)
        except UserError as err:
            return f"⚠️ {err}", 0.0, "", []

    def cancel(owner: str | None, experiment: str | None) -> str:
        return cancel_generation(ctx, owner, experiment)

    def resume(owner: str | None, experiment: str | None, api_key: str | None) -> str:
        return resume_generation(ctx, owner, experiment, api_key or "")

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

    inputs = [owner, experiment, *settings, key]
    estimate = _with_choice(ctx, estimate_generation)
    estimate_btn.click(estimate, inputs, [message, command], api_name="estimate_generation")
    start = _with_choice(ctx, start_generation)
    started = start_btn.click(start, inputs, [message, command], api_name="start_generation")
    refresh_btn.click(
        status_of,
        [owner, experiment],
        watched,
        api_name="generation_status",
        concurrency_limit=None,
    )
    cancelled = cancel_btn.click(
        _shown(cancel),
        [owner, experiment],
        message,
        api_name="cancel_generation",
    )
    resumed = resume_btn.click(
        _shown(resume),
        [owner, experiment, key],
        message,
        api_name="resume_generation",
    )
    for event in (started, cancelled, resumed):
        event.then(rewatch, [owner, experiment], [*watched, timer], api_visibility="private")
    experiment.change(rewatch, [owner, experiment], [*watched, timer], api_visibility="private")
    timer.tick(
        tick,
        [owner, experiment],
        [*watched, timer],
        api_visibility="private",
        concurrency_limit=None,
        show_progress="hidden",
    )
