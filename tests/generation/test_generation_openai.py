"""Generation through OpenAITeacher against the fake OpenAI server, in process: what gets stored.

Each test here guards one mistake a user would meet as wrong data: the teacher's answer read with
the student's rule, a budget overrun by requests in flight, samples of other teacher settings
taken for this run's, and the `n` choices stored under the wrong sample index.
"""

from __future__ import annotations

import threading

import pytest

from rtdemo.generation.pricing import Price
from rtdemo.generation.run import GenerationSettings, run_generation
from rtdemo.generation.samples import SampleKey, load_samples
from rtdemo.tasks.cleansing import judge
from rtdemo.tasks.registry import TASKS
from rtdemo.tasks.synthetic import SyntheticSettings, generate
from rtdemo.teachers.openai_compat import OpenAITeacher
from rtdemo.workspace.store import Store
from tests.fakes.openai_server import FakeOpenAIServer, coin_flip_responder, prompt_text

KEY = "sk-test-generation"
MODELS = ["fake-model", "other-model"]
COIN = TASKS["coin_flip"].answer


@pytest.fixture
def server():
    with FakeOpenAIServer(api_key=KEY, models=MODELS, responder=coin_flip_responder) as s:
        yield s
    assert not s.handler_errors


@pytest.fixture
def setup(tmp_path):
    store = Store(tmp_path / "ws")
    exp = store.create_experiment("e", "coin_flip")
    questions = generate("coin_flip", SyntheticSettings(size=40), "train")
    store.add_questions(exp.id, questions)
    yield store, exp, questions
    store.close()


def teacher_of(server: FakeOpenAIServer, model: str = "fake-model", base_url: str | None = None):
    return OpenAITeacher(model, base_url=base_url or server.base_url, api_key=KEY, timeout=10)


def generate_with(store, exp, questions, teacher, price=None, **settings):
    s = GenerationSettings(**{"backoff": 0.001, "max_backoff": 0.01, **settings})
    return run_generation(store, exp, teacher, s, questions, COIN, price)


# -- a. the teacher's answer is read with the teacher rule -------------------------------------

ANSWER_SHAPES = [
    " {right}, not {wrong}.",  # first candidate right, last wrong
    " {right}. Some would say {wrong}.",
    " {right} --> {wrong}",  # the Fine-tune-CoT rule reads after the delimiter
]


@pytest.mark.parametrize("shape", ANSWER_SHAPES)
def test_the_teachers_answer_is_scored_by_the_teacher_rule(server, setup, shape):
    """METHOD.md: the teacher's answer text counts its first candidate; a Fine-tune-CoT output
    (" r --> a") counts the first after `-->`, else the last. They differ on these answers."""
    store, exp, questions = setup

    def two_candidates(body, endpoint, choice=0):
        reply = coin_flip_responder(body, endpoint, choice)
        if "Therefore, the answer is" not in prompt_text(body):
            return reply
        right = reply.strip(" .")
        return shape.format(right=right, wrong={"yes": "no", "no": "yes"}[right])

    server.responder = two_candidates
    stats = generate_with(store, exp, questions[:6], teacher_of(server))
    samples = load_samples(store, exp.id)
    assert len(samples) == 6 and stats.done == 6
    for s, q in zip(samples, questions[:6], strict=True):
        assert judge(s.answer_text, q.answer, COIN, "cot").correct is False  # the rules differ
        assert (s.prediction, s.correct) == (q.answer, True), s.answer_text
    assert stats.correct == 6


# -- b. the budget counts what is in flight ----------------------------------------------------


def test_a_budget_at_concurrency_8_is_never_exceeded_and_every_stored_sample_is_complete(
    server, setup
):
    store, exp, questions = setup
    # Rationales are cut at the cap, so call 1's completion usage is exactly its worst case; the
    # fake's prompt tokens are close to rtdemo's estimate (see tests/fakes/openai_server.py).
    price = Price(input=1000.0, output=1000.0)  # $0.001 a token: about $0.6 a question
    budget = 3.0
    stats = generate_with(
        store,
        exp,
        questions,
        teacher_of(server),
        price,
        samples=4,
        temperature=0.7,
        max_tokens=12,
        concurrency=8,
        budget=budget,
    )
    assert stats.stopped == "budget"
    samples = load_samples(store, exp.id)
    assert 0 < stats.done < stats.total and len(samples) == stats.done
    assert all(s.status == "done" and s.answer_text is not None for s in samples)
    assert all(s.rationale_finish == "length" for s in samples)
    # Whole questions: a paid rationale always gets its answer.
    assert len({s.idx for s in samples}) * 4 == len(samples)
    assert stats.spend <= budget
    assert sum(s.cost for s in samples) == pytest.approx(stats.spend)
    # What the server itself billed, not only what rtdemo counted.
    usage = server.usage_total()
    assert price.cost(usage["prompt_tokens"], usage["completion_tokens"]) <= budget
    assert price.cost(usage["prompt_tokens"], usage["completion_tokens"]) == pytest.approx(
        stats.spend
    )


