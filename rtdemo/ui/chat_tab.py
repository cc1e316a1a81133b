"""The Chat tab: one question, the teacher and a student answering side by side (both streamed),
the gold check for test questions, and a vote saved with the exchange (listed, exportable).

Handlers live in `chat_actions.py` (plain functions over the core); this file lays out and wires.
Model text is shown in text boxes only, never as Markdown or HTML. Named endpoints: `chat`
(streaming), `random_test_question`, `chat_vote`, `chat_export`.

The teacher is the built-in one, an OpenAI-compatible server, or a local model ("Local model":
`smollm2-135m` by default once it is prepared here; the line under it says whether it is and how
to prepare it), run in the app process and kept loaded (`rtdemo.chat.teacher`).

Concurrency: each page's exchange runs on its own, so a student waiting for a training job never
holds up another visitor's chat (up to `max_chats()` exchanges at once, all pages together); one
page runs one exchange at a time (a new question stops the one before).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import gradio as gr

from rtdemo.errors import UserError
from rtdemo.ui.chat_actions import (
    TEACHERS,
    VOTE_COLUMNS,
    ChatForm,
    chat,
    export_votes,
    max_chats,
    random_test_question,
    student_choices,
    vote,
    votes_table,
)
from rtdemo.ui.chat_view import EMPTY
from rtdemo.ui.forms import FormFields
from rtdemo.ui.model_notes import LOCAL_MODEL, default_local_model, model_note
from rtdemo.ui.session import AppContext

INTRO = (
    "Ask the **teacher** and a **student** the same question and watch both answer side by side, "
    "each prompted the way it was taught (Zero-shot-CoT for the teacher, `{question} ###` for the "
    "student, greedy). A question of the experiment's test split (🎲) is checked against its gold "
    "answer. Vote for the better side: the vote is saved with the exchange. Each question is asked "
    "on its own: neither model was taught to hold a conversation."
)
VOTE_BUTTONS = {
    "left": "👈 Teacher better",
    "right": "👉 Student better",
    "tie": "🤝 Tie",
    "both_bad": "👎 Both bad",
}
# The Stop button's signal per browser session: cancelling a Gradio generator stops it only at its
# next yield, so the threads it started are told directly.
_STOPS: dict[str, threading.Event] = {}


@dataclass
class _Tab:
    """The tab's components, by what they do."""

    form: FormFields[ChatForm]
    key: gr.Textbox
    teacher_note: gr.Markdown
    student: gr.Dropdown
    refresh: gr.Button
    question: gr.Textbox
    buttons: dict[str, gr.Button]  # send, pick, regenerate, stop, clear
    message: gr.Markdown
    panes: list[gr.components.Component]  # message, both sides' status/rationale/answer, gold
    votes: dict[str, gr.Button]
    vote_message: gr.Markdown
    table: gr.Dataframe
    export: gr.Button
    download: gr.File
    exchange: gr.State
    last_question: gr.State


def build_chat_tab(ctx: AppContext, owner: gr.State, experiment: gr.Dropdown) -> None:
    """Lay out the Chat tab inside the current Blocks context, and wire it."""
    tab = _layout()
    _wire_chat(ctx, owner, experiment, tab)
    _wire_votes(ctx, owner, experiment, tab)


