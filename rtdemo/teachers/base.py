"""One Teacher interface for every teacher: the two Zero-shot-CoT calls and streaming.

A teacher continues text. Call 1 continues the rationale prompt (`Q: {q}\\nA: Let's think step by
step.`) with `n` rationales at a temperature; call 2 continues the answer prompt (call-1 prompt +
rationale + `\\nTherefore, the answer is`) greedily. How a teacher does that (raw completions, chat
emulation, a local model, replayed files, the built-in offline teacher) is its own business.

Failures are `TeacherError`s with a `kind`; `retryable` ones (rate limits, 5xx, timeouts, dropped
connections) are retried by generation under one `RetryPolicy` (capped exponential backoff with
full jitter, `Retry-After` honoured, until a per-request deadline), the others (bad key, unknown
model, rejected parameter) stop a run with their message.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal

ErrorKind = Literal[
    "auth",  # wrong or missing key (401/403)
    "not_found",  # unknown model or endpoint (404)
    "bad_request",  # a parameter the server rejects (400/422), e.g. temperature on some models
    "rate_limit",  # 429: retry after `retry_after` seconds if given
    "server",  # 5xx
    "connection",  # refused, dropped, reset
    "timeout",
    "malformed",  # a reply we cannot read
    "unsupported",  # the teacher cannot answer this question at all (e.g. not in a replay file)
]
RETRYABLE: frozenset[str] = frozenset(
    {"rate_limit", "server", "connection", "timeout", "malformed"}
)


class TeacherError(Exception):
    """A teacher call failed; `kind` says how, `retry_after` is the server's hint in seconds."""

    def __init__(self, kind: ErrorKind, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        """Whether trying the same request again may succeed."""
        return self.kind in RETRYABLE


@dataclass(frozen=True)
class RetryPolicy:
    """When a request that failed with a retryable `TeacherError` is tried again, and how long
    after.

    A request is retried until `deadline` seconds have passed since its first try (the last
    wait ends at the deadline), or for `max_attempts` tries if that is set (None or 0: no cap).
    Between tries it waits a random time in [0, min(max_backoff, backoff * 2**(tries - 1))]
    ("full jitter": clients that failed together do not come back together), or the server's
    `Retry-After` if that is longer. A `Retry-After` that ends past the deadline ends the
    request at once with a reason that says so, rather than waiting for a try that could not
    start.
    """

    deadline: float = 300.0
    backoff: float = 1.0
    max_backoff: float = 60.0
    max_attempts: int | None = None

    def give_up(self, error: TeacherError, tries: int, elapsed: float) -> str | None:
        """Why a request that failed `tries` times, the last with `error`, `elapsed` seconds
        after its first try, is not tried again; None if it is."""
        if not error.retryable:
            return "not retryable"
        if self.max_attempts and tries >= self.max_attempts:
            return f"gave up after {tries} tries (max_attempts {self.max_attempts})"
        if elapsed >= self.deadline:
            return (
                f"gave up after {tries} tries in {elapsed:.1f} s "
                f"(retry deadline {self.deadline:g} s)"
            )
        if error.retry_after is not None and elapsed + error.retry_after > self.deadline:
            return (
                f"the server asked to wait {error.retry_after:g} s (Retry-After), past the "
                f"retry deadline of {self.deadline:g} s ({self.deadline - elapsed:.1f} s left)"
            )
        return None

    def wait(
        self, error: TeacherError, tries: int, elapsed: float, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait before the next try (call when `give_up` said None): the jittered
        backoff, at least the server's `Retry-After`, never past the deadline."""
        ceiling = min(self.max_backoff, self.backoff * 2 ** min(tries - 1, 64))
        wait = (rng or random).uniform(0.0, ceiling)
        if error.retry_after is not None:
            wait = max(wait, error.retry_after)
        return max(0.0, min(wait, self.deadline - elapsed))


@dataclass(frozen=True)
class Completion:
    """One continuation: its text, why it ended ("stop" or "length") and its token usage."""

    text: str
    finish_reason: str
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class TeacherInfo:
    """Who the teacher is: what identifies its samples, and a label for people."""

    kind: Literal["openai", "hf", "builtin", "replay"]
    model: str
    base_url: str = ""
    label: str = ""


class Teacher(ABC):
    """A reasoning teacher. Implementations hold no secrets beyond their own lifetime."""

    info: TeacherInfo
    #: whether `rationale(n=...)` gets n samples in one request (the OpenAI `n` parameter)
    supports_n: bool = False

    @abstractmethod
    async def rationale(
        self, prompt: str, *, n: int, temperature: float, max_tokens: int
    ) -> list[Completion]:
        """Call 1: `n` continuations of the rationale prompt at `temperature`."""

    async def rationales_for(
        self, prompt: str, indices: Sequence[int], *, temperature: float, max_tokens: int
    ) -> list[Completion]:
        """Call 1 for the given sample indices, in order.

        Most teachers sample independently and ignore the indices (one request with
        `n=len(indices)` where supported); replay and the built-in teacher are deterministic per
        index and override this (`IndexedTeacher`).
        """
        if self.supports_n or len(indices) == 1:
            return await self.rationale(
                prompt, n=len(indices), temperature=temperature, max_tokens=max_tokens
            )
        out: list[Completion] = []
        for _ in indices:
            out += await self.rationale(prompt, n=1, temperature=temperature, max_tokens=max_tokens)
        return out

    @abstractmethod
    async def answer(self, prompt: str, *, max_tokens: int) -> Completion:
        """Call 2: the greedy continuation of the answer prompt (the answer text)."""

    async def stream(
        self, prompt: str, *, temperature: float, max_tokens: int
    ) -> AsyncIterator[str]:
        """Stream a continuation of `prompt` as text pieces (default: one piece, not streamed)."""
        [completion] = await self.rationale(
            prompt, n=1, temperature=temperature, max_tokens=max_tokens
        )
        yield completion.text

    async def aclose(self) -> None:  # noqa: B027 — optional hook
        """Release connections; the default has none."""


class IndexedTeacher(Teacher):
    """A teacher whose rationale is a function of the sample index (replay, the built-in one):
    it implements `rationales_for`, and `rationale(n=...)` is samples 0..n-1."""

    supports_n = True

    @abstractmethod
    async def rationales_for(
        self, prompt: str, indices: Sequence[int], *, temperature: float, max_tokens: int
    ) -> list[Completion]:
        """Call 1 for the given sample indices, in order (the same index, the same rationale)."""

    async def rationale(
        self, prompt: str, *, n: int, temperature: float, max_tokens: int
    ) -> list[Completion]:
        """Call 1: `n` rationales (sample indices 0..n-1)."""
        return await self.rationales_for(
            prompt, range(n), temperature=temperature, max_tokens=max_tokens
        )


def rationale_prompt(question: str) -> str:
    """Call 1's prompt (METHOD.md): `Q: {q}\\nA: Let's think step by step.`"""
    return f"Q: {question.strip()}\nA: Let's think step by step."


def answer_prompt(rationale_prompt_text: str, rationale: str) -> str:
    """Call 2's prompt: call-1 prompt + rationale + `\\nTherefore, the answer is`."""
    return f"{rationale_prompt_text}{rationale}\nTherefore, the answer is"
