"""The Chat tab's handlers: ask the teacher and a student the same question, side by side; pick a
test question at random; vote on the exchange; list and export the votes.

Plain functions `(ctx, owner, experiment_name, ...)` over the core (`rtdemo.chat.session`,
`rtdemo.chat.student`, `rtdemo.chat.votes`; no Gradio) that raise `UserError` for what a user can
fix; `chat_tab.py` lays out the tab and wires them; `chat_view.py` says what the tab shows of an
exchange (model text as plain strings; what goes into Markdown escaped first).

The teachers: the built-in one (offline, Coin Flip and Last Letter Concatenation), an
OpenAI-compatible server (the user's key), or a local model run in the app process (`hf`: a
prepared registry name such as `smollm2-135m`, the default once it is prepared here, a Hub id, or a
model folder where local access is allowed), loaded once and kept (`rtdemo.chat.teacher`). On a
shared app a Hub id typed as the student or the local teacher is measured before anything of it is
downloaded, and refused when larger than the host allows (`rtdemo.hosting.access.check_model_size`).

The queue rule: on a machine without a GPU a model that runs in the app process (the student, and
a local-model teacher) does not generate while a torch job (training or evaluation, anyone's) runs
there; it waits, says which job it waits for, and starts when that job ends. The built-in and API
teachers answer meanwhile. A side waits at most `student_wait_s()` seconds (`RTDEMO_CHAT_WAIT_S`,
default 60; 0: it says "busy" at once); then it answers "busy: ask again when job N has finished",
so that an exchange never holds its place for the length of a training run. Waiting takes nothing
from anyone: every exchange runs on its own (the tab allows `max_chats()` at once,
`RTDEMO_MAX_CHATS`, default 8; 0: no limit), and only generation itself is one at a time per model
(the student's: `rtdemo.chat.student`, a lock held while it generates; a local teacher's: its own
lock), so an exchange's local teacher and student may generate side by side.
"""

from __future__ import annotations

import random
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from rtdemo.chat import student as chat_student
from rtdemo.chat.session import TEACHER_MAX_TOKENS, Side, chat_exchange, teacher_side
from rtdemo.chat.student import STUDENT_MAX_NEW_TOKENS, StudentSpec, student_side
from rtdemo.chat.teacher import LOCAL_TEACHERS, KeptTeacher
from rtdemo.chat.votes import VOTES, list_votes, save_vote, write_votes_jsonl
from rtdemo.envvars import env_number
from rtdemo.errors import UserError
from rtdemo.hosting.access import (
    check_model_name,
    check_model_size,
    check_public_url,
    looks_like_path,
)
from rtdemo.hosting.credentials import user_token
from rtdemo.jobs.records import Job
from rtdemo.jobs.runner import refresh_stale, running_torch_job
from rtdemo.models import is_registry_name, prepared
from rtdemo.students.loading import student_kind
from rtdemo.tasks import get_task
from rtdemo.tasks.types import Example
from rtdemo.teachers.base import Teacher
from rtdemo.teachers.spec import BUILTIN_TASKS, TeacherSpec
from rtdemo.teachers.spec import build_teacher as build
from rtdemo.training.runs import list_runs
from rtdemo.ui.chat_view import ChatView, view_of
from rtdemo.ui.model_notes import LOCAL_MODEL, default_local_model, how_to_prepare
from rtdemo.ui.session import AppContext, check_owner
from rtdemo.workspace.store import Experiment, Store

TEACHERS = {"built-in (offline)": "builtin", "OpenAI-compatible": "openai", "Local model": "hf"}
FORMAT_NAMES = {"cot": "Fine-tune-CoT", "vanilla": "vanilla baseline"}
VOTE_COLUMNS = ["#", "time", "vote", "question", "gold", "teacher ✓", "student ✓", "student"]
_JOB_NAMES = {"train": "training", "evaluate": "evaluation", "generate": "generation"}
MAX_CHATS_ENV, DEFAULT_MAX_CHATS = "RTDEMO_MAX_CHATS", 8
CHAT_WAIT_ENV, DEFAULT_CHAT_WAIT_S = "RTDEMO_CHAT_WAIT_S", 60.0


