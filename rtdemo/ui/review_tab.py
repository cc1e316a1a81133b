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

import functools
import html
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import gradio as gr
from gradio.context import get_render_context

from rtdemo.curation.curate import ReviewFilter
from rtdemo.errors import UserError
from rtdemo.ui import review_actions as ra
from rtdemo.ui import review_view as rv
from rtdemo.ui.forms import FormFields
from rtdemo.ui.session import AppContext
from rtdemo.ui.theme import REVIEW_ACCEPT, REVIEW_NEXT, REVIEW_PREVIOUS, REVIEW_REJECT

HELP = (
    "Accept or reject each rationale the teacher wrote; edit one to fix it (the teacher's "
    "original is kept). The student trains on the accepted rationales and on the correct, "
    "non-empty ones nobody rejected. Decisions are saved at once.  \n"
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


def review_filter(*, verdict: str, length: str, state: str, text: str | None) -> ReviewFilter:
    """The filter row's values as a `ReviewFilter` (a `UserError` for a value it does not know)."""
    return ReviewFilter(verdict=verdict, length=length, state=state, text=text or "")


DECISIONS = {  # action: the one-question view's button (label, options); edits are added below
    "accept": ("Accept", dict(variant="primary", elem_id=REVIEW_ACCEPT)),
    "reject": ("Reject", dict(variant="stop", elem_id=REVIEW_REJECT)),
    "clear": ("Clear decision", {}),
}
BULK = {
    "accept_correct_complete": "Accept all correct and complete",
    "reject_wrong_or_truncated": "Reject all wrong or truncated",
    "clear": "Clear decisions in this filter",
}


@dataclass
class _One:
    """The "One question" view: moving, deciding, editing, and the sample's fields."""

    position: gr.Markdown
    previous: gr.Button
    following: gr.Button
    decide: dict[str, gr.Button]  # accept, reject, clear, edit, discard_edit
    advance: gr.Checkbox
    fields: list[gr.components.Component]  # question, gold, parsed answer, verdict, decision
    siblings: gr.Dataframe
    original: gr.Textbox
    edit: gr.Textbox
    diff: gr.HighlightedText
    answer_text: gr.Textbox
    teacher: gr.Textbox
    sample_id: gr.Number


@dataclass
class _Files:
    """The "Export / import" view."""

    export_form: list[gr.components.Component]  # format, student, include_all
    export: gr.Button
    download: gr.File
    upload: gr.File
    import_button: gr.Button
    status: gr.Markdown


@dataclass
class _Tab:
    filters: FormFields[ReviewFilter]
    refresh: gr.Button
    search: gr.Textbox
    bulk: dict[str, gr.Button]
    views: gr.Tabs
    one: _One
    table: gr.Dataframe
    yields: gr.Dataframe
    files: _Files
    status: gr.Markdown
    counts: gr.Markdown

    @property
    def page(self) -> list[gr.components.Component]:
        """The components `page_values` fills, in its order."""
        o = self.one
        return [
            self.status,
            self.counts,
            o.position,
            o.sample_id,
            *o.fields,
            o.teacher,
            o.siblings,
            o.original,
            o.edit,
            o.diff,
            o.answer_text,
            self.table,
            self.yields,
        ]


def build_review_tab(ctx: AppContext, owner: gr.State, experiment: gr.Dropdown) -> None:
    """Lay out the Review tab inside the current Blocks context, and wire it."""
    enclosing = get_render_context()  # the enclosing gr.Tab: refresh when it is opened
    tab = _layout()
    _wire_page(ctx, owner, experiment, tab, enclosing)
    _wire_files(ctx, owner, experiment, tab)
    _api_endpoints(ctx, owner, experiment, tab.filters, tab.one.sample_id, tab.one.edit)


def _layout() -> _Tab:
    gr.Markdown(HELP, elem_classes="rt-note")
    status = gr.Markdown()
    counts = gr.Markdown()
    with gr.Row(equal_height=True):
        verdict = gr.Dropdown(VERDICT_CHOICES, value="any", label="Answer")
        length = gr.Dropdown(LENGTH_CHOICES, value="any", label="Length")
        state = gr.Dropdown(STATE_CHOICES, value="any", label="Review")
        search = gr.Textbox(label="Search", placeholder="text in question, rationale or answer")
        refresh = gr.Button("Refresh", scale=0)
    filters = FormFields(
        ReviewFilter, review_filter, verdict=verdict, length=length, state=state, text=search
    )
    with gr.Row():
        bulk = {action: gr.Button(label, size="sm") for action, label in BULK.items()}
    gr.Markdown(
        "Bulk actions work on the rationales of the current filter; accepting or rejecting "
        "leaves the ones already decided as they are.",
        elem_classes="rt-note",
    )
    with gr.Tabs(selected="one") as views:
        with gr.Tab("One question", id="one"):
            one = _one_question()
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
                datatype=["str", "str", *["number"] * 7],
                interactive=False,
                wrap=True,
            )
        with gr.Tab("Export / import", id="files"):
            files = _files()
    return _Tab(
        filters=filters,
        refresh=refresh,
        search=search,
        bulk=bulk,
        views=views,
        one=one,
        table=table,
        yields=yields,
        files=files,
        status=status,
        counts=counts,
    )


