"""Which teacher to build, as one typed value, and the one function that builds it.

The CLI (`rtdemo generate`/`estimate` flags), recipes (`teacher:`), the Teacher tab and Chat all
describe a teacher as a `TeacherSpec` and build it with `build_teacher`, so every teacher is
built one way.

Keys are never part of a spec: the caller passes the key it holds. The CLI reads it from the
environment (`OPENAI_API_KEY`); the app passes the key a user typed, and then `app_key=True`
makes a missing key an error instead of letting the client fall back to the server's own
environment (which every user of the app shares).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from rtdemo.errors import UserError
from rtdemo.teachers.base import Teacher
from rtdemo.validation import check_fields, setting, typed

TeacherKind = Literal["builtin", "openai", "hf", "replay"]
TEACHERS: tuple[str, ...] = TeacherKind.__args__  # type: ignore[attr-defined]
BUILTIN_TASKS = ("coin_flip", "last_letter_concatenation")
KEY_ENV = "OPENAI_API_KEY"


@typed
@dataclass(frozen=True)
class TeacherSpec:
    """A teacher: which kind, which model where, and how to reach it (never its key).

    Types, ranges and help texts are declared here once: the `rtdemo generate`/`estimate` flags
    and a recipe's `teacher:` are checked against them (`rtdemo.validation`).
    """

    kind: TeacherKind = setting(
        "builtin",
        "builtin (offline, coin_flip/last_letter only), openai (any OpenAI-compatible server), hf "
        "(local transformers model), replay",
    )
    model: str | None = setting(None, "teacher model name (openai) or Hub id / folder (hf)")
    base_url: str | None = setting(
        None,
        "OpenAI-compatible server, e.g. http://localhost:8000/v1 (default: OpenAI); the key comes "
        "from $OPENAI_API_KEY",
    )
    mode: Literal["chat", "completions"] = setting(
        "chat", "openai: chat emulation of the two calls (default) or raw /v1/completions"
    )
    error_rate: Annotated[float, Field(ge=0, le=1)] = setting(
        0.1, "builtin: share of samples with a deliberate mistake (default 0.1)"
    )
    replay_files: tuple[Path, ...] = setting(
        (),
        "replay: a completion file of the paper or an `rtdemo export --all` file (repeatable)",
    )
    timeout: Annotated[float, Field(gt=0)] = setting(60.0, "seconds per request (default 60)")

    def __post_init__(self) -> None:
        check_fields(self)


def build_teacher(
    spec: TeacherSpec,
    task: str,
    *,
    api_key: str | None = None,
    need_key: bool = True,
    app_key: bool = False,
) -> Teacher:
    """The teacher `spec` describes, for questions of `task`.

    `api_key` is the OpenAI-compatible server's key. `need_key=False` builds such a teacher
    without one, for estimates (which request nothing). `app_key=True`: the key came from an app
    user, and a missing one is an error (never the server's own).
    """
    if spec.kind == "builtin":
        if task not in BUILTIN_TASKS:
            raise UserError(
                f"the built-in offline teacher only knows {' and '.join(BUILTIN_TASKS)}; for "
                f"{task} choose --teacher openai (with --model) or --teacher hf"
            )
        from rtdemo.teachers.builtin import BuiltinTeacher

        return BuiltinTeacher(error_rate=spec.error_rate)
    if spec.kind == "replay":
        from rtdemo.teachers.replay import ReplayTeacher

        return ReplayTeacher(list(spec.replay_files))
    if not spec.model:
        raise UserError(f"--teacher {spec.kind} needs --model")
    if spec.kind == "hf":
        from rtdemo.teachers.local_hf import LocalHFTeacher

        return LocalHFTeacher(spec.model)
    from rtdemo.teachers.openai_compat import OpenAITeacher

    key = api_key or None
    if not key and not need_key:
        key = "no-key: estimates request nothing"
    elif not key and app_key:
        # OpenAITeacher would fall back to the server's own key: app users never get that one.
        raise UserError(
            "an OpenAI-compatible teacher needs an API key: type it in the API key box "
            "(a local server without authentication accepts any non-empty value)"
        )
    return OpenAITeacher(
        spec.model, base_url=spec.base_url, api_key=key, mode=spec.mode, timeout=spec.timeout
    )