@dataclass(frozen=True)
class ChatForm:
    """The tab's settings (no key: it travels beside the form, never into a record)."""

    teacher: str = "builtin"  # "builtin", "openai" or "hf" (a local model)
    base_url: str = ""
    model: str = ""  # openai: as the server knows it; hf: "" is `default_local_model()`
    mode: str = "chat"
    temperature: float = 0.0
    teacher_max_tokens: int = TEACHER_MAX_TOKENS
    student: str = ""  # a trained run, a model folder or a Hub id; "" = the newest trained run
    student_max_tokens: int = STUDENT_MAX_NEW_TOKENS

    @classmethod
    def of(cls, *values: Any, **named: Any) -> ChatForm:
        """The form from the components' values, by field name or in field order (Gradio numbers
        come as floats; the teacher may come as its label)."""
        form = cls(*values, **named)
        teacher = TEACHERS.get(form.teacher, form.teacher or "builtin")
        if teacher not in TEACHERS.values():
            raise UserError(f"the chat teacher is one of {', '.join(TEACHERS)}")
        checked = cls(
            teacher=teacher,
            base_url=(form.base_url or "").strip(),
            model=(form.model or "").strip(),
            mode=form.mode or "chat",
            temperature=float(form.temperature or 0.0),
            teacher_max_tokens=int(form.teacher_max_tokens or TEACHER_MAX_TOKENS),
            student=(form.student or "").strip(),
            student_max_tokens=int(form.student_max_tokens or STUDENT_MAX_NEW_TOKENS),
        )
        # Bounded before anything runs: a chat holds the CPU (and a teacher's bill) while it lasts.
        _within("the teacher's max tokens", checked.teacher_max_tokens, 1, MAX_CHAT_TOKENS)
        _within("the student's max tokens", checked.student_max_tokens, 1, MAX_CHAT_TOKENS)
        _within("the teacher's temperature", checked.temperature, 0.0, 2.0)
        return checked


MAX_CHAT_TOKENS = 1024  # per side and turn, for the teacher's calls and the student's answer
MAX_QUESTION_CHARS = 4000  # a chat question (the longest paper question is under 2,000)


