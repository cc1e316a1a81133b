"""Retries that finish the job: capped exponential backoff with full jitter until a per-request
deadline, `Retry-After` honoured, and the cancel, the budget and fatal errors still in charge
during the waits."""

from __future__ import annotations

import asyncio
import random
import threading
import time

import pytest

from rtdemo.cli.main import build_parser
from rtdemo.cli.teacher_args import settings_of
from rtdemo.errors import UserError
from rtdemo.generation.pricing import Price
from rtdemo.generation.request import GenerationRequest
from rtdemo.generation.run import GenerationSettings, Generator, run_generation
from rtdemo.generation.samples import load_samples
from rtdemo.tasks.registry import TASKS
from rtdemo.tasks.synthetic import SyntheticSettings, generate
from rtdemo.teachers.base import RetryPolicy, TeacherError
from rtdemo.teachers.openai_compat import OpenAITeacher
from rtdemo.workspace.store import Store
from tests.fakes.openai_server import (
    FakeOpenAIServer,
    Faults,
    coin_flip_responder,
    default_responder,
)
from tests.generation.test_generation import FAST, Counting

KEY = "sk-test-retries"
COIN = TASKS["coin_flip"].answer
#: How long a test waits for a run that should end at once (a guard against a hang, far below
#: the waits a broken run would make).
HANG = 60.0


@pytest.fixture
def server():
    with FakeOpenAIServer(api_key=KEY, models=["fake-model"], responder=coin_flip_responder) as s:
        yield s
    assert not s.handler_errors


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "ws") as store:
        yield store


def _questions(n):
    questions = generate("coin_flip", SyntheticSettings(size=2 * n + 30), "train")[:n]
    assert len(questions) == n
    return questions


def _experiment(store, name, questions):
    exp = store.create_experiment(name, "coin_flip")
    store.add_questions(exp.id, questions)
    return exp


def _teacher(server):
    return OpenAITeacher("fake-model", base_url=server.base_url, api_key=KEY, timeout=10)


def _in_thread(target):
    """Run `target` in a thread; its result or exception once it ends, or a failure after HANG
    seconds (the run did not end when it should have)."""
    out: dict = {}

    def go():
        try:
            out["result"] = target()
        except BaseException as err:  # handed to the test
            out["error"] = err

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    thread.join(HANG)
    assert not thread.is_alive(), f"the run was still going after {HANG:g} s"
    if "error" in out:
        raise out["error"]
    return out["result"]


# -- the acceptance: 20 runs against a 20%-faulty teacher ------------------------------


@pytest.mark.slow  # about 20 s: 6,000 HTTP requests
def test_twenty_runs_against_a_twenty_percent_faulty_teacher_each_store_every_sample(
    store, server, monkeypatch
):
    """20 runs of 200 samples (50 questions × D=4: 250 calls), each against a teacher failing a
    fifth of its requests (429 with Retry-After, 500, dropped connections, seeded per run), with
    the default retry policy and a fast backoff: every run stores every sample, none failed.

    The fake draws each fault from the request's body and how often that body came before
    (`by_body`), and every call of these runs has a body of its own (the responder words each
    of the 4 rationales differently): each call meets the same faults on every run and every
    machine, whatever order the 8 concurrent requests arrive in.
    The faults are severe enough for the old fixed 5 tries per request: some call of these runs
    needed more than 5 tries (asserted below), so `max_attempts=5` leaves samples failed.
    """
    tries: list[int] = []
    original = Generator._request

    async def counting(self, call, *args, **kwargs):  # the tries of each logical call
        count = [0]

        async def counted():
            count[0] += 1
            return await call()

        try:
            return await original(self, counted, *args, **kwargs)
        finally:
            tries.append(count[0])

    monkeypatch.setattr(Generator, "_request", counting)
    server.responder = default_responder
    questions = _questions(50)
    settings = GenerationSettings(samples=4, temperature=0.7, backoff=0.005, max_backoff=0.05)
    injected = {"rate_limit": 0, "server_error": 0, "drop": 0}
    for run in range(20):
        exp = _experiment(store, f"run-{run}", questions)
        server.faults = Faults.transient(
            0.2, seed=run, by_body=True, retry_after="0", retry_after_ms="5"
        )
        server.reset_counters()
        stats = run_generation(store, exp, _teacher(server), settings, questions, COIN, None)
        samples = load_samples(store, exp.id)
        assert (stats.done, stats.failed, stats.stopped) == (200, 0, None), f"run {run}"
        assert len(samples) == 200 and all(s.status == "done" for s in samples), f"run {run}"
        assert server.by_outcome["ok"] == 250  # each call answered exactly once
        for fault, count in server.faults_injected.items():
            injected[fault] += count
    assert all(count > 100 for count in injected.values()), injected  # all three, mixed
    assert len(tries) == 20 * 250
    assert max(tries) > 5  # a fixed 5 tries would have stored a failure