# -- c. resume only counts samples of the same teacher settings --------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"temperature": 1.0},
        {"max_tokens": 64},
        {"model": "other-model"},
        {"base_url": "localhost"},
        {},
    ],
    ids=["temperature", "max_tokens", "model", "base_url", "same"],
)
def test_resume_counts_only_samples_of_the_same_teacher_settings(server, setup, change):
    store, exp, questions = setup
    questions = questions[:3]
    first = {"samples": 2, "temperature": 0.7, "max_tokens": 128}
    generate_with(store, exp, questions, teacher_of(server), **first)
    before = load_samples(store, exp.id)
    assert len(before) == 6 and all(s.status == "done" for s in before)

    server.reset_counters()
    model = change.get("model", "fake-model")
    base_url = server.base_url.replace("127.0.0.1", "localhost") if "base_url" in change else None
    settings = {**first, **{k: v for k, v in change.items() if k in first}}
    teacher = teacher_of(server, model, base_url)
    stats = generate_with(store, exp, questions, teacher, **settings)

    if not change:  # the same teacher and settings: everything is stored, nothing is requested
        assert server.requests_total == 0 and stats.requests == 0 and stats.done == 6
        return
    # Other settings: a fresh set of samples, one call 1 (n=2) per question and a call 2 each.
    assert stats.done_at_start == 0 and stats.done == 6
    assert server.requests_total == 3 + 6 and stats.requests == 9
    assert {b["model"] for b in server.bodies()} == {model}
    key = SampleKey.of(teacher.info, settings["temperature"], settings["max_tokens"])
    new = load_samples(store, exp.id, key)
    assert len(new) == 6 and all(s.status == "done" for s in new)
    assert {(s.model, s.temperature, s.max_tokens) for s in new} == {
        (model, settings["temperature"], settings["max_tokens"])
    }
    assert len(load_samples(store, exp.id)) == 12
    # The first run's samples are untouched.
    assert [s for s in load_samples(store, exp.id) if s.id in {b.id for b in before}] == before


# -- d. the n choices go to their own sample index ---------------------------------------------


def test_shuffled_choices_are_stored_under_their_own_sample_index(server, setup):
    store, exp, questions = setup
    server.shuffle_choices = True

    def numbered(body, endpoint, choice=0):
        reply = coin_flip_responder(body, endpoint, choice)
        if "Therefore, the answer is" in prompt_text(body):
            return reply
        return f"{reply} (choice {choice})"

    server.responder = numbered
    stats = generate_with(store, exp, questions[:5], teacher_of(server), samples=4, temperature=0.7)
    assert stats.done == 20
    assert [b.get("n", 1) for b in server.bodies()].count(4) == 5  # one call 1 per question
    samples = load_samples(store, exp.id)
    assert len(samples) == 20
    for s in samples:
        assert s.rationale.endswith(f"(choice {s.sample_index})"), (s.sample_index, s.rationale)
        assert s.answer_prompt.startswith(s.rationale_prompt + s.rationale)


# -- a cancel sends nothing more ---------------------------------------------------------------


def test_a_cancel_sends_no_request_that_was_waiting_for_a_slot(server, setup):
    """Cancelled while all 8 slots wait on the server (the fake holds every request after the
    first 20): the 8 in flight land, and none of the calls queued for a slot is sent."""
    store, exp, questions = setup
    answered, concurrency = 20, 8
    cancel = threading.Event()
    server.hold(after=answered)

    def cancel_when_all_slots_are_held():
        server.wait_held(concurrency)
        cancel.set()
        server.release()

    canceller = threading.Thread(target=cancel_when_all_slots_are_held)
    canceller.start()
    s = GenerationSettings(samples=4, temperature=0.7, concurrency=concurrency)
    stats = run_generation(
        store, exp, teacher_of(server), s, questions, COIN, None, should_stop=cancel.is_set
    )
    canceller.join()
    assert stats.stopped == "cancelled"
    assert server.requests_total == answered + concurrency
    assert stats.requests == answered + concurrency
    samples = load_samples(store, exp.id)
    assert {s.status for s in samples} <= {"done", "rationale"}
    # Resuming requests exactly what is missing, and ends with every sample done.
    server.reset_counters()
    stats = generate_with(store, exp, questions, teacher_of(server), samples=4, temperature=0.7)
    assert stats.done == stats.total == 4 * len(questions)
    missing_1 = len(questions) - len({s.idx for s in samples})
    missing_2 = stats.total - sum(s.status == "done" for s in samples)
    assert server.requests_total == missing_1 + missing_2
