"""The Evaluate tab: score trained students (and the teacher) on the test split, compare them side
by side with the paper's figure where the comparison holds, and browse per-question predictions,
failures first.

Handlers live in `evaluate_actions.py` (plain functions over the core); this file lays out and
wires. Model output is shown as plain text only (never Markdown or HTML).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import gradio as gr
import pandas as pd

from rtdemo.errors import UserError
from rtdemo.evaluation.results import TABLE_COLUMNS
from rtdemo.hosting.fairness import serving
from rtdemo.ui.evaluate_actions import (
    PREDICTION_COLUMNS,
    cancel_evaluation,
    evaluate_teacher,
    evaluation_status,
    prediction_subjects,
    predictions,
    results_table,
    start_evaluation,
    trained_runs,
)
from rtdemo.ui.session import AppContext, shown_errors


@dataclass
class _Tab:
    """The tab's components: what to score, the buttons, the job, the comparison, the browser."""

    runs: gr.Dropdown
    settings: list[gr.components.Component]  # batch size, max total length
    key: gr.Textbox
    buttons: dict[str, gr.Button]  # evaluate, cancel, refresh, teacher, show
    message: gr.Markdown
    job: list[gr.components.Component]  # status, progress, log
    comparison: list[gr.components.Component]  # table, chart
    subject: gr.Dropdown
    failures: gr.Checkbox
    browsed: list[gr.components.Component]  # rows, summary, selected output
    timer: gr.Timer


def build_evaluate_tab(ctx: AppContext, owner: gr.State, experiment: gr.Dropdown) -> None:
    """Lay out the Evaluate tab inside the current Blocks context, and wire it."""
    tab = _layout()
    _wire_jobs(ctx, owner, experiment, tab)
    _wire_predictions(ctx, owner, experiment, tab)


def _layout() -> _Tab:
    gr.Markdown(
        "Score the trained students on the **test split** (greedy answers, the paper's answer "
        "cleansing), and the teacher too; then compare them."
    )
    with gr.Row():
        runs = gr.Dropdown(
            [],
            multiselect=True,
            allow_custom_value=True,  # API clients name runs this session has not listed
            label="Student runs",
            info="none picked: every run not yet scored",
        )
        batch = gr.Number(32, precision=0, label="Batch size", info="questions per generate batch")
        length = gr.Number(512, precision=0, label="Max total length", info="tokens (paper: 1024)")
    with gr.Row():
        buttons = {
            "evaluate": gr.Button("Evaluate", variant="primary"),
            "cancel": gr.Button("Cancel evaluation", variant="stop"),
            "refresh": gr.Button("Refresh"),
        }
    with gr.Row():
        key = gr.Textbox(
            label="Teacher API key", type="password", info="only for a teacher behind an API"
        )
        buttons["teacher"] = gr.Button("Evaluate the teacher")
    message = gr.Markdown()
    job = [
        gr.Markdown("No evaluation yet."),
        gr.Slider(0, 100, value=0, label="Evaluation progress (%)", interactive=False),
        gr.Textbox(label="Evaluation log", lines=4, max_lines=10, interactive=False),
    ]
    comparison = [
        gr.Dataframe(
            pd.DataFrame(columns=TABLE_COLUMNS),
            label="Comparison on the test split",
            datatype="str",
            interactive=False,
        ),
        gr.BarPlot(
            None,
            x="who",
            y="accuracy",
            color="series",
            y_lim=[0, 100],
            label="Test accuracy (%)",
        ),
    ]
    gr.Markdown(
        "“paper”: the paper's figure for the same task, data and student family; “—” where no "
        "comparison holds.",
        elem_classes="rt-note",
    )
    with gr.Row():
        subject = gr.Dropdown([], label="Predictions of", allow_custom_value=True, scale=3)
        failures = gr.Checkbox(False, label="Failures only", scale=1)
        buttons["show"] = gr.Button("Show predictions", scale=1)
    summary = gr.Markdown()
    rows = gr.Dataframe(
        pd.DataFrame(columns=PREDICTION_COLUMNS),
        label="Predictions (failures first; select a row to read its output)",
        datatype="str",
        interactive=False,
        wrap=True,
        column_widths=["5%", "6%", "27%", "10%", "10%", "42%"],
    )
    selected = gr.Textbox(label="Selected output", lines=6, interactive=False)
    return _Tab(
        runs=runs,
        settings=[batch, length],
        key=key,
        buttons=buttons,
        message=message,
        job=job,
        comparison=comparison,
        subject=subject,
        failures=failures,
        browsed=[rows, summary, selected],
        timer=gr.Timer(2.0, active=False),
    )


