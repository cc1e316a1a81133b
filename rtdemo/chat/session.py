"""Chat: one question, the teacher and a student answering side by side, both streamed.

Each side is prompted the way it was taught:

- the teacher with the two Zero-shot-CoT calls: call 1 (`Q: {q}\\nA: Let's think step by step.`)
  is streamed through `Teacher.stream`, then call 2 (the answer prompt) gives the final answer;
- the student with its training format (`"{q} ###"` causal, `"{q}"` seq2seq), greedily, its
  tokens streamed (`rtdemo.chat.student`); the rationale is its text before `-->`, the answer
  the text after it (a vanilla-baseline student writes the answer alone).

When the question has a gold answer (it is one of the experiment's questions), both final answers
are judged with the task's answer cleansing (`rtdemo.tasks.cleansing.judge`: the teacher's call-2
text by the teacher rule, the student's output by its format's rule).

    stop = threading.Event()
    teacher = teacher_side(BuiltinTeacher(), question, stop=stop)
    student = student_side(StudentSpec("runs/.../final", "cot", "run cot"), question, stop=stop)
    for exchange in chat_exchange(question, teacher, student, answer=task.answer,
                                  student_format="cot", stop=stop):
        print(exchange.teacher.rationale, "|", exchange.student.rationale)

Both sides advance in threads of their own and the exchange is yielded whenever either moved, so a
slow side never holds the other back. Nothing here knows Gradio.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, TypeVar

from rtdemo.errors import UserError
from rtdemo.tasks.cleansing import DELIMITER, OutputFormat, judge
from rtdemo.tasks.types import AnswerFormat, Example
from rtdemo.teachers.base import Teacher, TeacherError, answer_prompt, rationale_prompt

T = TypeVar("T")
SideStatus = Literal["waiting", "running", "done", "error"]
TEACHER_MAX_TOKENS = 128  # the paper's cap per teacher call


@dataclass(frozen=True)
class Side:
    """One side of an exchange as it stands: what it wrote so far, and once done its verdict.

    `output` is everything the side wrote (the student's raw output; the teacher's rationale and
    answer text); `note` says why it waits or what failed. `prediction` is the answer read out by
    answer cleansing; `correct` is None when there is no gold answer to compare with.
    """

    who: str
    status: SideStatus = "waiting"
    note: str = ""
    rationale: str = ""
    answer: str = ""
    output: str = ""
    finish_reason: str | None = None
    prediction: str | None = None
    correct: bool | None = None

    @property
    def finished(self) -> bool:
        """Whether the side has answered (or failed)."""
        return self.status in ("done", "error")


@dataclass(frozen=True)
class Exchange:
    """A question, both sides' answers and, when the question is one of the experiment's, its
    gold answer with the split and index it comes from."""

    question: str
    teacher: Side
    student: Side
    gold: str | None = None
    split: str | None = None
    index: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        """Whether both sides have answered (or failed)."""
        return self.teacher.finished and self.student.finished

    def record(self) -> dict[str, Any]:
        """A JSON-ready dict of the exchange (what a vote is saved with)."""
        return asdict(self)


def split_student_output(text: str, fmt: str) -> tuple[str, str]:
    """(rationale, answer) of a student's output: a Fine-tune-CoT student's text before and after
    its first `-->` (no `-->` yet: all rationale); a vanilla student's output is all answer."""
    if fmt == "vanilla":
        return "", text.strip()
    rationale, _, answer = text.partition(DELIMITER)
    return rationale.strip(), answer.strip()


def judged(side: Side, gold: str | None, answer: AnswerFormat, fmt: OutputFormat) -> Side:
    """`side` with the answer read out by the task's answer cleansing and, given a gold answer,
    whether it is correct. The teacher's answer is its call-2 text; a student's, its output."""
    if side.status != "done":
        return side
    text = side.answer if fmt == "teacher" else side.output
    verdict = judge(text, gold or "", answer, fmt, side.finish_reason)
    return replace(
        side, prediction=verdict.prediction, correct=None if gold is None else verdict.correct
    )


# -- the teacher --------------------------------------------------------------------------------


def iterate_async(agen: AsyncIterator[T]) -> Iterator[T]:
    """Step an async generator from synchronous code, on an event loop of its own.

    Meant for a thread without a running loop (a worker thread); closing this generator closes
    `agen` on that same loop, so its `finally` blocks (closing connections) run.
    """
    loop = asyncio.new_event_loop()
    try:
        while True:
            try:
                item = loop.run_until_complete(agen.__anext__())  # type: ignore[attr-defined]
            except StopAsyncIteration:
                return
            yield item
    finally:
        with contextlib.suppress(Exception):
            loop.run_until_complete(agen.aclose())  # type: ignore[attr-defined]
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