def _one_question() -> _One:
    position = gr.Markdown()
    with gr.Row():
        previous = gr.Button("Previous", elem_id=REVIEW_PREVIOUS)
        following = gr.Button("Next", elem_id=REVIEW_NEXT)
        decide = {a: gr.Button(label, **options) for a, (label, options) in DECISIONS.items()}
    advance = gr.Checkbox(True, label="Move to the next rationale after Accept or Reject")
    fields = [gr.Textbox(label="Question", interactive=False, lines=2)]
    with gr.Row():
        for label in ("Gold answer", "Parsed answer", "Verdict", "Decision"):
            fields.append(gr.Textbox(label=label, interactive=False))
    siblings = gr.Dataframe(
        headers=rv.SIBLING_HEADERS,
        datatype="str",
        interactive=False,
        wrap=True,
        column_widths=SIBLING_WIDTHS,
        label="The D rationales of this question (click one to review it)",
    )
    original = gr.Textbox(label="Teacher's rationale (original)", interactive=False, lines=3)
    edit = gr.Textbox(
        label="Rationale to train on (edit it, then Save edit)", interactive=True, lines=3
    )
    with gr.Row():
        decide["edit"] = gr.Button("Save edit")
        decide["discard_edit"] = gr.Button("Restore the teacher's rationale")
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
    return _One(
        position=position,
        previous=previous,
        following=following,
        decide=decide,
        advance=advance,
        fields=fields,
        siblings=siblings,
        original=original,
        edit=edit,
        diff=diff,
        answer_text=answer_text,
        teacher=teacher,
        sample_id=sample_id,
    )


def _files() -> _Files:
    with gr.Row():
        fmt = gr.Radio(
            [("Fine-tune-CoT", "cot"), ("vanilla", "vanilla")], value="cot", label="Format"
        )
        student = gr.Radio(["causal", "seq2seq"], value="causal", label="Student")
        include_all = gr.Checkbox(False, label="Every finished rationale (not only the kept ones)")
    return _Files(
        export_form=[fmt, student, include_all],
        export=gr.Button("Export curated set (JSONL)"),
        download=gr.File(label="Curated set", interactive=False),
        upload=gr.File(label="Edited export to import", file_types=[".jsonl"]),
        import_button=gr.Button("Import reviews"),
        status=gr.Markdown(),
    )


def _show(
    ctx: AppContext,
    filters: FormFields[ReviewFilter],
    who: str | None,
    name: str | None,
    sid: float | None,
    values: Mapping[str, Any],
    move: rv.Move = "stay",
    message: str = "",
) -> tuple:
    """The page's values for the filter in `values` (by name), at sample `sid` moved by `move`."""
    try:
        filt = filters.build(values)
        return page_values(rv.load_page(ctx, who, name, filt, sid, move, message))
    except UserError as err:
        return (_error(err), *page_values(rv.ReviewPage())[1:])