def _wire_jobs(ctx: AppContext, owner: gr.State, experiment: gr.Dropdown, tab: _Tab) -> None:
    """Evaluate the students or the teacher, cancel, refresh; poll the job while it runs."""
    private = dict(api_visibility="private", concurrency_limit=None)

    def tick(who: str | None, name: str | None) -> tuple:
        try:
            view = evaluation_status(ctx, who, name)
            return (*view[:3], *results_table(ctx, who, name), gr.Timer(active=view.active))
        except UserError as err:
            return f"⚠️ {err}", 0.0, "", *results_table(ctx, None, None), gr.Timer(active=False)

    def status_of(owner: str | None, experiment: str | None) -> tuple:
        return tuple(evaluation_status(ctx, owner, experiment))[:3]

    def choices(who: str | None, name: str | None) -> tuple:
        try:
            names, subjects = trained_runs(ctx, who, name), prediction_subjects(ctx, who, name)
        except UserError:
            names, subjects = [], []
        return gr.Dropdown(choices=names), gr.Dropdown(choices=subjects)

    # The jobs these two start count for the request's client (fair turns, its cap).
    @shown_errors
    def evaluate_clicked(
        owner: str | None,
        experiment: str | None,
        runs: list[str] | str | None,
        request: gr.Request,
        oauth: gr.OAuthToken | None,
        batch_size: int = 32,
        max_total_length: int = 512,
    ) -> str:
        size, hub = (batch_size, max_total_length), oauth.token if oauth else None
        with serving(request):  # a Hub id base model: with the signed-in user's own token
            return start_evaluation(ctx, owner, experiment, runs, *size, hub_token=hub)

    @shown_errors
    def teacher_clicked(
        owner: str | None,
        experiment: str | None,
        request: gr.Request,
        oauth: gr.OAuthToken | None,
        api_key: str = "",
    ) -> str:
        hub = oauth.token if oauth else None  # a local teacher: the user's own Hub token
        with serving(request):
            return evaluate_teacher(ctx, owner, experiment, api_key, hub_token=hub)

    who_what, buttons = [owner, experiment], tab.buttons
    poll = dict(fn=tick, inputs=who_what, outputs=[*tab.job, *tab.comparison, tab.timer])
    lists = dict(fn=choices, inputs=who_what, outputs=[tab.runs, tab.subject], **private)
    buttons["evaluate"].click(
        evaluate_clicked,
        [*who_what, tab.runs, *tab.settings],
        tab.message,
        api_name="start_evaluation",
    ).then(**poll, **private)
    buttons["teacher"].click(
        teacher_clicked,
        [*who_what, tab.key],
        tab.message,
        api_name="evaluate_teacher",
    ).then(**poll, **private)
    buttons["cancel"].click(
        shown_errors(partial(cancel_evaluation, ctx)),
        who_what,
        tab.message,
        api_name="cancel_evaluation",
    ).then(**poll, **private)
    buttons["refresh"].click(
        status_of,
        who_what,
        tab.job,
        api_name="evaluation_status",
        concurrency_limit=None,
    ).then(
        partial(results_table, ctx),
        who_what,
        tab.comparison,
        api_name="results_table",
        concurrency_limit=None,
    ).then(**lists)
    tab.timer.tick(**poll, **private)
    experiment.change(**poll, **private).then(**lists)  # a reload or another experiment
    gr.on([tab.runs.focus, tab.subject.focus], **lists)  # runs trained or scored meanwhile


def _wire_predictions(ctx: AppContext, owner: gr.State, experiment: gr.Dropdown, tab: _Tab) -> None:
    """Browse one subject's predictions (`predictions`), failures first; read a selected row."""

    def show_predictions(
        owner: str | None, experiment: str | None, subject: str | None, failures_only: bool
    ) -> tuple:
        try:
            return (*predictions(ctx, owner, experiment, subject, failures_only), "")
        except UserError as err:
            return pd.DataFrame(columns=PREDICTION_COLUMNS), f"⚠️ {err}", ""

    def select_row(data: pd.DataFrame, evt: gr.SelectData) -> str:
        row = evt.row_value or []
        return f"Question: {row[2]}\n\nGold answer: {row[3]}\n\n{row[5]}" if len(row) > 5 else ""

    browse = dict(inputs=[owner, experiment, tab.subject, tab.failures], outputs=tab.browsed)
    tab.buttons["show"].click(show_predictions, **browse, api_name="predictions")
    private = dict(api_visibility="private", concurrency_limit=None)
    gr.on([tab.subject.change, tab.failures.change], show_predictions, **browse, **private)
    rows, _, selected = tab.browsed
    rows.select(select_row, rows, selected, **private)