def test_a_request_keeps_being_retried_past_five_tries_until_it_succeeds(store):
    questions = _questions(3)
    exp = _experiment(store, "e", questions)
    failing = TeacherError("server", "500")
    teacher = Counting(fail=lambda kind, n: failing if kind == "rationale" and n <= 12 else None)
    stats = run_generation(
        store, exp, teacher, GenerationSettings(concurrency=1, **FAST), questions, COIN, None
    )
    assert (stats.done, stats.failed) == (3, 0)
    assert teacher.calls["rationale"] == 12 + 3


# -- the deadline, Retry-After, a teacher that is down -----------------------------------------


def test_a_retry_after_past_the_deadline_fails_that_sample_at_once_with_its_reason(store, server):
    questions = _questions(2)
    exp = _experiment(store, "e", questions)
    server.faults = Faults(schedule=["rate_limit"], retry_after="600")
    settings = GenerationSettings(concurrency=1, retry_deadline=300, **FAST)
    stats = _in_thread(
        lambda: run_generation(store, exp, _teacher(server), settings, questions, COIN, None)
    )
    assert (stats.done, stats.failed) == (1, 1)
    failed = [s for s in load_samples(store, exp.id) if s.status == "failed"]
    assert len(failed) == 1 and failed[0].attempts == 1
    assert failed[0].error.startswith("rate_limit: ")
    assert "asked to wait 600 s (Retry-After), past the retry deadline of 300 s" in failed[0].error
    assert server.requests_total == 1 + 2  # the refused call was not tried again


def test_a_request_failing_past_its_deadline_is_stored_as_failed_while_the_others_finish(store):
    questions = _questions(12)
    exp = _experiment(store, "e", questions)
    first = questions[0].question

    class OneBroken(Counting):
        async def rationales_for(self, prompt, indices, *, temperature, max_tokens):
            if first in prompt:
                self.calls["rationale"] += 1
                raise TeacherError("server", "the teacher server failed (500)")
            return await super().rationales_for(
                prompt, indices, temperature=temperature, max_tokens=max_tokens
            )

    teacher = OneBroken()
    settings = GenerationSettings(concurrency=4, retry_deadline=0.5, backoff=0.01, max_backoff=0.05)
    stats = _in_thread(lambda: run_generation(store, exp, teacher, settings, questions, COIN, None))
    assert (stats.done, stats.failed) == (11, 1)
    [failed] = [s for s in load_samples(store, exp.id) if s.status == "failed"]
    assert failed.idx == questions[0].index and failed.attempts > 2
    assert "retry deadline 0.5 s" in failed.error and failed.error.startswith("server: ")


def test_a_teacher_that_answers_nothing_for_a_whole_deadline_ends_the_run(store):
    questions = _questions(20)
    exp = _experiment(store, "e", questions)
    teacher = Counting(fail=lambda kind, n: TeacherError("server", "the server failed (503)"))
    settings = GenerationSettings(retry_deadline=0.3, backoff=0.01, max_backoff=0.05)
    with pytest.raises(UserError, match=r"answered no request for .*503.*retry deadline 0\.3 s"):
        _in_thread(lambda: run_generation(store, exp, teacher, settings, questions, COIN, None))
    assert load_samples(store, exp.id) == []  # nothing stored as failed: a re-run asks again


def test_an_unreachable_teacher_ends_the_run_after_a_few_tries_not_the_deadline(store):
    questions = _questions(20)
    exp = _experiment(store, "e", questions)
    teacher = Counting(fail=lambda kind, n: TeacherError("connection", "connection refused"))
    settings = GenerationSettings(retry_deadline=120, **FAST)
    with pytest.raises(UserError, match="cannot reach the teacher: connection refused"):
        _in_thread(lambda: run_generation(store, exp, teacher, settings, questions, COIN, None))
    assert teacher.calls["rationale"] <= 8 * 5  # 5 tries for each of the 8 first requests
    assert load_samples(store, exp.id) == []


# -- cancel, fatal errors and the budget during the waits --------------------------------------


def test_a_cancel_during_a_long_retry_after_stops_the_run_promptly(store, server):
    """Every request is refused with `Retry-After: 250` (within the deadline, so it is waited
    for); the cancel comes during that wait and ends the run long before it would end."""
    questions = _questions(3)
    exp = _experiment(store, "e", questions)
    server.faults = Faults(rate_limit=1.0, retry_after="250")
    cancel = threading.Event()

    def cancel_once_refused():
        deadline = time.monotonic() + HANG
        while server.by_outcome["rate_limit"] < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)  # into the wait
        cancel.set()

    canceller = threading.Thread(target=cancel_once_refused, daemon=True)
    canceller.start()
    settings = GenerationSettings(concurrency=1, retry_deadline=300)
    stats = _in_thread(
        lambda: run_generation(
            store, exp, _teacher(server), settings, questions, COIN, None, should_stop=cancel.is_set
        )
    )
    canceller.join()
    assert stats.stopped == "cancelled"
    assert stats.requests == server.requests_total == 1  # no retry was sent after the cancel
    assert load_samples(store, exp.id) == []  # the waiting call is not stored as failed


