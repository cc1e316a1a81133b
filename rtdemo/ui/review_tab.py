"""The Review tab: the reviewer's workspace over the teacher's rationales.

One question at a time (the D rationales of a question, each with its parsed answer and ✔/✘
against the gold) or a table; accept, reject or edit a rationale (the original is kept and a diff
shows the edit); filters and bulk actions on the current filter; keyboard shortcuts; counts and
the per-question yield; export of the curated set as JSONL and import of an edited one.
Decisions are saved as they are made. Handlers live in `review_view.py`; this file lays out and
wires. Model text only ever reaches Textbox, Dataframe (datatype "str") and HighlightedText:
never Markdown or HTML, so a rationale that contains markup is shown as the text it is.

API endpoints (`gradio_client`): review_queue, review_decide, review_bulk, export_curated,
import_curated. The first three sit on hidden triggers and answer JSON (errors raise).
"""

from __future__ import annotations

import html
from collections.abc import Callable

import gradio as gr
from gradio.context import get_render_context

from rtdemo.curation.curate import ReviewFilter
from rtdemo.errors import UserError
from rtdemo.ui import review_actions as ra
from rtdemo.ui import review_view as rv
from rtdemo.ui.session import AppContext
from rtdemo.ui.theme import REVIEW_ACCEPT, REVIEW_NEXT, REVIEW_PREVIOUS, REVIEW_REJECT

HELP = (
    "Accept or reject each rationale the teacher wrote; edit one to fix it (the teacher's "
    "original is kept). The student trains on the accepted rationales and on the correct ones "
    "nobody rejected. Decisions are saved at once.  \n"
    "**Keys** (when not typing in a box): **a** accept · **r** reject · **j** or **→** next · "
    "**k** or **←** previous."
)
VERDICT_CHOICES = [("any answer", "any"), ("correct ✔", "correct"), ("wrong ✘", "wrong")]
LENGTH_CHOICES = [
    ("complete or truncated", "any"),
    ("complete", "complete"),
    ("truncated", "truncated"),
]
STATE_CHOICES = [
    ("any", "any"),
    ("not reviewed", "pending"),
    ("reviewed", "reviewed"),
    ("accepted", "accepted"),
    ("rejected", "rejected"),
    ("edited", "edited"),
]
DIFF_COLORS = {"removed": "red", "added": "green"}
TABLE_WIDTHS = ["4%", "5%", "5%", "20%", "32%", "8%", "6%", "4%", "7%", "7%", "5%", "4%"]
SIBLING_WIDTHS = ["3%", "5%", "5%", "55%", "10%", "5%", "8%", "9%"]


def _note(text: str) -> str:
    """A status line as Markdown with any markup in it shown literally (file names, messages)."""
    return html.escape(text) if text else ""


def _error(err: UserError) -> str:
    return f"⚠️ {_note(str(err))}"


def page_values(p: rv.ReviewPage) -> tuple:
    """The page's values in the order of the tab's page components (see `build_review_tab`).

    The first three go to Markdown: the status (escaped), the counts and the position, which
    hold only our own words and numbers. Model text goes to the text components after them.
    """
    d = p.detail
    return (
        _note(p.message),
        rv.counts_markdown(p.counts, p.in_filter),
        d.position,
        d.sample_id,
        d.question,
        d.gold,
        d.prediction,
        d.verdict,
        d.decision,
        d.teacher,
        d.siblings,
        d.original,
        d.rationale,
        d.diff,
        d.answer_text,
        p.table,
        p.yields,
    )


