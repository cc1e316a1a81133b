"""Per-owner quotas for a shared app, set by whoever hosts it through environment variables.

    RTDEMO_MAX_RUNNING_JOBS      jobs one owner may have queued or running at once (default 2,
                                 so that "train both formats" fits; 0 = no limit)
    RTDEMO_VISITOR_MAX_SAMPLES   questions × D one generation may ask for (visitors only)
    RTDEMO_VISITOR_MAX_STEPS     optimizer steps one training run may take (visitors only)
    RTDEMO_VISITOR_MAX_QUESTIONS questions an experiment may snapshot per split (visitors only)

A *visitor* is an owner who is not logged in with Hugging Face (`owner_is_visitor`). On Spaces the
visitor caps default to 2,000 samples, 3,000 steps and 5,000 questions; elsewhere (one person on
their own machine) they default to no limit. `0` always means no limit.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from rtdemo.errors import UserError

LOGGED_IN_PREFIX = "hf:"  # owners logged in with Hugging Face: "hf:<username>"
SPACES_DEFAULTS = {"samples": 2000, "steps": 3000, "questions": 5000}


def on_spaces(env: Mapping[str, str] | None = None) -> bool:
    """Whether the app runs on Hugging Face Spaces (Spaces sets SYSTEM=spaces)."""
    return (os.environ if env is None else env).get("SYSTEM") == "spaces"


def owner_is_visitor(owner: str) -> bool:
    """Whether `owner` is an anonymous visitor rather than a logged-in Hugging Face user."""
    return not owner.startswith(LOGGED_IN_PREFIX)


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise UserError(f"{name}={raw!r} is not a whole number (0 means no limit)") from None
    if value < 0:
        raise UserError(f"{name} must be 0 (no limit) or more, not {value}")
    return value


@dataclass(frozen=True)
class Quotas:
    """Limits per owner; 0 means no limit."""

    max_running_jobs: int = 2
    visitor_max_samples: int = 0
    visitor_max_steps: int = 0
    visitor_max_questions: int = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Quotas:
        """The host's quotas from the environment (module docstring), with Spaces defaults."""
        env = os.environ if env is None else env
        spaces = on_spaces(env)
        pick = lambda key: SPACES_DEFAULTS[key] if spaces else 0  # noqa: E731
        return cls(
            max_running_jobs=_int(env, "RTDEMO_MAX_RUNNING_JOBS", 2),
            visitor_max_samples=_int(env, "RTDEMO_VISITOR_MAX_SAMPLES", pick("samples")),
            visitor_max_steps=_int(env, "RTDEMO_VISITOR_MAX_STEPS", pick("steps")),
            visitor_max_questions=_int(env, "RTDEMO_VISITOR_MAX_QUESTIONS", pick("questions")),
        )

    def check_running(self, owner: str, running: int) -> None:
        """Refuse a new job when `owner` already has `running` queued or running jobs."""
        if self.max_running_jobs and running >= self.max_running_jobs:
            raise UserError(
                f"you already have {running} job(s) queued or running (this app allows "
                f"{self.max_running_jobs} at a time): wait for it to finish or cancel it"
            )

    def _visitor_cap(self, owner: str, value: int, cap: int, what: str, advice: str) -> None:
        if cap and owner_is_visitor(owner) and value > cap:
            raise UserError(
                f"{what} is {value:,}, above this app's limit of {cap:,} for visitors who are "
                f"not logged in: {advice}, log in with Hugging Face, or run the app on your "
                "own machine"
            )

    def check_samples(self, owner: str, questions: int, samples: int) -> None:
        """Refuse a generation of `questions` × `samples` above the visitor cap."""
        self._visitor_cap(
            owner,
            questions * samples,
            self.visitor_max_samples,
            f"questions × samples ({questions:,} × {samples})",
            "use fewer questions or samples",
        )

    def check_steps(self, owner: str, steps: int) -> None:
        """Refuse a training run of `steps` optimizer steps above the visitor cap."""
        self._visitor_cap(
            owner, steps, self.visitor_max_steps, "the number of training steps", "use fewer steps"
        )

    def check_questions(self, owner: str, questions: int) -> None:
        """Refuse an experiment snapshot of `questions` per split above the visitor cap."""
        self._visitor_cap(
            owner,
            questions,
            self.visitor_max_questions,
            "the number of questions",
            "pick a smaller size or a limit",
        )
