"""Rationale generation: two-step Zero-shot-CoT, D diverse samples at temperature T.

    stats = run_generation(store, experiment, teacher, GenerationSettings(samples=4,
                           temperature=0.7), split="train")

Fast: requests run concurrently under a limit (and an optional requests-per-minute pace).
Finishes: a transient failure (429, 5xx, timeout, dropped connection, unreadable reply) is retried
with capped exponential backoff and full jitter, waiting at least the server's `Retry-After`,
until the request's retry deadline (`retry_deadline`, default 300 s; `max_attempts` optionally
caps the tries): a teacher failing one request in five still completes every sample in one run.
A request that fails past its deadline is stored as failed with its reason and retried by the
next run; one whose `Retry-After` ends past the deadline fails at once. A cancel, the budget and
a fatal error elsewhere are all checked during the waits. A teacher that never answered (only
connection failures or timeouts, 5 tries) or answered no request for a whole retry deadline ends
the run with one message. Frugal: a budget cap stops the run cleanly before a request could
exceed it. Impossible to lose: each call's result is committed as it arrives, and a re-run
requests only what is not stored. Honest about diversity: the progress record counts distinct
rationales per question (`rtdemo.generation.diversity`), and how many questions' D > 1 samples
came back identical (a server that ignores `temperature` or `n`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Annotated, NoReturn

from pydantic import Field

from rtdemo.errors import UserError
from rtdemo.generation.diversity import DiversityTally
from rtdemo.generation.pricing import Price, usage_cost
from rtdemo.generation.samples import (
    SampleKey,
    SampleSlot,
    load_samples,
    save_answer,
    save_failure,
    save_rationale,
)
from rtdemo.tasks.cleansing import judge
from rtdemo.tasks.types import AnswerFormat, Example
from rtdemo.teachers.base import (
    RetryPolicy,
    Teacher,
    TeacherError,
    answer_prompt,
    rationale_prompt,
)
from rtdemo.validation import SettingError, check_fields, setting, typed
from rtdemo.workspace.store import Experiment, Store

MAX_SAMPLES = 256
#: Tries of a request that got only connection failures or timeouts while no request of the run
#: has succeeded yet: the teacher is unreachable, and the run ends (not after the whole deadline).
UNREACHABLE_TRIES = 5
#: Seconds between two checks for a cancel or a fatal error while a request waits to retry.
WAIT_SLICE = 0.1


@typed
@dataclass(frozen=True)
class GenerationSettings:
    """How to sample the teacher. Defaults are the paper's (D=1, greedy, 128 tokens).

    Types, ranges and help texts are declared here once: the `rtdemo generate`/`estimate` flags,
    a recipe's `teacher:` and the Teacher tab are checked against them (`rtdemo.validation`).
    """

    samples: Annotated[int, Field(ge=1, le=MAX_SAMPLES)] = setting(
        1, "D: rationales per question (default 1)"
    )
    temperature: Annotated[float, Field(ge=0, le=2)] = setting(
        0.0, "T for the rationale call (paper: 0 for D=1, 0.7 for diverse)"
    )  # call 2 is always greedy
    max_tokens: Annotated[int, Field(ge=1, le=32768)] = setting(
        128, "max tokens per call (paper: 128; truncation is recorded)"
    )
    concurrency: Annotated[int, Field(ge=1, le=256)] = setting(8, "requests in flight (default 8)")
    rpm: Annotated[float, Field(gt=0)] | None = setting(
        None, "at most this many requests per minute"
    )
    budget: Annotated[float, Field(ge=0)] | None = setting(
        None, "stop before spending more than this many USD"
    )
    retry_deadline: Annotated[float, Field(gt=0)] = setting(
        300.0,
        "seconds a request that keeps failing (429, 5xx, timeouts, dropped connections) is "
        "retried before it is stored as failed (default 300)",
    )
    max_attempts: Annotated[int, Field(ge=0)] | None = setting(
        None, "optional cap on tries per request (default: none, retried until the deadline)"
    )
    backoff: Annotated[float, Field(ge=0)] = setting(
        1.0, "seconds, base of the exponential backoff (full jitter)"
    )
    max_backoff: Annotated[float, Field(ge=0)] = setting(60.0, "seconds, the longest backoff")

    def __post_init__(self) -> None:
        check_fields(self)
        if self.samples > 1 and self.temperature == 0:
            raise SettingError(
                f"{self.samples} diverse samples at temperature 0 would all be the same: "
                "set a temperature (the paper uses 0.7) or use 1 sample"
            )

    def retry_policy(self) -> RetryPolicy:
        """The retry policy these settings describe."""
        return RetryPolicy(
            self.retry_deadline, self.backoff, self.max_backoff, self.max_attempts or None
        )


@dataclass
class RunStats:
    """Where a run stands; `stopped` says why it ended early, if it did."""

    total: int = 0  # samples wanted (questions × D)
    done: int = 0  # samples with both calls stored
    failed: int = 0  # samples whose request kept failing in this run
    correct: int = 0
    truncated: int = 0
    spend: float = 0.0  # dollars, this run
    requests: int = 0  # HTTP requests (or teacher calls) made by this run
    started: float = field(default_factory=time.monotonic)
    done_at_start: int = 0
    stopped: str | None = None
    samples_per_question: int = 1  # D
    #: distinct rationales per question of this teacher setting (stored ones and this run's)
    diversity: DiversityTally = field(default_factory=DiversityTally, repr=False, compare=False)

    def progress(self) -> dict:
        """A progress record: done, total, failures, spend, rate, ETA, teacher accuracy, and
        diversity (distinct rationales per question; questions with D > 1 samples, and how many
        of those are identical)."""
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = (self.done - self.done_at_start) / elapsed
        left = self.total - self.done - self.failed
        hidden = ("started", "done_at_start", "diversity")
        return {
            **{f.name: getattr(self, f.name) for f in fields(self) if f.name not in hidden},
            **self.diversity.progress(),
            "failures": self.failed,
            "spend": round(self.spend, 6),
            "rate": round(rate, 3),
            "eta": round(left / rate, 1) if rate > 0 else None,
            "accuracy": round(self.correct / self.done, 4) if self.done else None,
        }


class _Stop(Exception):
    """Stop issuing requests (budget reached or cancelled); in-flight work still lands."""


class _Fatal(Exception):
    """A failure no retry can fix (bad key, unknown model, rejected parameter, a teacher that
    cannot be reached or answers nothing): end the run."""


class GaveUp(TeacherError):
    """A request that kept failing: its last error, how many tries it had, and why retrying
    stopped (the retry deadline, `max_attempts`, or a `Retry-After` past the deadline)."""

    def __init__(self, last: TeacherError, tries: int, why: str) -> None:
        super().__init__(last.kind, f"{last}; {why}", last.retry_after)
        self.tries = tries


class _Pace:
    """Spaces request starts to at most `rpm` per minute."""

    def __init__(self, rpm: float | None) -> None:
        self.interval = 60.0 / rpm if rpm else 0.0
        self.next = 0.0

    def delay(self) -> float:
        """Seconds until the next request may start (and take that start)."""
        if not self.interval:
            return 0.0
        now = time.monotonic()
        start = max(now, self.next)
        self.next = start + self.interval
        return start - now


class Generator:
    """One generation run over a list of questions for one experiment and teacher setting."""

    def __init__(
        self,
        store: Store,
        experiment: Experiment,
        teacher: Teacher,
        settings: GenerationSettings,
        answer: AnswerFormat,
        price: Price | None,
        on_progress: Callable[[RunStats], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        if settings.budget is not None and price is None:
            raise UserError(
                f"a budget needs a price for model {teacher.info.model!r}: add it to prices.yaml "
                "(or pass --prices FILE)"
            )
        self.store, self.experiment, self.teacher = store, experiment, teacher
        self.settings, self.answer, self.price = settings, answer, price
        self.key = SampleKey.of(teacher.info, settings.temperature, settings.max_tokens)
        k = self.key
        self._setting = (k.teacher, k.base_url, k.model, k.temperature, k.max_tokens)
        self.on_progress = on_progress or (lambda stats: None)
        self.should_stop = should_stop or (lambda: False)
        self.stats = RunStats()
        self._reserved = 0.0
        self._successes = 0
        self._last_success = time.monotonic()  # when a request last succeeded (or the run began)
        self._fatal: TeacherError | None = None
        self._fatal_what = ""  # what the run's end message says before the error
        self.retry = settings.retry_policy()

    def _worst_cost(self, prompt: str, n: int, rationale_follows: bool = False) -> float:
        """An upper bound of a call's cost (prompt tokens overestimated at 2 characters each)."""
        if not self.price:
            return 0.0
        cap = self.settings.max_tokens
        prompt_tokens = len(prompt) // 2 + 10 + (cap if rationale_follows else 0)
        return self.price.cost(prompt_tokens, n * cap)

    async def _request(self, call: Callable, worst_cost: float, check_budget: bool = True):
        """One teacher call, retried under the settings' `RetryPolicy` while it fails
        transiently; `_Stop`, `_Fatal`, or a `GaveUp` once retrying ends.

        The budget is checked against spend plus the worst case of everything in flight before
        every try, a call 1 reserving its samples' call 2 as well, so a paid rationale can always
        be finished. A cancel and a fatal error elsewhere end the waits between tries.
        """
        s = self.settings
        tries, first = 0, None
        while True:
            self._check_stop()
            async with self._slots:
                # Again once a slot is free: a cancel or a fatal error may have come meanwhile.
                self._check_stop()
                budget = s.budget if check_budget else None
                if budget is not None and self.stats.spend + self._reserved + worst_cost > budget:
                    self.stats.stopped = self.stats.stopped or "budget"
                    raise _Stop("budget")
                await self._pause(self._pace.delay())
                self._reserved += worst_cost
                self.stats.requests += 1
                tries += 1
                started = time.monotonic()
                first = started if first is None else first
                try:
                    result = await call()
                    self._successes += 1
                    self._last_success = time.monotonic()
                    return result
                except TeacherError as err:
                    if not err.retryable:
                        if err.kind == "unsupported":
                            raise
                        self._end_run(err, "the teacher refused the request")
                    error = err
                finally:
                    self._reserved -= worst_cost
            elapsed = time.monotonic() - first
            why = self.retry.give_up(error, tries, elapsed)
            unreachable = error.kind in ("connection", "timeout") and self._successes == 0
            if why is None and unreachable and tries >= UNREACHABLE_TRIES:
                why = f"gave up after {tries} tries"
            if why is not None:
                gave_up = GaveUp(error, tries, why)
                if unreachable:
                    # Nothing has ever got through: the server is unreachable, not one request
                    # unlucky.
                    self._end_run(gave_up, "cannot reach the teacher")
                if elapsed >= self.retry.deadline and self._last_success < first:
                    # No request at all succeeded during this one's whole retry deadline: the
                    # teacher is down, and every other request would wait as long in vain.
                    self._end_run(gave_up, f"the teacher answered no request for {elapsed:.1f} s")
                raise gave_up
            await self._pause(self.retry.wait(error, tries, elapsed))

    def _check_stop(self) -> None:
        """`_Stop` if the run was cancelled or a fatal error ended it."""
        if self._fatal is not None or self.should_stop():
            raise _Stop("cancelled")

    async def _pause(self, seconds: float) -> None:
        """Sleep `seconds`, ended early (`_Stop`) by a cancel or a fatal error elsewhere, which
        are checked every `WAIT_SLICE` seconds."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            await asyncio.sleep(min(left, WAIT_SLICE))
            self._check_stop()

    def _end_run(self, error: TeacherError, what: str) -> NoReturn:
        """Record the run's fatal error (the first one wins) and raise `_Fatal`."""
        if self._fatal is None:
            self._fatal, self._fatal_what = error, what
        raise _Fatal(str(error)) from error

    async def _answer(
        self,
        example: Example,
        sample_id: int,
        prompt: str,
        sample_index: int,
        reserved: float = 0.0,
    ):
        """Call 2 for one sample; `reserved` is the budget its call 1 set aside for it."""
        call_2 = answer_prompt(prompt, self._rationales[sample_id])
        try:
            reply = await self._request(
                lambda: self.teacher.answer(call_2, max_tokens=self.settings.max_tokens),
                0.0 if reserved else self._worst_cost(call_2, 1),
                check_budget=not reserved,
            )
        except TeacherError as err:
            self._record_failure(example, sample_index, err, keep_rationale=True)
            return
        finally:
            self._reserved -= reserved
        verdict = judge(reply.text, example.answer, self.answer, "teacher", reply.finish_reason)
        cost = usage_cost(self.price, reply)
        save_answer(self.store, sample_id, call_2, reply, verdict.prediction, verdict.correct, cost)
        self.stats.spend += cost
        self.stats.done += 1
        self.stats.correct += verdict.correct
        self.stats.truncated += reply.finish_reason == "length" or self._truncated[sample_id]
        self.on_progress(self.stats)

    def _record_failure(
        self, example: Example, index: int, err: TeacherError, keep_rationale: bool
    ) -> None:
        reason = f"{err.kind}: {err}"
        slot = SampleSlot.of(self.experiment.id, example, self.key, index)
        tries = err.tries if isinstance(err, GaveUp) else 1
        save_failure(self.store, slot, reason, tries, keep_rationale)
        self.stats.failed += 1
        self.on_progress(self.stats)

    async def _question(self, example: Example, need_1: list[int], need_2: list[tuple[int, int]]):
        prompt = rationale_prompt(example.question)
        groups = [need_1] if self.teacher.supports_n else [[i] for i in need_1]
        answers = [self._answer(example, sid, prompt, index) for sid, index in need_2]
        settings = {"samples": self.settings.samples, "label": self.teacher.info.label}
        call_2_cost = self._worst_cost(prompt, 1, rationale_follows=True)
        for group in filter(None, groups):
            try:
                replies = await self._request(
                    lambda g=group: self.teacher.rationales_for(
                        prompt,
                        g,
                        temperature=self.settings.temperature,
                        max_tokens=self.settings.max_tokens,
                    ),
                    self._worst_cost(prompt, len(group)) + len(group) * call_2_cost,
                )
            except TeacherError as err:
                for index in group:
                    self._record_failure(example, index, err, keep_rationale=False)
                continue
            self._reserved += len(group) * call_2_cost  # held until each call 2 ends
            for index, reply in zip(group, replies, strict=True):
                cost = usage_cost(self.price, reply)
                self.stats.spend += cost
                slot = SampleSlot.of(self.experiment.id, example, self.key, index)
                sid = save_rationale(self.store, slot, prompt, reply, cost, settings)
                self._rationales[sid] = reply.text
                self._truncated[sid] = reply.finish_reason == "length"
                question = (example.split, example.index)
                self.stats.diversity.add_text(question, self._setting, reply.text)
                answers.append(self._answer(example, sid, prompt, index, call_2_cost))
        results = await asyncio.gather(*answers, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, _Stop):
                raise result

    def plan(
        self, questions: list[Example]
    ) -> list[tuple[Example, list[int], list[tuple[int, int]]]]:
        """For each question: sample indices needing call 1, and (id, index) needing only call 2."""
        stored = {}
        for s in load_samples(self.store, self.experiment.id, self.key):
            stored[(s.split, s.idx, s.sample_index)] = s
        plan, d = [], self.settings.samples
        self.stats.total = len(questions) * d
        self.stats.samples_per_question = d
        self._rationales: dict[int, str] = {}
        self._truncated: dict[int, bool] = {}
        for q in questions:
            need_1, need_2 = [], []
            for i in range(d):
                s = stored.get((q.split, q.index, i))
                if s is not None and s.rationale is not None and s.status != "failed":
                    self.stats.diversity.add(s)
                if s is not None and s.status == "done":
                    self.stats.done += 1
                    self.stats.correct += bool(s.correct)
                    self.stats.truncated += s.truncated
                elif s is not None and s.status == "rationale":
                    self._rationales[s.id] = s.rationale or ""
                    self._truncated[s.id] = s.rationale_finish == "length"
                    need_2.append((s.id, i))
                else:
                    need_1.append(i)
            if need_1 or need_2:
                plan.append((q, need_1, need_2))
        self.stats.done_at_start = self.stats.done
        return plan

    async def run(self, questions: list[Example]) -> RunStats:
        """Generate every missing sample of `questions`; return the run's stats."""
        plan = self.plan(questions)
        self._slots = asyncio.Semaphore(self.settings.concurrency)
        self._pace = _Pace(self.settings.rpm)
        queue: asyncio.Queue = asyncio.Queue()
        for item in plan:
            queue.put_nowait(item)

        async def worker() -> None:
            while not queue.empty() and self._fatal is None:
                try:
                    await self._question(*queue.get_nowait())
                except _Stop:
                    if self.should_stop() and not self.stats.stopped:
                        self.stats.stopped = "cancelled"

        self.on_progress(self.stats)
        workers = min(len(plan), self.settings.concurrency) or 1
        results = await asyncio.gather(*(worker() for _ in range(workers)), return_exceptions=True)
        if self._fatal is not None:
            raise UserError(
                f"{self._fatal_what}: {self._fatal} (nothing was stored for the failed requests)"
            )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        self.on_progress(self.stats)
        return self.stats


def run_generation(
    store: Store,
    experiment: Experiment,
    teacher: Teacher,
    settings: GenerationSettings,
    questions: list[Example],
    answer: AnswerFormat,
    price: Price | None,
    on_progress: Callable[[RunStats], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> RunStats:
    """Run a generation to the end (or to the budget, or a cancel) and close the teacher."""

    async def main() -> RunStats:
        try:
            generator = Generator(
                store, experiment, teacher, settings, answer, price, on_progress, should_stop
            )
            return await generator.run(questions)
        finally:
            await teacher.aclose()

    return asyncio.run(main())