def _wire_page(
    ctx: AppContext, owner: gr.State, experiment: gr.Dropdown, tab: _Tab, enclosing: object
) -> None:
    """Filters, moving, deciding (one or in bulk), editing and picking a row: each answers the
    whole page. Handlers take the filter's values by name (`**values`)."""
    page, one, filters = tab.page, tab.one, tab.filters
    show = partial(_show, ctx, filters)

    def moved(move: rv.Move) -> Callable:
        def handler(who, name, sid, **values):
            return show(who, name, sid, values, move)

        return handler

    def first(who, name, **values):
        return show(who, name, None, values)

    def act(action: str) -> Callable:
        def handler(who, name, sid, edited, go_on, **values):
            try:
                message = ra.review_decide(ctx, who, name, sid, action, edited)
            except UserError as err:
                return (_error(err), *[gr.skip()] * (len(page) - 1))
            move = "next" if go_on and action in ("accept", "reject") else "stay"
            return show(who, name, sid, values, move, message)

        return handler

    def bulk(action: str) -> Callable:
        def handler(who, name, sid, **values):
            try:
                message = ra.review_bulk(ctx, who, name, filters.build(values), action)
            except UserError as err:
                return (_error(err), *[gr.skip()] * (len(page) - 1))
            return show(who, name, sid, values, "stay", message)

        return handler

    def picker(id_column: int) -> Callable:
        def pick(who, name, evt: gr.SelectData, **values):
            sid = int(evt.row_value[id_column])
            return (*show(who, name, sid, values, "show"), gr.Tabs(selected="one"))

        return pick

    at = [owner, experiment, one.sample_id]
    glue = dict(inputs_kwargs=filters.kwargs, api_visibility="private")
    refreshes = [tab.refresh.click, tab.search.submit]
    refreshes += [filters.components[n].input for n in ("verdict", "length", "state")]
    for trigger in refreshes:
        trigger(moved("stay"), at, page, **glue)
    if isinstance(enclosing, gr.Tab):
        enclosing.select(moved("stay"), at, page, **glue)
    experiment.change(first, [owner, experiment], page, **glue)
    one.previous.click(moved("prev"), at, page, **glue)
    one.following.click(moved("next"), at, page, **glue)
    for action, button in one.decide.items():
        button.click(act(action), [*at, one.edit, one.advance], page, **glue)
    for action, button in tab.bulk.items():
        button.click(bulk(action), at, page, **glue)
    one.edit.input(
        rv.diff_spans,
        [one.original, one.edit],
        one.diff,
        show_progress="hidden",
        trigger_mode="always_last",
        api_visibility="private",
    )
    for table, headers in ((tab.table, rv.TABLE_HEADERS), (one.siblings, rv.SIBLING_HEADERS)):
        pick = picker(headers.index("id"))
        table.select(pick, [owner, experiment], [*page, tab.views], **glue)


def _wire_files(ctx: AppContext, owner: gr.State, experiment: gr.Dropdown, tab: _Tab) -> None:
    """Export the curated set (`export_curated`) and import an edited one (`import_curated`)."""
    files = tab.files

    def on_export(owner, experiment, fmt, student, include_all):
        try:
            path, message = ra.export_curated(ctx, owner, experiment, fmt, student, include_all)
        except UserError as err:
            return None, _error(err)
        return path, _note(message)

    def on_import(owner, experiment, path):
        try:
            return _note(ra.import_curated(ctx, owner, experiment, path))
        except UserError as err:
            return _error(err)

    def refreshed(who, name, sid, **values):
        return _show(ctx, tab.filters, who, name, sid, values)

    files.export.click(
        on_export,
        [owner, experiment, *files.export_form],
        [files.download, files.status],
        api_name="export_curated",
    )
    files.import_button.click(
        on_import, [owner, experiment, files.upload], files.status, api_name="import_curated"
    ).then(
        refreshed,
        [owner, experiment, tab.one.sample_id],
        tab.page,
        inputs_kwargs=tab.filters.kwargs,
        api_visibility="private",
    )


def _api_endpoints(
    ctx: AppContext,
    owner: gr.State,
    experiment: gr.Dropdown,
    filters: FormFields[ReviewFilter],
    sample_id: gr.Number,
    edit: gr.Textbox,
) -> None:
    """review_queue, review_decide and review_bulk for API clients, on hidden triggers.

    They take the owner from the session's state (a client cannot name another owner) and
    answer JSON; a `UserError` becomes a `gr.Error` the client raises with its message.
    """

    def guarded(fn: Callable) -> Callable:
        @functools.wraps(fn)  # Gradio names the API parameters after fn's signature
        def call(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except UserError as err:
                raise gr.Error(str(err)) from None

        return call

    def review_queue(owner, experiment, **values):
        return rv.review_queue(ctx, owner, experiment, filters.build(values))

    def review_decide(owner, experiment, sample_id, action, edited):
        message = ra.review_decide(ctx, owner, experiment, sample_id, action, edited)
        return {"message": message, "sample": rv.review_sample(ctx, owner, experiment, sample_id)}

    def review_bulk(owner, experiment, *, action, **values):
        message = ra.review_bulk(ctx, owner, experiment, filters.build(values), action)
        return {"message": message}

    with gr.Group(visible=False):
        action = gr.Textbox(label="Action")
        result = gr.JSON()
        who_what = [owner, experiment]
        for fn, inputs, named in (
            (review_queue, who_what, filters.kwargs),
            (review_decide, [*who_what, sample_id, action, edit], {}),
            (review_bulk, who_what, {**filters.kwargs, "action": action}),
        ):
            gr.Button(visible=False).click(
                guarded(fn), inputs, result, inputs_kwargs=named, api_name=fn.__name__
            )
