"""What the Chat tab shows of an exchange: each side's status line, rationale and answer, and the
gold check, as a `ChatView` (one field per output of the tab's `chat` event).

Model text goes into text boxes as it is; what goes into Markdown (status lines, the gold line)
passes through `plain`, so a model's `<script>` or `*` is shown, never run or rendered.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from rtdemo.chat.session import Exchange, Side

_MARKDOWN = re.compile(r"([\\`*_\[\]|~])")  # mid-line: what could format or link
SHOWN_ANSWER = 40  # characters of a read-out answer shown in a status line


def plain(text: object) -> str:
    """`text` to show inside Markdown as itself: HTML escaped, Markdown syntax backslashed."""
    escaped = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MARKDOWN.sub(r"\\\1", escaped.replace("\n", " "))


class ChatView(NamedTuple):
    """What the tab shows of an exchange; `exchange` is its record once both sides are done."""

    message: str
    teacher_status: str
    teacher_rationale: str
    teacher_answer: str
    student_status: str
    student_rationale: str
    student_answer: str
    gold: str
    exchange: dict[str, Any] | None


EMPTY = ChatView("", "**Teacher**", "", "", "**Student**", "", "", "", None)


def _status(title: str, side: Side, has_gold: bool) -> str:
    head = f"**{title}** · {plain(side.who)}"
    if side.status == "error":
        return f"{head} · ⚠️ {plain(side.note)}"
    if side.status != "done":
        doing = "writing…" if side.status == "running" else "starting…"
        return f"{head} · ⏳ {plain(side.note or doing)}"
    shown = side.prediction or ""
    shown = shown if len(shown) <= SHOWN_ANSWER else shown[: SHOWN_ANSWER - 1] + "…"
    read = "no answer found" if side.prediction is None else f"answer read: {plain(shown)}"
    mark = "" if not has_gold else ("✅ correct · " if side.correct else "❌ wrong · ")
    extra = f" · {plain(side.note)}" if side.note else ""
    return f"{head} · {mark}{read}{extra}"


def _gold_line(exchange: Exchange) -> str:
    if exchange.gold is None:
        return (
            "Not one of this experiment's questions: no gold answer to check against "
            "(🎲 picks a test question)."
        )
    if not exchange.finished:
        where = f"{exchange.split} question #{exchange.index}"
        return f"Gold answer ({where}): shown once both have answered."
    seen = " (the student was trained on it)" if exchange.split == "train" else ""
    verdicts = " · ".join(
        f"{who} {'—' if s.correct is None else '✅' if s.correct else '❌'}"
        for who, s in (("teacher", exchange.teacher), ("student", exchange.student))
    )
    return (
        f"Gold answer ({exchange.split} question #{exchange.index}{seen}): "
        f"**{plain(exchange.gold)}** · {verdicts}"
    )


def view_of(exchange: Exchange, experiment: str) -> ChatView:
    """The tab's view of an exchange (its record only once it is finished)."""
    has_gold = exchange.gold is not None
    record = {**exchange.record(), "experiment": experiment} if exchange.finished else None
    return ChatView(
        "",
        _status("Teacher", exchange.teacher, has_gold),
        exchange.teacher.rationale,
        exchange.teacher.answer,
        _status("Student", exchange.student, has_gold),
        exchange.student.rationale,
        exchange.student.answer,
        _gold_line(exchange),
        record,
    )
