"""Generation with in-process teachers: storage, resume, retries, failures, budget, settings."""

from __future__ import annotations

import asyncio

import pytest

from rtdemo.errors import UserError
from rtdemo.generation.pricing import Price
from rtdemo.generation.run import GenerationSettings, run_generation
from rtdemo.generation.samples import SampleKey, SampleSlot, load_samples, save_rationale
from rtdemo.tasks.registry import TASKS
from rtdemo.tasks.synthetic import SyntheticSettings, generate
from rtdemo.teachers.base import Completion, TeacherError, rationale_prompt
from rtdemo.teachers.builtin import BuiltinTeacher
from rtdemo.workspace.store import Store

COIN = TASKS["coin_flip"].answer
FAST = {"backoff": 0.001, "max_backoff": 0.01}


class Counting(BuiltinTeacher):
    """The built-in teacher, counting calls and failing on a schedule."""

    def __init__(self, fail=None, **kwargs):
        super().__init__(**kwargs)
        self.calls = {"rationale": 0, "answer": 0}
        self.fail = fail or (lambda kind, count: None)

    async def rationales_for(self, prompt, indices, *, temperature, max_tokens):
        self.calls["rationale"] += 1
        if (err := self.fail("rationale", self.calls["rationale"])) is not None:
            raise err
        return await super().rationales_for(
            prompt, indices, temperature=temperature, max_tokens=max_tokens
        )

    async def answer(self, prompt, *, max_tokens):
        self.calls["answer"] += 1
        if (err := self.fail("answer", self.calls["answer"])) is not None:
            raise err
        return await super().answer(prompt, max_tokens=max_tokens)


@pytest.fixture
def setup(tmp_path):
    store = Store(tmp_path / "ws")
    exp = store.create_experiment("e", "coin_flip")
    questions = generate("coin_flip", SyntheticSettings(size=30), "train")
    store.add_questions(exp.id, questions)
    yield store, exp, questions
    store.close()


def run(store, exp, questions, teacher, price=None, **settings):
    s = GenerationSettings(**{**FAST, **settings})
    return run_generation(store, exp, teacher, s, questions, COIN, price)


def test_d_samples_stored_and_a_rerun_requests_nothing(setup):
    store, exp, questions = setup
    teacher = Counting(error_rate=0.3)
    stats = run(store, exp, questions, teacher, samples=4, temperature=0.7)
    assert (stats.done, stats.total, stats.failed) == (84, 84, 0)
    assert teacher.calls == {"rationale": 21, "answer": 84}  # n=4 in one call 1 per question
    samples = load_samples(store, exp.id)
    assert len(samples) == 84
    assert len({(s.idx, s.sample_index) for s in samples}) == 84
    assert 0 < sum(s.correct for s in samples) < 84  # the error rate gives filtering work
    for s in samples:
        assert s.rationale_prompt == rationale_prompt(questions[0].question) or s.idx != 0
        assert s.answer_prompt.endswith("\nTherefore, the answer is")
        assert s.answer_prompt.startswith(s.rationale_prompt + s.rationale)
    again = Counting(error_rate=0.3)
    stats = run(store, exp, questions, again, samples=4, temperature=0.7)
    assert again.calls == {"rationale": 0, "answer": 0}
    assert stats.requests == 0 and stats.done == 84


def test_more_samples_later_only_requests_the_new_ones(setup):
    store, exp, questions = setup
    run(store, exp, questions, Counting(), samples=2, temperature=0.7)
    more = Counting()
    stats = run(store, exp, questions, more, samples=3, temperature=0.7)
    assert more.calls == {"rationale": 21, "answer": 21}
    assert stats.done == 63


def test_a_stored_rationale_is_not_requested_again(setup):
    store, exp, questions = setup
    q = questions[0]
    key = SampleKey("builtin", "", "builtin-err0.1", 0.0, 128)
    save_rationale(
        store,
        SampleSlot.of(exp.id, q, key, 0),
        rationale_prompt(q.question),
        Completion(" It was flipped twice.", "stop"),
        0.0,
        {},
    )
    teacher = Counting()
    run(store, exp, questions[:1], teacher)
    assert teacher.calls == {"rationale": 0, "answer": 1}  # call 2 only
    [s] = load_samples(store, exp.id)
    assert s.status == "done" and s.rationale == " It was flipped twice."


