"""The chat core: both sides streamed, rationale apart from the answer, the gold check, the queue
rule's waiting, the student cache, and votes saved with their exchange (owners kept apart).

Students are the untrained tiny student (random weights, about 0.9M parameters): enough to
stream tokens; one torch thread.

    .venv/bin/python -m pytest tests/chat/test_chat.py
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from rtdemo.chat import student as chat_student
from rtdemo.chat.session import (
    Exchange,
    Side,
    chat_exchange,
    interleave,
    iterate_async,
    judged,
    split_student_output,
    teacher_side,
)
from rtdemo.chat.student import StudentCache, StudentSpec, stream_student, student_side
from rtdemo.chat.votes import list_votes, save_vote, write_votes_jsonl
from rtdemo.errors import UserError
from rtdemo.evaluation.evaluate import generate, student_prompt
from rtdemo.students.loading import load_student
from rtdemo.tasks import get_task
from rtdemo.tasks.types import Example
from rtdemo.teachers.builtin import BuiltinTeacher
from rtdemo.teachers.openai_compat import OpenAITeacher
from rtdemo.workspace.store import Store
from tests.fakes.openai_server import FakeOpenAIServer

LETTERS = get_task("last_letter_concatenation").answer
NUMBERS = get_task("multiarith").answer
QUESTION = 'Take the last letters of each words in "Ada Lovelace" and concatenate them.'
GOLD = Example(QUESTION, "ae", "test", 7)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    """The untrained tiny student, as a model folder."""
    from rtdemo.students.loading import build_tiny_student

    return build_tiny_student(tmp_path_factory.mktemp("chat") / "tiny", layers=2, width=64)


@pytest.fixture(scope="module")
def tiny(tiny_folder: Path):
    """(model, tokenizer, kind) of the tiny student, loaded for inference."""
    return load_student(tiny_folder, for_training=False)


def spec(folder: Path, fmt: str = "cot") -> StudentSpec:
    return StudentSpec(str(folder), fmt, "tiny")


def last(items: Iterator):
    item = None
    for item in items:  # noqa: B007 - the last one is the point
        pass
    return item


# -- rationale apart from the answer, and the gold check ----------------------------------------


def test_a_student_output_splits_at_its_first_arrow():
    assert split_student_output(" e ends a. --> ae", "cot") == ("e ends a.", "ae")
    assert split_student_output(" a --> b --> c", "cot") == ("a", "b --> c")
    assert split_student_output(" still thinking", "cot") == ("still thinking", "")
    assert split_student_output(" ae", "vanilla") == ("", "ae")


def test_each_side_is_judged_by_its_own_rule():
    done = Side("x", "done", finish_reason="stop")
    # The teacher: the first candidate of its call-2 answer text.
    teacher = judged(replace(done, answer="12 apples, not 13"), "12", NUMBERS, "teacher")
    assert (teacher.prediction, teacher.correct) == ("12", True)
    # A Fine-tune-CoT student: the first candidate after `-->`, else the last of the whole text.
    cot = Side("s", "done", output=" 3 + 9 = 12 --> 12", finish_reason="stop")
    assert judged(cot, "12", NUMBERS, "cot").correct is True
    no_arrow = Side("s", "done", output=" 12 then 13", finish_reason="length")
    assert judged(no_arrow, "12", NUMBERS, "cot").prediction == "13"
    # No gold answer: the answer is still read out, correctness is unknown.
    unknown = judged(cot, None, NUMBERS, "cot")
    assert (unknown.prediction, unknown.correct) == ("12", None)
    running = Side("s", "running", output="12")
    assert judged(running, "12", NUMBERS, "cot") is running


# -- the teacher ---------------------------------------------------------------------------------


def test_iterate_async_steps_and_closes_an_async_generator():
    closed = []

    async def numbers() -> AsyncIterator[int]:
        try:
            for i in range(5):
                yield i
        finally:
            closed.append(True)

    gen = iterate_async(numbers())
    assert [next(gen), next(gen)] == [0, 1]
    gen.close()
    assert closed == [True]
    assert list(iterate_async(numbers())) == [0, 1, 2, 3, 4]


def test_the_builtin_teacher_streams_its_rationale_then_answers():
    sides = list(teacher_side(BuiltinTeacher(error_rate=0.0), QUESTION, stop=threading.Event()))
    rationales = [s.rationale for s in sides if s.status == "running" and s.rationale]
    assert len(rationales) > 5  # word by word
    assert all(b.startswith(a) for a, b in itertools.pairwise(rationales))
    final = sides[-1]
    assert final.status == "done" and final.answer == "ae."
    assert final.rationale.endswith("So the answer is ae.")
    assert "Therefore, the answer is ae." in final.output


def test_a_teacher_that_fails_ends_its_side_with_the_message():
    sides = list(teacher_side(BuiltinTeacher(), "What is 2 + 2?", stop=threading.Event()))
    assert sides[-1].status == "error"
    assert "only answers Coin Flip and Last Letter" in sides[-1].note


def test_an_openai_compatible_teacher_streams_over_sse(tmp_path):
    with FakeOpenAIServer(api_key="sk-" + "chat-secret-0123456789", chunk_delay=0.01) as server:
        teacher = OpenAITeacher(
            "fake-model", base_url=server.base_url, api_key="sk-" + "chat-secret-0123456789"
        )
        sides = list(teacher_side(teacher, "How many words?", stop=threading.Event()))
        bodies = server.bodies("chat")
    final = sides[-1]
    assert final.status == "done", final.note
    assert final.rationale.startswith("The question has") and final.answer == "42."
    assert len({s.rationale for s in sides}) > 3  # it grew piece by piece
    assert bodies[0]["stream"] is True and bodies[0]["temperature"] == 0
    assert "Let's think step by step." in bodies[0]["messages"][0]["content"]
    assert bodies[1]["messages"][-1]["content"].endswith("Therefore, the answer is")


def test_a_wrong_key_is_an_error_on_the_teacher_side_without_the_key():
    with FakeOpenAIServer(api_key="sk-" + "the-right-one-0123456789") as server:
        wrong = "sk-" + "wrong-0123456789xyz"
        teacher = OpenAITeacher("m", base_url=server.base_url, api_key=wrong)
        final = last(teacher_side(teacher, "q", stop=threading.Event()))
    assert final.status == "error" and "rejected the API key" in final.note
    assert "sk-wrong" not in final.note


# -- the student ---------------------------------------------------------------------------------


def test_the_student_streams_the_answer_evaluation_would_score(tiny):
    model, tokenizer, kind = tiny
    updates = list(stream_student(model, tokenizer, kind, QUESTION, max_new_tokens=24))
    texts = [t for t, finish in updates if finish is None]
    assert len(texts) >= 2 and all(b.startswith(a) for a, b in itertools.pairwise(texts))
    text, finish = updates[-1]
    assert finish == "length"  # random weights never write EOS
    [scored] = generate(model, tokenizer, kind, [student_prompt(QUESTION, kind)], max_new_tokens=24)
    assert (text, finish) == (scored.text, scored.finish_reason)


def test_the_student_stops_at_its_end_token(tiny):
    model, tokenizer, kind = tiny
    [first] = generate(model, tokenizer, kind, [student_prompt(QUESTION, kind)], max_new_tokens=6)
    ids = tokenizer(first.text)["input_ids"]
    own = model.generation_config.eos_token_id
    end = max((k for k, token in enumerate(ids) if token not in ids[:k]), default=0)
    model.generation_config.eos_token_id = ids[end]  # a token it writes greedily ends it now
    try:
        text, finish = list(stream_student(model, tokenizer, kind, QUESTION, max_new_tokens=40))[-1]
    finally:
        model.generation_config.eos_token_id = own
    assert finish == "stop"
    assert text == tokenizer.decode(ids[:end])


def test_a_stop_ends_the_student_early(tiny):
    model, tokenizer, kind = tiny
    stop = threading.Event()
    stream = stream_student(model, tokenizer, kind, QUESTION, max_new_tokens=200, stop=stop)
    next(stream)
    stop.set()
    text, finish = last(stream)
    assert finish == "stopped"
    assert len(tokenizer(text)["input_ids"]) < 200


def test_the_student_waits_while_a_torch_job_runs(tiny_folder, monkeypatch):
    reasons = iter(["waiting for training job 4 to finish…"] * 2)
    sides = list(
        student_side(
            spec(tiny_folder),
            QUESTION,
            stop=threading.Event(),
            max_new_tokens=8,
            busy=lambda: next(reasons, None),
            poll=0.01,
        )
    )
    assert [s.status for s in sides[:2]] == ["waiting", "waiting"]
    assert sides[0].note == "waiting for training job 4 to finish…"
    assert sides[-1].status == "done" and sides[-1].note.startswith("cut at the cap")
    # Stopped while it waits: it ends without loading anything.
    stop = threading.Event()
    waiting = student_side(spec(tiny_folder), QUESTION, stop=stop, busy=lambda: "busy", poll=5)
    assert next(waiting).status == "waiting"
    stop.set()
    assert list(waiting) == []


def test_students_are_loaded_once_and_the_least_recently_used_goes(tiny_folder, monkeypatch):
    loads: list[str] = []
    monkeypatch.setattr(chat_student, "load_student", lambda p, **kw: loads.append(p) or (p,) * 3)
    cache = StudentCache(capacity=2)
    for path in ("a", "b", "a", "c", "a", "b"):
        cache.get(path)
    assert loads == ["a", "b", "c", "b"]  # "b" went when "c" came (a was used more recently)
    assert "a" in cache and "c" not in cache


def test_a_missing_student_is_a_user_error_in_its_pane(tmp_path):
    cache = StudentCache()
    side = last(student_side(spec(tmp_path / "none"), "q", stop=threading.Event(), cache=cache))
    assert side.status == "error" and "cannot load the student" in side.note


# -- both at once --------------------------------------------------------------------------------


def test_interleave_advances_both_and_raises_what_a_side_raised():
    def slow() -> Iterator[int]:
        yield from range(3)

    def broken() -> Iterator[int]:
        yield 1
        raise RuntimeError("boom")

    stop = threading.Event()
    seen = {}
    for batch in interleave({"a": slow(), "b": iter("xy")}, stop):
        seen.update(batch)
    assert seen == {"a": 2, "b": "y"} and stop.is_set()
    with pytest.raises(RuntimeError, match="boom"):
        list(interleave({"a": broken()}, threading.Event()))


def test_an_exchange_streams_both_sides_and_checks_the_gold_answer(tiny_folder):
    stop = threading.Event()
    exchanges = list(
        chat_exchange(
            QUESTION,
            teacher_side(BuiltinTeacher(error_rate=0.0), QUESTION, stop=stop),
            student_side(spec(tiny_folder), QUESTION, stop=stop, max_new_tokens=16),
            answer=LETTERS,
            student_format="cot",
            example=GOLD,
            settings={"student": {"max_new_tokens": 16}},
            stop=stop,
        )
    )
    final = exchanges[-1]
    assert final.finished and not any(e.finished for e in exchanges[:-1])
    assert (final.gold, final.split, final.index) == ("ae", "test", 7)
    assert final.teacher.correct is True and final.teacher.prediction == "ae"
    assert final.student.correct is False  # random weights
    assert final.student.output and final.student.finish_reason == "length"
    record = final.record()
    assert json.loads(json.dumps(record)) == record
    assert record["settings"] == {"student": {"max_new_tokens": 16}}


def test_a_side_that_ends_without_answering_is_marked():
    def never() -> Iterator[Side]:
        yield Side("t", "running", rationale="half")

    final = last(
        chat_exchange(
            "q",
            never(),
            iter([Side("s", "done", output="1")]),
            answer=NUMBERS,
            student_format="cot",
        )
    )
    assert final.teacher.status == "error" and "stopped" in final.teacher.note
    assert final.student.status == "done" and final.gold is None and final.student.correct is None


# -- votes ---------------------------------------------------------------------------------------


def _exchange(question: str = QUESTION) -> dict:
    teacher = Side("builtin", "done", rationale="r", answer="ae.", prediction="ae", correct=True)
    student = Side("run cot", "done", output="x --> ab", prediction="ab", correct=False)
    return Exchange(question, teacher, student, "ae", "test", 7, {"teacher": {}}).record()


def test_votes_are_saved_with_their_exchange_and_kept_per_owner(tmp_path):
    with Store(tmp_path / "ws") as store:
        mine = store.create_experiment("letters", "last_letter_concatenation", owner="alice")
        theirs = store.create_experiment("letters", "last_letter_concatenation", owner="bob")
        first = save_vote(store, mine, "alice", _exchange(), "left")
        save_vote(store, mine, "alice", _exchange("another?"), "both_bad")
        save_vote(store, theirs, "bob", _exchange(), "right")
        votes = list_votes(store, mine, "alice")
        assert [v.vote for v in votes] == ["both_bad", "left"]  # newest first
        assert votes[1].id == first and votes[1].gold == "ae"
        assert (votes[1].teacher_correct, votes[1].student_correct) == (True, False)
        assert votes[1].exchange["student"]["output"] == "x --> ab"
        assert list_votes(store, mine, "bob") == []  # bob sees none of alice's votes
        with pytest.raises(UserError, match="no experiment"):
            save_vote(store, mine, "bob", _exchange(), "tie")
        with pytest.raises(UserError, match="a vote is one of"):
            save_vote(store, mine, "alice", _exchange(), "middle")
        leaky = {**_exchange(), "settings": {"teacher": {"api_key": "sk-x"}}}
        with pytest.raises(ValueError, match="secrets"):
            save_vote(store, mine, "alice", leaky, "tie")
        path = tmp_path / "votes.jsonl"
        assert write_votes_jsonl(store, mine, "alice", path) == 2
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["vote"] for line in lines] == ["left", "both_bad"]  # oldest first
    assert lines[0]["experiment"] == "letters" and lines[0]["question"] == QUESTION
    assert lines[0]["teacher"]["rationale"] == "r" and lines[0]["gold"] == "ae"


def test_the_votes_download_names_no_server_folder(tmp_path):
    """A vote saved before students were named kept the student's folder; an error note may name
    a file in the data folder: the download has neither, only names and `$RTDEMO_HOME`."""
    with Store(tmp_path / "ws") as store:
        exp = store.create_experiment("letters", "last_letter_concatenation", owner="alice")
        final = store.workspace / "runs" / "4-train" / "final"
        old = _exchange()
        old["settings"] = {"student": {"path": str(final), "format": "cot"}}
        old["student"]["note"] = f"cannot load the student {str(final)!r}: no config.json"
        save_vote(store, exp, "alice", old, "both_bad")
        path = tmp_path / "votes.jsonl"
        write_votes_jsonl(store, exp, "alice", path)
        workspace = str(store.workspace)
    text = path.read_text()
    assert workspace not in text and str(tmp_path) not in text
    [line] = [json.loads(x) for x in text.splitlines()]
    assert line["settings"]["student"] == {"name": "run cot", "format": "cot"}
    assert line["student"]["note"] == (
        "cannot load the student '$RTDEMO_HOME/runs/4-train/final': no config.json"
    )