def build_review_tab(ctx: AppContext, owner: gr.State, experiment: gr.Dropdown) -> None:
    """Lay out the Review tab inside the current Blocks context."""
    tab = get_render_context()  # the enclosing gr.Tab: refresh when it is opened
    gr.Markdown(HELP, elem_classes="rt-note")
    status = gr.Markdown()
    counts = gr.Markdown()
    with gr.Row(equal_height=True):
        verdict = gr.Dropdown(VERDICT_CHOICES, value="any", label="Answer")
        length = gr.Dropdown(LENGTH_CHOICES, value="any", label="Length")
        state = gr.Dropdown(STATE_CHOICES, value="any", label="Review")
        search = gr.Textbox(label="Search", placeholder="text in question, rationale or answer")
        refresh = gr.Button("Refresh", scale=0)
    with gr.Row():
        accept_all = gr.Button("Accept all correct and complete", size="sm")
        reject_all = gr.Button("Reject all wrong or truncated", size="sm")
        clear_all = gr.Button("Clear decisions in this filter", size="sm")
    gr.Markdown(
        "Bulk actions work on the rationales of the current filter; accepting or rejecting "
        "leaves the ones already decided as they are.",
        elem_classes="rt-note",
    )
    with gr.Tabs(selected="one") as views:
        with gr.Tab("One question", id="one"):
            position = gr.Markdown()
            with gr.Row():
                previous = gr.Button("Previous", elem_id=REVIEW_PREVIOUS)
                following = gr.Button("Next", elem_id=REVIEW_NEXT)
                accept = gr.Button("Accept", variant="primary", elem_id=REVIEW_ACCEPT)
                reject = gr.Button("Reject", variant="stop", elem_id=REVIEW_REJECT)
                clear = gr.Button("Clear decision")
            advance = gr.Checkbox(True, label="Move to the next rationale after Accept or Reject")
            question = gr.Textbox(label="Question", interactive=False, lines=2)
            with gr.Row():
                gold = gr.Textbox(label="Gold answer", interactive=False)
                prediction = gr.Textbox(label="Parsed answer", interactive=False)
                verdict_box = gr.Textbox(label="Verdict", interactive=False)
                decision_box = gr.Textbox(label="Decision", interactive=False)
            siblings = gr.Dataframe(
                headers=rv.SIBLING_HEADERS,
                datatype="str",
                interactive=False,
                wrap=True,
                column_widths=SIBLING_WIDTHS,
                label="The D rationales of this question (click one to review it)",
            )
            original = gr.Textbox(
                label="Teacher's rationale (original)", interactive=False, lines=3
            )
            edit = gr.Textbox(
                label="Rationale to train on (edit it, then Save edit)", interactive=True, lines=3
            )
            with gr.Row():
                save_edit = gr.Button("Save edit")
                discard_edit = gr.Button("Restore the teacher's rationale")
            diff = gr.HighlightedText(
                label="What the edit changes",
                color_map=DIFF_COLORS,
                combine_adjacent=True,
                show_legend=True,
            )
            with gr.Accordion("Teacher's answer step and settings", open=False):
                answer_text = gr.Textbox(label="Teacher's answer (call 2)", interactive=False)
                teacher = gr.Textbox(label="Teacher", interactive=False)
                sample_id = gr.Number(label="Sample id", precision=0, interactive=False)
        with gr.Tab("Table", id="table"):
            gr.Markdown(
                f"The current filter (first {rv.TABLE_LIMIT} rows). Click a row to review it.",
                elem_classes="rt-note",
            )
            table = gr.Dataframe(
                headers=rv.TABLE_HEADERS,
                datatype="str",
                interactive=False,
                wrap=True,
                column_widths=TABLE_WIDTHS,
            )
        with gr.Tab("Per-question yield", id="yield"):
            yields = gr.Dataframe(
                headers=rv.YIELD_HEADERS,
                datatype=["str", "str", *["number"] * 6],
                interactive=False,
                wrap=True,
            )
        with gr.Tab("Export / import", id="files"):
            with gr.Row():
                fmt = gr.Radio(
                    [("Fine-tune-CoT", "cot"), ("vanilla", "vanilla")], value="cot", label="Format"
                )
                student = gr.Radio(["causal", "seq2seq"], value="causal", label="Student")
                include_all = gr.Checkbox(
                    False, label="Every finished rationale (not only the kept ones)"
                )
            export = gr.Button("Export curated set (JSONL)")
            download = gr.File(label="Curated set", interactive=False)
            upload = gr.File(label="Edited export to import", file_types=[".jsonl"])
            import_button = gr.Button("Import reviews")
            files_status = gr.Markdown()

    filters = [verdict, length, state, search]
    page = [status, counts, position, sample_id, question, gold, prediction, verdict_box]
    page += [decision_box, teacher, siblings, original, edit, diff, answer_text, table, yields]

    def show(who, name, v, ln, st, text, sid, move: rv.Move = "stay", message: str = ""):
        try:
            filt = ReviewFilter(v, ln, st, text or "")
            return page_values(rv.load_page(ctx, who, name, filt, sid, move, message))
        except UserError as err:
            return (_error(err), *page_values(rv.ReviewPage())[1:])

    def act(action: str) -> Callable:
        def handler(who, name, v, ln, st, text, sid, edited, go_on):
            try:
                message = ra.review_decide(ctx, who, name, sid, action, edited)
            except UserError as err:
                return (_error(err), *[gr.skip()] * (len(page) - 1))
            move = "next" if go_on and action in ("accept", "reject") else "stay"
            return show(who, name, v, ln, st, text, sid, move, message)

        return handler

    def bulk(action: str) -> Callable:
        def handler(who, name, v, ln, st, text, sid):
            try:
                message = ra.review_bulk(
                    ctx, who, name, ReviewFilter(v, ln, st, text or ""), action
                )
            except UserError as err:
                return (_error(err), *[gr.skip()] * (len(page) - 1))
            return show(who, name, v, ln, st, text, sid, "stay", message)

        return handler

    base = [owner, experiment, *filters]
    glue = {"api_visibility": "private"}
    for trigger in (refresh.click, search.submit, verdict.input, length.input, state.input):
        trigger(show, [*base, sample_id], page, **glue)
    if isinstance(tab, gr.Tab):
        tab.select(show, [*base, sample_id], page, **glue)
    experiment.change(lambda *a: show(*a, None), base, page, **glue)
    previous.click(lambda *a: show(*a, "prev"), [*base, sample_id], page, **glue)
    following.click(lambda *a: show(*a, "next"), [*base, sample_id], page, **glue)
    for button, action in (
        (accept, "accept"),
        (reject, "reject"),
        (clear, "clear"),
        (save_edit, "edit"),
        (discard_edit, "discard_edit"),
    ):
        button.click(act(action), [*base, sample_id, edit, advance], page, **glue)
    for button, action in (
        (accept_all, "accept_correct_complete"),
        (reject_all, "reject_wrong_or_truncated"),
        (clear_all, "clear"),
    ):
        button.click(bulk(action), [*base, sample_id], page, **glue)
    edit.input(
        rv.diff_spans,
        [original, edit],
        diff,
        show_progress="hidden",
        trigger_mode="always_last",
        **glue,
    )

    def picker(id_column: int) -> Callable:
        def pick(who, name, v, ln, st, text, evt: gr.SelectData):
            sid = int(evt.row_value[id_column])
            return (*show(who, name, v, ln, st, text, sid, "show"), gr.Tabs(selected="one"))

        return pick

    table.select(picker(rv.TABLE_HEADERS.index("id")), base, [*page, views], **glue)
    siblings.select(picker(rv.SIBLING_HEADERS.index("id")), base, [*page, views], **glue)

    def on_export(who, name, f, kind, everything):
        try:
            path, message = ra.export_curated(ctx, who, name, f, kind, everything)
        except UserError as err:
            return None, _error(err)
        return path, _note(message)

    def on_import(who, name, path):
        try:
            return _note(ra.import_curated(ctx, who, name, path))
        except UserError as err:
            return _error(err)

    export.click(
        on_export,
        [owner, experiment, fmt, student, include_all],
        [download, files_status],
        api_name="export_curated",
    )
    import_button.click(
        on_import, [owner, experiment, upload], files_status, api_name="import_curated"
    ).then(show, [*base, sample_id], page, **glue)
    _api_endpoints(ctx, owner, experiment, filters, sample_id, edit)