def _layout() -> _Tab:
    gr.Markdown(INTRO)
    with gr.Row(equal_height=True):
        teacher = gr.Radio(list(TEACHERS), value=next(iter(TEACHERS)), label="Teacher")
        model = gr.Textbox(label="Teacher model", visible=False)  # shown by `_teacher_fields`
        student = gr.Dropdown(
            [],
            value=None,
            allow_custom_value=True,
            label="Student",
            info="a trained run of this experiment (empty: the newest), or smollm2-135m, a Hub id "
            "or a model folder as it is",
            scale=2,
        )
        refresh = gr.Button("↻ Students", scale=0)
    teacher_note = gr.Markdown()
    with gr.Accordion("OpenAI-compatible teacher, and generation settings", open=False):
        with gr.Row():
            base_url = gr.Textbox(label="Base URL", placeholder="default: OpenAI")
            mode = gr.Radio(["chat", "completions"], value="chat", label="Mode")
            key = gr.Textbox(
                label="API key", type="password", info="kept in this page only, never stored"
            )
        with gr.Row():
            temperature = gr.Number(0.0, label="Teacher temperature", info="paper: 0 (greedy)")
            teacher_max = gr.Number(128, precision=0, label="Teacher max tokens (per call)")
            student_max = gr.Number(256, precision=0, label="Student max new tokens")
    form = FormFields(
        ChatForm,
        teacher=teacher,
        base_url=base_url,
        model=model,
        mode=mode,
        temperature=temperature,
        teacher_max_tokens=teacher_max,
        student=student,
        student_max_tokens=student_max,
    )
    question = gr.Textbox(label="Question", lines=2, placeholder="type a question, or press 🎲")
    with gr.Row():
        buttons = {
            "send": gr.Button("Send", variant="primary"),
            "pick": gr.Button("🎲 Random test question"),
            "regenerate": gr.Button("🔄 Regenerate"),
            "stop": gr.Button("Stop", variant="stop"),
            "clear": gr.Button("🗑️ Clear"),
        }
    message = gr.Markdown()
    panes = [message, *_answer_panes(), gr.Markdown()]  # the last: the gold check
    with gr.Row():
        votes = {c: gr.Button(label, size="sm") for c, label in VOTE_BUTTONS.items()}
    vote_message = gr.Markdown()
    with gr.Accordion("Your votes on this experiment", open=False):
        table = gr.Dataframe(
            headers=VOTE_COLUMNS,
            label="Votes",
            datatype="str",
            interactive=False,
            wrap=True,
            column_widths=["5%", "14%", "14%", "31%", "8%", "8%", "8%", "12%"],
        )
        with gr.Row():
            export = gr.Button("Export votes (JSONL)")
            download = gr.File(label="Votes file", interactive=False)
    return _Tab(
        form=form,
        key=key,
        teacher_note=teacher_note,
        student=student,
        refresh=refresh,
        question=question,
        buttons=buttons,
        message=message,
        panes=panes,
        votes=votes,
        vote_message=vote_message,
        table=table,
        export=export,
        download=download,
        exchange=gr.State(None),
        last_question=gr.State(""),
    )


def _teacher_fields(label: str, model: str | None) -> tuple[Any, str]:
    """The model box and the line under it for the teacher `label`: hidden for the built-in one;
    for a local model `smollm2-135m` by default once prepared, and whether the named one is."""
    kind = TEACHERS.get(label, label)
    model = (model or "").strip()
    if kind == "hf":
        model = model or default_local_model()
        box = gr.Textbox(
            value=model,
            visible=True,
            placeholder=f"{LOCAL_MODEL}, a Hub id, or a model folder",
            info="run in this app (on its CPU if it has no GPU), kept loaded between questions",
        )
        return box, model_note(model or LOCAL_MODEL)
    if kind == "openai":
        if model == LOCAL_MODEL:  # the local default means nothing to an API server
            model = ""
        box = gr.Textbox(
            value=model,
            visible=True,
            placeholder="e.g. gpt-4o-mini",
            info="as the server knows it (Base URL and key: in the settings below)",
        )
        return box, ""
    return gr.Textbox(visible=False), ""


def _answer_panes() -> list[gr.components.Component]:
    """The teacher's and the student's status, rationale and answer, side by side."""
    with gr.Row():
        with gr.Column():
            t_status = gr.Markdown(EMPTY.teacher_status)
            t_rationale = gr.Textbox(
                label="Teacher's rationale", lines=6, max_lines=20, interactive=False
            )
            t_answer = gr.Textbox(label="Teacher's answer", interactive=False)
        with gr.Column():
            s_status = gr.Markdown(EMPTY.student_status)
            s_rationale = gr.Textbox(
                label="Student's rationale", lines=6, max_lines=20, interactive=False
            )
            s_answer = gr.Textbox(label="Student's answer", interactive=False)
    return [t_status, t_rationale, t_answer, s_status, s_rationale, s_answer]