def _within(what: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise UserError(f"{what} must be between {low:g} and {high:g}, not {value:g}")


# -- choices ----------------------------------------------------------------------------------


def student_choices(ctx: AppContext, owner: str | None, experiment: str | None) -> list[str]:
    """The experiment's trained student runs, newest first."""
    if not owner or not experiment:
        return []
    with ctx.store() as store:
        exp = ctx.experiment(store, owner, experiment)
        return [r.name for r in reversed(list_runs(store, exp)) if r.status == "trained"]


def resolve_student(
    store: Store, exp: Experiment, name: str, token: str | bool | None = None
) -> StudentSpec:
    """The student `name` stands for: a trained run of the experiment, else a model folder or a
    Hub id (read like a Fine-tune-CoT student, its config fetched with the Hub token `token`);
    "" is the newest trained run. On a shared app a Hub id's size is checked first
    (`check_model_size`: nothing is downloaded for a model the host's limit refuses)."""
    trained = [r for r in reversed(list_runs(store, exp)) if r.status == "trained"]
    if not name:
        if not trained:
            raise UserError(
                f"experiment {exp.name} has no trained student yet: train one in the Train tab, "
                "or type a model folder or Hub id as the Student"
            )
        name = trained[0].name
    for run in trained:
        if run.name == name:
            # A label for people (and the exported votes): the base model by its name, never
            # a folder on the server.
            base = Path(run.student).name if looks_like_path(run.student) else run.student
            label = f"run {run.name} ({FORMAT_NAMES.get(run.format, run.format)}, {base})"
            return StudentSpec(str(run.output_dir / "final"), run.format, label)
    check_model_name(name, "student (or pick one of your trained runs)")
    check_model_size(name, token, "student")

    # A missing folder or an unreachable Hub id: a message that says so.
    student_kind(name, token=token)
    return StudentSpec(name, "cot", f"{name} (not trained here: read as Fine-tune-CoT)")


def local_teacher_name(form: ChatForm) -> str:
    """The local model a chat's `hf` teacher is: the typed one, else `smollm2-135m` once prepared;
    checked as every model a user names is (on a shared app no folder of the server), and a
    registry name that is not prepared here says how to prepare it."""
    name = form.model or default_local_model()
    if not name:
        raise UserError(
            "type the local teacher model (a Hugging Face Hub id, or a model folder on your own "
            f"machine), or prepare {LOCAL_MODEL}: {how_to_prepare(LOCAL_MODEL)}"
        )
    if is_registry_name(name) and prepared(name) is None:
        raise UserError(
            f"the local teacher {name!r} is not prepared on this server: {how_to_prepare(name)}; "
            "or choose another teacher"
        )
    check_model_name(name, "local teacher model")
    return name


def build_teacher(
    form: ChatForm, task: str, key: str = "", token: str | bool | None = None
) -> Teacher:
    """The chat's teacher, built the way `rtdemo generate` builds it (the key stays in memory);
    a local model (`hf`) is the one kept in this process (`rtdemo.chat.teacher`), a Hub id
    fetched with the Hub token `token` (`rtdemo.hosting.credentials.user_token`) once its size
    is checked (on a shared app, `check_model_size`)."""
    if form.teacher == "hf":
        name = local_teacher_name(form)
        check_model_size(name, token, "local teacher model")
        return LOCAL_TEACHERS.get(name, token)
    if form.teacher == "openai" and form.base_url:
        check_public_url(form.base_url)  # the server's own network, if the host forbids it
    if form.teacher == "builtin" and task not in BUILTIN_TASKS:
        raise UserError(
            "the built-in offline teacher only answers Coin Flip and Last Letter Concatenation "
            f"questions: for {task} choose the OpenAI-compatible teacher or a local model"
        )
    if form.teacher == "openai" and not form.model:
        raise UserError("type the teacher's model name (as the server knows it)")
    if form.teacher == "openai" and not (key and key.strip()):
        raise UserError(
            "type the API key of the OpenAI-compatible server (a local server without "
            "authentication accepts any non-empty value); it is kept in this page only"
        )
    spec = TeacherSpec(
        kind=form.teacher, base_url=form.base_url or None, model=form.model or None, mode=form.mode
    )
    return build(spec, task, api_key=(key or "").strip() or None, app_key=True)


def find_example(store: Store, exp: Experiment, question: str) -> Example | None:
    """The experiment's question with exactly this text (test split first), or None."""
    text = question.strip()
    for split in ("test", "train"):
        for example in store.questions(exp.id, split):
            if example.question.strip() == text:
                return example
    return None


def random_test_question(
    ctx: AppContext, owner: str | None, experiment: str | None, rng: random.Random | None = None
) -> str:
    """One of the experiment's test questions, at random."""
    with ctx.store() as store:
        exp = ctx.experiment(store, check_owner(owner), experiment)
        questions = store.questions(exp.id, "test")
    if not questions:
        raise UserError(f"experiment {exp.name} has no test questions")
    return (rng or random).choice(questions).question


def _env_number(env: Mapping[str, str] | None, name: str, default: float) -> float:
    return env_number(env, name, default)


def max_chats(env: Mapping[str, str] | None = None) -> int | None:
    """How many exchanges the app runs at once, all visitors together (`RTDEMO_MAX_CHATS`,
    default 8); None: no limit. Each holds a few threads, never the torch slot."""
    return int(_env_number(env, MAX_CHATS_ENV, DEFAULT_MAX_CHATS)) or None


def student_wait_s(env: Mapping[str, str] | None = None) -> float:
    """How long a student waits for a running torch job before it answers "busy"
    (`RTDEMO_CHAT_WAIT_S`, default 60)."""
    return _env_number(env, CHAT_WAIT_ENV, DEFAULT_CHAT_WAIT_S)


def torch_job_in_the_way(ctx: AppContext) -> Job | None:
    """The torch job (training, evaluation, a local-model teacher's generation; of anyone)
    running here that a student must not generate beside: only on a machine without a GPU."""
    import torch

    if torch.cuda.is_available():
        return None
    with ctx.store() as store:
        refresh_stale(store)  # a job that died is not waited for
        return running_torch_job(store)


def torch_job_waiting(ctx: AppContext, who: str = "student") -> str | None:
    """Why the student (or a local teacher, `who`) must wait: `torch_job_in_the_way`, said;
    None when it may generate."""
    job = torch_job_in_the_way(ctx)
    if job is None:
        return None
    name = _JOB_NAMES.get(job.kind, job.kind)
    return (
        f"waiting for {name} job {job.id} to finish… (on this CPU machine "
        f"the {who} answers after it: two torch workloads would slow each other down)"
    )


def busy_note(job: Job, who: str = "student", alone: bool = True) -> str:
    """What a student (or a local teacher, `who`) says when it has waited long enough for `job`;
    `alone`: the other side does not wait for torch jobs (an API or the built-in teacher)."""
    name = _JOB_NAMES.get(job.kind, job.kind)
    unheld = "; the teacher is not held up" if who == "student" and alone else ""
    return (
        f"busy: {name} job {job.id} is using this CPU machine (a {who} beside it would slow "
        f"both down). Ask again (🔄 Regenerate) when it has finished{unheld}"
    )


def local_teacher_side(
    ctx: AppContext, teacher: KeptTeacher, sides: Iterator[Side], stop: threading.Event
) -> Iterator[Side]:
    """A local teacher's `sides` (`teacher_side`), started once no torch job is in the way (the
    queue rule, as for the student: waiting, with the reason as its note, looked at again every
    `rtdemo.chat.student.WAIT_POLL_S` seconds) and its model is loaded (one load at a time with
    the students', `KeptTeacher.load`; a model that cannot be loaded ends the side with why)."""
    label = teacher.info.label
    try:
        while reason := torch_job_waiting(ctx, "local teacher"):
            yield Side(label, "waiting", note=reason)
            if stop.wait(chat_student.WAIT_POLL_S):
                return
        if not teacher.loaded:
            yield Side(label, "running", note="loading the local model…")
            try:
                teacher.load()
            except UserError as err:
                yield Side(label, "error", note=str(err))
                return
            except (RuntimeError, OSError, ValueError) as err:
                note = f"the local teacher failed to load: {type(err).__name__}: {err}"
                yield Side(label, "error", note=note)
                return
        yield from sides
    finally:
        close = getattr(sides, "close", None)
        if close is not None:
            close()  # a stop while it writes: its generation ends at the next token


def waiting_at_most(
    ctx: AppContext,
    sides: Iterator[Side],
    wait_s: float,
    stop: threading.Event,
    who: str = "student",
    alone: bool = True,
) -> Iterator[Side]:
    """The student's (or local teacher's, `who`) `sides`, except that once it has waited `wait_s`
    seconds for a torch job (its status "waiting", with a note), it answers `busy_note` instead
    (`alone`: as there) and stops waiting; one stopped while it waits says so (not what it waited
    for)."""
    since: float | None = None
    side: Side | None = None
    try:
        for side in sides:
            if side.status == "waiting" and side.note:
                since = time.monotonic() if since is None else since
                if time.monotonic() - since >= wait_s and not stop.is_set():
                    job = torch_job_in_the_way(ctx)
                    if job is not None:
                        yield replace(side, status="error", note=busy_note(job, who, alone))
                        return
            yield side
        if side is not None and side.status == "waiting" and stop.is_set():
            yield replace(side, status="error", note="stopped before it answered")
    finally:
        close = getattr(sides, "close", None)
        if close is not None:
            close()


# -- the exchange ------------------------------------------------------------------------------


def chat(
    ctx: AppContext,
    owner: str | None,
    experiment: str | None,
    question: str,
    form: ChatForm,
    key: str = "",
    stop: threading.Event | None = None,
    hub_token: str | None = None,
) -> Iterator[ChatView]:
    """Ask the teacher and the student `question`; the view each time either side moved.

    Settings are checked before anything runs (a `UserError`). The last view holds the exchange's
    record (no key in it), which a vote is saved with. A student given as a Hub id is fetched
    with `hub_token`, the signed-in user's own token (None: on a shared app, no token; on one
    person's own machine, that machine's, `rtdemo.hosting.credentials.user_token`)."""
    owner = check_owner(owner)
    token = user_token(hub_token)
    question = (question or "").strip()
    if not question:
        raise UserError("type a question, or press 🎲 for a random test question")
    if len(question) > MAX_QUESTION_CHARS:
        raise UserError(
            f"the question is {len(question):,} characters long: this chat takes at most "
            f"{MAX_QUESTION_CHARS:,}"
        )
    with ctx.store() as store:
        exp = ctx.experiment(store, owner, experiment)
        spec = resolve_student(store, exp, form.student, token)
        example = find_example(store, exp, question)
    teacher = build_teacher(form, exp.task, key, token)
    stop = stop or threading.Event()
    settings = {
        "teacher": {
            "kind": teacher.info.kind,
            "model": teacher.info.model,
            "base_url": teacher.info.base_url,
            "mode": form.mode if form.teacher == "openai" else "",
            "temperature": form.temperature,
            "max_tokens": form.teacher_max_tokens,
        },
        "student": {
            "name": spec.label,  # a trained run by its name: never its folder on the server
            "format": spec.format,
            "decoding": "greedy",
            "max_new_tokens": form.student_max_tokens,
        },
    }
    teacher_sides = teacher_side(
        teacher,
        question,
        stop=stop,
        temperature=form.temperature,
        max_tokens=form.teacher_max_tokens,
    )
    local = isinstance(teacher, KeptTeacher)  # a model in this process: the queue rule applies
    if local:
        teacher_sides = waiting_at_most(
            ctx,
            local_teacher_side(ctx, teacher, teacher_sides, stop),
            student_wait_s(),
            stop,
            who="local teacher",
        )
    exchange = chat_exchange(
        question,
        teacher_sides,
        waiting_at_most(
            ctx,
            student_side(
                spec,
                question,
                stop=stop,
                max_new_tokens=form.student_max_tokens,
                busy=lambda: torch_job_waiting(ctx),
                token=token,
            ),
            student_wait_s(),
            stop,
            alone=not local,
        ),
        answer=get_task(exp.task).answer,
        student_format=spec.format,
        example=example,
        settings=settings,
        stop=stop,
        labels=(teacher.info.label or teacher.info.model, spec.label),
    )
    try:
        for state in exchange:
            yield view_of(state, exp.name)
    finally:
        stop.set()
        exchange.close()


# -- votes -------------------------------------------------------------------------------------


def vote(
    ctx: AppContext,
    owner: str | None,
    exchange: dict[str, Any] | None,
    choice: str,
) -> tuple[str, dict[str, Any] | None]:
    """Save the vote `choice` (left, right, tie, both_bad) on the last finished exchange; a
    status line and the exchange, now marked as voted on (one vote per exchange)."""
    owner = check_owner(owner)
    if choice not in VOTES:
        raise UserError(f"a vote is one of {', '.join(VOTES)}, not {choice!r}")
    if not exchange:
        raise UserError("ask a question first: a vote is on an exchange both sides finished")
    if exchange.get("voted"):
        raise UserError(
            f"this exchange has a vote already (#{exchange['voted']}): ask another question"
        )
    record = {k: v for k, v in exchange.items() if k not in ("experiment", "voted")}
    with ctx.store() as store:
        exp = ctx.experiment(store, owner, exchange.get("experiment"))
        vote_id = save_vote(store, exp, owner, record, choice)
    return f"Vote #{vote_id} saved: {VOTES[choice]}.", {**exchange, "voted": vote_id}


def votes_table(ctx: AppContext, owner: str | None, experiment: str | None) -> pd.DataFrame:
    """The owner's votes on the experiment, newest first, as plain text cells."""
    rows: list[list[Any]] = []
    if owner and experiment:
        with ctx.store() as store:
            exp = ctx.experiment(store, owner, experiment)
            for v in list_votes(store, exp, owner):
                mark = {True: "✅", False: "❌", None: "—"}
                rows.append(
                    [
                        v.id,
                        v.created_at.replace("T", " ")[:19],
                        VOTES[v.vote],
                        v.question,
                        v.gold or "",
                        mark[v.teacher_correct],
                        mark[v.student_correct],
                        v.student,
                    ]
                )
    return pd.DataFrame(rows, columns=VOTE_COLUMNS)


def export_votes(ctx: AppContext, owner: str | None, experiment: str | None) -> tuple[Path, str]:
    """The owner's votes on the experiment as a JSONL file to download, and a status line."""
    owner = check_owner(owner)
    with ctx.store() as store:
        exp = ctx.experiment(store, owner, experiment)
        folder = Path(tempfile.mkdtemp(prefix="rtdemo-votes-"))
        path = folder / f"{exp.name}-chat-votes.jsonl"
        count = write_votes_jsonl(store, exp, owner, path)
    if not count:
        raise UserError(f"no votes on {exp.name} yet: ask a question, then vote")
    return path, f"Exported {count} vote(s) with their exchanges."
