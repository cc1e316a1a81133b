"""The Evaluate tab: score trained students (and the teacher) on the test split, compare them side
by side with the paper's figure where the comparison holds, and browse per-question predictions,
failures first.

Handlers live in `evaluate_actions.py` (plain functions over the core); this file lays out and
wires. Model output is shown as plain text only (never Markdown or HTML).
"""

from __future__ import annotations

from functools import partial

import gradio as gr
import pandas as pd

from rtdemo.errors import UserError
from rtdemo.evaluation.results import TABLE_COLUMNS
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


def build_evaluate_tab(ctx: AppContext, owner: gr.State, experiment: gr.Dropdown) -> None:
    """Lay out the Evaluate tab inside the current Blocks context."""
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
        evaluate = gr.Button("Evaluate", variant="primary")
        cancel = gr.Button("Cancel evaluation", variant="stop")
        refresh = gr.Button("Refresh")
    with gr.Row():
        key = gr.Textbox(
            label="Teacher API key", type="password", info="only for a teacher behind an API"
        )
        teacher = gr.Button("Evaluate the teacher")
    message = gr.Markdown()
    status = gr.Markdown("No evaluation yet.")
    progress = gr.Slider(0, 100, value=0, label="Evaluation progress (%)", interactive=False)
    log = gr.Textbox(label="Evaluation log", lines=4, max_lines=10, interactive=False)
    table = gr.Dataframe(
        pd.DataFrame(columns=TABLE_COLUMNS),
        label="Comparison on the test split",
        datatype="str",
        interactive=False,
    )
    chart = gr.BarPlot(
        None,
        x="who",
        y="accuracy",
        color="series",
        y_lim=[0, 100],
        label="Test accuracy (%)",
    )
    gr.Markdown(
        "“paper”: the paper's figure for the same task, data and student family; “—” where no "
        "comparison holds.",
        elem_classes="rt-note",
    )
    with gr.Row():
        subject = gr.Dropdown([], label="Predictions of", allow_custom_value=True, scale=3)
        failures = gr.Checkbox(False, label="Failures only", scale=1)
        show = gr.Button("Show predictions", scale=1)
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
    timer = gr.Timer(2.0, active=False)
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

    who_what = [owner, experiment]
    poll = dict(fn=tick, inputs=who_what, outputs=[status, progress, log, table, chart, timer])
    lists = dict(fn=choices, inputs=who_what, outputs=[runs, subject], **private)
    evaluate.click(
        shown_errors(partial(start_evaluation, ctx)),
        [*who_what, runs, batch, length],
        message,
        api_name="start_evaluation",
    ).then(**poll, **private)
    teacher.click(
        shown_errors(partial(evaluate_teacher, ctx)),
        [*who_what, key],
        message,
        api_name="evaluate_teacher",
    ).then(**poll, **private)
    cancel.click(
        shown_errors(partial(cancel_evaluation, ctx)),
        who_what,
        message,
        api_name="cancel_evaluation",
    ).then(**poll, **private)
    refresh.click(
        status_of,
        who_what,
        [status, progress, log],
        api_name="evaluation_status",
        concurrency_limit=None,
    ).then(
        partial(results_table, ctx),
        who_what,
        [table, chart],
        api_name="results_table",
        concurrency_limit=None,
    ).then(**lists)
    browse = dict(inputs=[*who_what, subject, failures], outputs=[rows, summary, selected])
    show.click(show_predictions, **browse, api_name="predictions")
    gr.on([subject.change, failures.change], show_predictions, **browse, **private)
    rows.select(select_row, rows, selected, **private)
    timer.tick(**poll, **private)
    experiment.change(**poll, **private).then(**lists)  # a reload or another experiment
    gr.on([runs.focus, subject.focus], **lists)  # runs trained or scored in the meantime