def _wire_chat(ctx: AppContext, owner: gr.State, experiment: gr.Dropdown, tab: _Tab) -> None:
    """Send (and Enter, Regenerate), Stop, Clear and 🎲; the teacher's model box and note."""
    panes = tab.panes
    teacher, model = tab.form.components["teacher"], tab.form.components["model"]
    quiet = dict(api_visibility="private", concurrency_limit=None, show_progress="hidden")
    teacher.change(_teacher_fields, [teacher, model], [model, tab.teacher_note], **quiet)

    def noted(label: str, name: str | None) -> str:
        return model_note(name) if TEACHERS.get(label, label) == "hf" else ""

    model.blur(noted, [teacher, model], tab.teacher_note, **quiet)

    def ask(
        who: str | None,
        experiment: str | None,
        question: str,
        request: gr.Request,
        oauth: gr.OAuthToken | None,
        *,
        key: str | None = None,
        **values: Any,
    ) -> Iterator[tuple]:
        stop_event = threading.Event()
        session = getattr(request, "session_hash", None) or ""
        # One exchange per page at a time: a new question ends the one before (they would write
        # to the same panes). Pages do not wait for each other: each exchange runs on its own.
        previous = _STOPS.get(session)
        if previous is not None:
            previous.set()
        _STOPS[session] = stop_event
        try:
            form = tab.form.build(values)
            hub = oauth.token if oauth else None  # a Hub id student: the user's own token
            for view in chat(ctx, who, experiment, question, form, key or "", stop_event, hub):
                yield (*view, question)
        except UserError as err:
            yield (f"⚠️ {err}", *[gr.skip()] * (len(panes) + 1))
        finally:
            if _STOPS.get(session) is stop_event:
                del _STOPS[session]

    def halt(request: gr.Request) -> str:
        event = _STOPS.get(getattr(request, "session_hash", None) or "")
        if event is None:
            return ""
        event.set()
        return "Stopped."

    outputs = [*panes, tab.exchange, tab.last_question]
    form = dict(inputs_kwargs={**tab.form.kwargs, "key": tab.key})
    # Every page's exchange runs on its own (a student waiting for a training job holds no one
    # up); `max_chats()` bounds them all together (`RTDEMO_MAX_CHATS`).
    shared = dict(concurrency_id="chat", concurrency_limit=max_chats())
    private = dict(api_visibility="private", concurrency_limit=None)
    running = []
    for trigger, asked, name in (
        (tab.buttons["send"].click, tab.question, "chat"),
        (tab.question.submit, tab.question, None),
        (tab.buttons["regenerate"].click, tab.last_question, None),
    ):
        # A new exchange has no vote yet: clear the last vote's line first.
        event = trigger(lambda: "", None, tab.vote_message, **private).then(
            ask,
            [owner, experiment, asked],
            outputs,
            **form,
            **(dict(api_name=name) if name else dict(api_visibility="private")),
            **shared,
        )
        running.append(event)
    tab.buttons["stop"].click(halt, None, tab.message, cancels=running, **private)

    def clear_all() -> tuple:
        return ("", *EMPTY[:-1], None, "", "")

    tab.buttons["clear"].click(
        clear_all, None, [tab.question, *outputs, tab.vote_message], **private
    )

    def pick_clicked(who: str | None, experiment: str | None) -> tuple[Any, str]:
        try:
            return random_test_question(ctx, who, experiment), ""
        except UserError as err:
            return gr.skip(), f"⚠️ {err}"

    tab.buttons["pick"].click(
        pick_clicked,
        [owner, experiment],
        [tab.question, tab.message],
        api_name="random_test_question",
        concurrency_limit=None,
    )


def _wire_votes(ctx: AppContext, owner: gr.State, experiment: gr.Dropdown, tab: _Tab) -> None:
    """The vote buttons (and `chat_vote` for API clients), the export, the lists' refresh."""
    private = dict(api_visibility="private", concurrency_limit=None)

    def vote_clicked(choice: str, who: str | None, experiment: str | None, record: dict | None):
        try:
            text, record = vote(ctx, who, record, choice)
        except UserError as err:
            return f"⚠️ {err}", gr.skip(), gr.skip()
        return text, record, votes_table(ctx, who, experiment)

    vote_outputs = [tab.vote_message, tab.exchange, tab.table]
    for choice, button in tab.votes.items():
        button.click(
            partial(vote_clicked, choice),
            [owner, experiment, tab.exchange],
            vote_outputs,
            **private,
        )
    # For API clients: `chat_vote` takes the vote as a value (the buttons above are UI only).
    vote_choice = gr.Textbox(visible=False)
    gr.Button(visible=False).click(
        vote_clicked,
        [vote_choice, owner, experiment, tab.exchange],
        vote_outputs,
        api_name="chat_vote",
        concurrency_limit=None,
    )

    def export_clicked(who: str | None, experiment: str | None) -> tuple[Any, str]:
        try:
            path, text = export_votes(ctx, who, experiment)
        except UserError as err:
            return None, f"⚠️ {err}"
        return str(path), text

    tab.export.click(
        export_clicked,
        [owner, experiment],
        [tab.download, tab.vote_message],
        api_name="chat_export",
        concurrency_limit=None,
    )

    def refreshed(who: str | None, experiment: str | None) -> tuple[Any, Any]:
        try:
            names = student_choices(ctx, who, experiment)
            votes = votes_table(ctx, who, experiment)
        except UserError:
            names, votes = [], votes_table(ctx, None, None)
        return gr.Dropdown(choices=names, value=names[0] if names else None), votes

    for trigger in (tab.refresh.click, experiment.change):
        trigger(refreshed, [owner, experiment], [tab.student, tab.table], **private)