def _api_endpoints(ctx, owner, experiment, filters, sample_id, edit) -> None:
    """review_queue, review_decide and review_bulk for API clients, on hidden triggers.

    They take the owner from the session's state (a client cannot name another owner) and
    answer JSON; a `UserError` becomes a `gr.Error` the client raises with its message.
    """

    def guarded(fn: Callable) -> Callable:
        def call(*args):
            try:
                return fn(*args)
            except UserError as err:
                raise gr.Error(str(err)) from None

        return call

    def queue(who, name, v, ln, st, text):
        return rv.review_queue(ctx, who, name, ReviewFilter(v, ln, st, text or ""))

    def decide(who, name, sid, action, edited):
        message = ra.review_decide(ctx, who, name, sid, action, edited)
        return {"message": message, "sample": rv.review_sample(ctx, who, name, sid)}

    def bulk(who, name, v, ln, st, text, action):
        filt = ReviewFilter(v, ln, st, text or "")
        return {"message": ra.review_bulk(ctx, who, name, filt, action)}

    with gr.Group(visible=False):
        action = gr.Textbox(label="Action")
        result = gr.JSON()
        for name, fn, inputs in (
            ("review_queue", queue, [owner, experiment, *filters]),
            ("review_decide", decide, [owner, experiment, sample_id, action, edit]),
            ("review_bulk", bulk, [owner, experiment, *filters, action]),
        ):
            gr.Button(visible=False).click(guarded(fn), inputs, result, api_name=name)