async def _teacher_turn(
    teacher: Teacher,
    question: str,
    temperature: float,
    max_tokens: int,
    stop: threading.Event,
) -> AsyncIterator[Side]:
    prompt = rationale_prompt(question)
    side = Side(teacher.info.label or teacher.info.model, "running")
    try:
        yield side
        rationale = ""
        pieces = teacher.stream(prompt, temperature=temperature, max_tokens=max_tokens)
        try:
            async for piece in pieces:
                rationale += piece
                yield replace(side, rationale=rationale.strip(), output=rationale)
                if stop.is_set():
                    return
        finally:
            await pieces.aclose()  # type: ignore[attr-defined]
        yield replace(side, rationale=rationale.strip(), output=rationale, note="answering…")
        # Call 2, as generation makes it: the raw rationale continues the call-1 prompt.
        final = await teacher.answer(answer_prompt(prompt, rationale), max_tokens=max_tokens)
        yield replace(
            side,
            status="done",
            rationale=rationale.strip(),
            answer=final.text.strip(),
            output=f"{rationale}\nTherefore, the answer is{final.text}",
            finish_reason=final.finish_reason,
        )
    finally:
        await teacher.aclose()


def teacher_side(
    teacher: Teacher,
    question: str,
    *,
    stop: threading.Event,
    temperature: float = 0.0,
    max_tokens: int = TEACHER_MAX_TOKENS,
) -> Iterator[Side]:
    """The teacher's side as it streams: call 1's rationale piece by piece, then call 2's answer.

    A teacher that fails ends the side with status "error" and its message (no key in it: the
    teachers' errors never carry one)."""
    last = Side(teacher.info.label or teacher.info.model)
    try:
        for last in iterate_async(_teacher_turn(teacher, question, temperature, max_tokens, stop)):
            yield last
    except (TeacherError, UserError) as err:
        yield replace(last, status="error", note=str(err))


# -- both sides at once -------------------------------------------------------------------------

_END = object()


def interleave(streams: Mapping[str, Iterator[T]], stop: threading.Event) -> Iterator[dict[str, T]]:
    """The items of several iterators as they come, each advanced in a thread of its own.

    Each yield maps the keys that moved to their newest item (items are snapshots: a burst of them
    is worth one update). Closing this generator sets `stop`, which the iterators watch.
    An exception in an iterator is raised here.
    """
    events: queue.Queue[tuple[str, Any, BaseException | None]] = queue.Queue()

    def pump(key: str, items: Iterator[T]) -> None:
        try:
            for item in items:
                events.put((key, item, None))
                if stop.is_set():
                    break
        except BaseException as err:  # handed to the consumer, which raises it
            events.put((key, _END, err))
            return
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()
        events.put((key, _END, None))

    threads = [
        threading.Thread(target=pump, args=(key, items), daemon=True, name=f"chat-{key}")
        for key, items in streams.items()
    ]
    for thread in threads:
        thread.start()
    live = len(threads)
    try:
        while live:
            batch: dict[str, T] = {}
            key, item, error = events.get()
            while True:
                if error is not None:
                    raise error
                if item is _END:
                    live -= 1
                else:
                    batch[key] = item
                try:
                    key, item, error = events.get_nowait()
                except queue.Empty:
                    break
            if batch:
                yield batch
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=5)  # a teacher request in flight may outlive this: daemon


def chat_exchange(
    question: str,
    teacher: Iterator[Side],
    student: Iterator[Side],
    *,
    answer: AnswerFormat,
    student_format: str,
    example: Example | None = None,
    settings: dict[str, Any] | None = None,
    stop: threading.Event | None = None,
    labels: tuple[str, str] = ("teacher", "student"),
) -> Iterator[Exchange]:
    """The exchange each time either side moved; the last one has both sides finished.

    `example` is the experiment's question this one is (its gold answer judges both sides).
    `student_format` ("cot" or "vanilla") says how the student's answer is read; `labels` name
    the sides until they report.
    """
    stop = stop or threading.Event()
    fmt: OutputFormat = "vanilla" if student_format == "vanilla" else "cot"
    gold = example.answer if example is not None else None
    exchange = Exchange(
        question=question,
        teacher=Side(labels[0]),
        student=Side(labels[1]),
        gold=gold,
        split=example.split if example is not None else None,
        index=example.index if example is not None else None,
        settings=dict(settings or {}),
    )
    for moved in interleave({"teacher": teacher, "student": student}, stop):
        if "teacher" in moved:
            exchange = replace(exchange, teacher=judged(moved["teacher"], gold, answer, "teacher"))
        if "student" in moved:
            exchange = replace(exchange, student=judged(moved["student"], gold, answer, fmt))
        yield exchange
    unfinished = {
        name: replace(side, status="error", note=side.note or "stopped before it answered")
        for name, side in (("teacher", exchange.teacher), ("student", exchange.student))
        if not side.finished
    }
    if unfinished:
        yield replace(exchange, **unfinished)