def test_transient_errors_are_retried_and_honour_retry_after(setup):
    store, exp, questions = setup
    errors = {
        1: TeacherError("rate_limit", "slow down", retry_after=0.01),
        2: TeacherError("server", "500"),
        3: TeacherError("connection", "reset"),
    }
    teacher = Counting(fail=lambda kind, n: errors.get(n) if kind == "rationale" else None)
    stats = run(store, exp, questions[:5], teacher, concurrency=1)
    assert (stats.done, stats.failed) == (5, 0)
    assert teacher.calls["rationale"] == 5 + 3


def test_a_request_that_keeps_failing_is_stored_as_failed_then_retried(setup):
    store, exp, questions = setup
    broken = Counting(
        fail=lambda kind, n: TeacherError("server", "boom") if kind == "answer" else None
    )
    stats = run(store, exp, questions[:3], broken, max_attempts=2)
    assert (stats.done, stats.failed) == (0, 3)
    samples = load_samples(store, exp.id)
    reason = "server: boom; gave up after 2 tries (max_attempts 2)"
    assert all(s.status == "rationale" and s.error == reason for s in samples)
    assert all(s.attempts == 2 for s in samples)  # the tries made, not a setting
    fixed = Counting()
    stats = run(store, exp, questions[:3], fixed)
    assert fixed.calls == {"rationale": 0, "answer": 3}  # call 1 is never repeated
    assert stats.done == 3 and all(s.error is None for s in load_samples(store, exp.id))


def test_a_fatal_error_ends_the_run_with_one_message_and_stores_nothing_wrong(setup):
    store, exp, questions = setup
    teacher = Counting(fail=lambda kind, n: TeacherError("auth", "the server rejected the key"))
    with pytest.raises(UserError, match="rejected the key"):
        run(store, exp, questions, teacher)
    assert load_samples(store, exp.id) == []
    assert teacher.calls["rationale"] <= 8  # stopped at once, not once per question


@pytest.mark.parametrize("concurrency", [2, 8])
def test_budget_stops_the_run_cleanly_within_budget(setup, concurrency):
    store, exp, questions = setup
    price = Price(input=1000.0, output=1000.0)  # $ per million tokens: ~$0.2 a sample, ~$0.7 worst
    stats = run(store, exp, questions, Counting(), price=price, budget=3.0, concurrency=concurrency)
    assert stats.stopped == "budget"
    assert 0 < stats.done < 21
    assert stats.spend <= 3.0
    samples = load_samples(store, exp.id)
    # Every paid rationale got its answer: no sample is left half done or failed.
    assert len(samples) == stats.done and all(s.status == "done" for s in samples)
    assert all(s.answer_text is not None and s.prediction is not None for s in samples)
    assert sum(s.cost for s in samples) == pytest.approx(stats.spend)
    with pytest.raises(UserError, match="needs a price"):
        run(store, exp, questions, Counting(), price=None, budget=1.0)


def test_cancel_stops_issuing_requests(setup):
    store, exp, questions = setup
    teacher = Counting()
    calls = []
    stats = run_generation(
        store,
        exp,
        teacher,
        GenerationSettings(concurrency=1),
        questions,
        COIN,
        None,
        should_stop=lambda: len(calls.append(1) or calls) > 6,
    )
    assert stats.stopped == "cancelled" and stats.done < 21


def test_truncation_is_recorded(setup):
    store, exp, questions = setup
    stats = run(store, exp, questions[:4], Counting(), max_tokens=5)
    assert stats.truncated == 4
    assert all(s.rationale_finish == "length" and s.truncated for s in load_samples(store, exp.id))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"samples": 4, "temperature": 0.0}, "would all be the same"),
        ({"samples": 0}, "samples"),
        ({"temperature": 3.0}, "temperature"),
        ({"concurrency": 0}, "concurrency"),
        ({"budget": -1}, "budget"),
    ],
)
def test_bad_settings_are_refused(settings, message):
    with pytest.raises(UserError, match=message):
        GenerationSettings(**settings)


def test_builtin_teacher_is_deterministic_per_sample_and_refuses_other_tasks():
    t = BuiltinTeacher()
    prompt = rationale_prompt(generate("coin_flip", SyntheticSettings(size=3))[0].question)
    a = asyncio.run(t.rationales_for(prompt, [0, 1, 2], temperature=0.7, max_tokens=128))
    b = asyncio.run(t.rationales_for(prompt, [2], temperature=0.7, max_tokens=128))
    assert a[2].text == b[0].text and a[0].text != a[1].text != a[2].text
    with pytest.raises(TeacherError, match="only answers Coin Flip"):
        asyncio.run(
            t.rationale(rationale_prompt("What is 2 + 2?"), n=1, temperature=0, max_tokens=128)
        )