def test_a_fatal_error_elsewhere_ends_a_long_wait(store):
    """Call 1 of one question waits 250 s for its Retry-After when another question's call meets
    a rejected key: the run ends with that message at once."""
    questions = _questions(2)
    exp = _experiment(store, "e", questions)
    errors = {
        1: TeacherError("rate_limit", "slow down", retry_after=250),
        2: TeacherError("auth", "the teacher server rejected the API key (401)"),
    }

    class Later(Counting):
        async def rationales_for(self, prompt, indices, *, temperature, max_tokens):
            if self.calls["rationale"] == 1:  # the second call comes once the first is waiting
                await asyncio.sleep(0.2)
            return await super().rationales_for(
                prompt, indices, temperature=temperature, max_tokens=max_tokens
            )

    teacher = Later(fail=lambda kind, n: errors.get(n) if kind == "rationale" else None)
    settings = GenerationSettings(concurrency=2, retry_deadline=300)
    with pytest.raises(UserError, match="rejected the API key"):
        _in_thread(lambda: run_generation(store, exp, teacher, settings, questions, COIN, None))
    assert teacher.calls["rationale"] == 2  # the waiting call was never tried again


def test_the_budget_still_stops_a_run_during_retries(store):
    """One question's call 1 keeps failing while the others spend: its retries meet the budget
    check before each try, so the run stops at the budget instead of retrying until the
    deadline, and the call is not stored as failed."""
    questions = _questions(30)
    exp = _experiment(store, "e", questions)
    first = questions[0].question

    class FirstFails(Counting):
        async def rationales_for(self, prompt, indices, *, temperature, max_tokens):
            if first in prompt:
                self.calls["rationale"] += 1
                raise TeacherError("server", "the teacher server failed (500)")
            return await super().rationales_for(
                prompt, indices, temperature=temperature, max_tokens=max_tokens
            )

    teacher = FirstFails()
    price = Price(input=1000.0, output=1000.0)  # ~$0.2 a sample, ~$0.7 worst
    settings = GenerationSettings(concurrency=2, budget=3.0, retry_deadline=120, **FAST)
    stats = _in_thread(
        lambda: run_generation(store, exp, teacher, settings, questions, COIN, price)
    )
    assert stats.stopped == "budget" and stats.spend <= 3.0
    assert stats.failed == 0 and 0 < stats.done < 29
    assert teacher.calls["rationale"] > 2  # it was being retried when the budget stopped it
    assert all(s.status == "done" for s in load_samples(store, exp.id))


# -- the policy itself, and its settings -------------------------------------------------------


def test_the_policy_waits_full_jitter_capped_at_least_retry_after_never_past_the_deadline():
    policy = RetryPolicy(deadline=100.0, backoff=1.0, max_backoff=10.0)
    rng = random.Random(0)
    plain = TeacherError("server", "500")
    for tries in range(1, 12):
        waits = [policy.wait(plain, tries, 0.0, rng) for _ in range(300)]
        ceiling = min(10.0, 2.0 ** (tries - 1))
        assert all(0.0 <= w <= ceiling for w in waits)
        assert max(waits) > 0.8 * ceiling and min(waits) < 0.2 * ceiling  # the whole range
    hinted = TeacherError("rate_limit", "429", retry_after=7.5)
    assert all(policy.wait(hinted, 1, 0.0, rng) >= 7.5 for _ in range(100))
    assert policy.wait(plain, 10, 98.0, rng) <= 2.0  # the last wait ends at the deadline
    assert policy.give_up(plain, 50, 99.0) is None  # no count of tries by default
    assert "retry deadline 100 s" in policy.give_up(plain, 3, 100.0)
    assert "past the retry deadline" in policy.give_up(hinted, 1, 95.0)
    assert policy.give_up(hinted, 1, 90.0) is None
    capped = RetryPolicy(max_attempts=3)
    assert capped.give_up(plain, 2, 0.0) is None
    assert "after 3 tries (max_attempts 3)" in capped.give_up(plain, 3, 0.0)
    assert GenerationSettings(max_attempts=0).retry_policy().max_attempts is None  # 0: no cap
    assert RetryPolicy().give_up(TeacherError("auth", "401"), 1, 0.0) == "not retryable"


def test_retry_settings_from_flags_and_on_a_job_command_line():
    args = build_parser().parse_args(
        ["generate", "--experiment", "x", "--retry-deadline", "90", "--max-attempts", "7"]
    )
    settings = settings_of(args)
    assert (settings.retry_deadline, settings.max_attempts) == (90.0, 7)
    defaults = settings_of(build_parser().parse_args(["generate", "--experiment", "x"]))
    assert (defaults.retry_deadline, defaults.max_attempts) == (300.0, None)
    request = GenerationRequest("x", settings=settings)
    argv = request.argv()
    assert float(argv[argv.index("--retry-deadline") + 1]) == 90.0
    assert argv[argv.index("--max-attempts") + 1] == "7"
    assert GenerationRequest.from_argv(argv) == request
    plain = GenerationRequest("x")
    assert "--retry-deadline" not in plain.argv() and "--max-attempts" not in plain.argv()
    assert GenerationRequest.from_argv(plain.argv()) == plain
    with pytest.raises(UserError, match=r"retry.deadline"):
        build_parser().parse_args(["generate", "--experiment", "x", "--retry-deadline", "0"])
