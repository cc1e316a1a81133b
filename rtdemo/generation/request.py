"""A generation run as one typed request: what `rtdemo generate --background`, the Teacher tab
and the Evaluate tab's "Evaluate the teacher" all start, and the estimate shown before it.

    request = GenerationRequest("letters", TeacherSpec("openai", model="gpt-4o-mini"),
                                GenerationSettings(samples=4, temperature=0.7))
    label, est = estimate_generation(store, exp, questions, request.teacher, request.settings)
    job = start_plan(store, generation_plan(store, request, owner, api_key=key), owner)

A job always works on the questions the experiment snapshotted (`--stored-questions`): it never
reloads a source, so what was estimated is what runs. Keys are never part of a request or of a
job's command line: `generation_plan` puts the key in the job's environment only. Neither are
credentials in a base URL (`http://user:secret@host/v1`): the command line holds the redacted URL
(`http://***@host/v1`) and the job gets the whole one in `$RTDEMO_TEACHER_BASE_URL`
(`rtdemo.redaction`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rtdemo.errors import UserError
from rtdemo.generation.pricing import Estimate, Price, estimate, price_of, price_table
from rtdemo.generation.run import GenerationSettings
from rtdemo.generation.samples import SampleKey, load_samples
from rtdemo.jobs.plan import JobPlan, opt, scope_argv
from rtdemo.redaction import URL_ENV, has_hidden_parts, redact_url
from rtdemo.tasks.types import Example
from rtdemo.teachers.base import Teacher
from rtdemo.teachers.spec import KEY_ENV, TeacherSpec, build_teacher
from rtdemo.workspace.store import Experiment, Store

_DEFAULT_SPEC = TeacherSpec()
#: The flags `GenerationRequest.argv` writes with a value (`from_argv` reads them back).
_READ_BACK = (
    "--experiment", "--split", "--teacher", "--base-url", "--model", "--mode", "--replay-file",
    "--error-rate", "--timeout", "--samples", "--temperature", "--max-tokens", "--concurrency",
    "--rpm", "--budget", "--max-attempts", "--retry-deadline", "--limit", "--prices",
)  # fmt: skip
_DEFAULT_SETTINGS = GenerationSettings()


@dataclass(frozen=True)
class GenerationRequest:
    """Rationales for an experiment's stored questions of one split, from one teacher."""

    experiment: str
    teacher: TeacherSpec = field(default_factory=TeacherSpec)
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    split: str = "train"
    limit: int | None = None  # the first N questions of the split
    source_argv: tuple[str, ...] = ()  # the snapshot's source flags (how answers are read)
    prices: Path | None = None  # a price table of the user's

    def argv(self) -> list[str]:
        """The `rtdemo generate` command line of this request (no workspace, owner, key or
        credentials: the base URL is redacted)."""
        t, s = self.teacher, self.settings
        argv = ["generate", *opt("--experiment", self.experiment), "--stored-questions"]
        argv += [*self.source_argv, *opt("--split", self.split), *opt("--teacher", t.kind)]
        if t.kind == "openai" and t.base_url:
            argv += opt("--base-url", redact_url(t.base_url))
        if t.kind in ("openai", "hf") and t.model:
            argv += opt("--model", t.model)
        if t.kind == "openai":
            argv += opt("--mode", t.mode)
        for path in t.replay_files:  # absolute: the job may be resumed from another folder
            argv += opt("--replay-file", Path(path).expanduser().resolve())
        if t.kind == "builtin" and t.error_rate != _DEFAULT_SPEC.error_rate:
            argv += opt("--error-rate", float(t.error_rate))
        if t.timeout != _DEFAULT_SPEC.timeout:
            argv += opt("--timeout", float(t.timeout))
        argv += [*opt("--samples", s.samples), *opt("--temperature", float(s.temperature))]
        argv += [*opt("--max-tokens", s.max_tokens), *opt("--concurrency", s.concurrency)]
        if s.rpm is not None:
            argv += opt("--rpm", float(s.rpm))
        if s.budget is not None:
            argv += opt("--budget", float(s.budget))
        if s.max_attempts != _DEFAULT_SETTINGS.max_attempts:
            argv += opt("--max-attempts", s.max_attempts)
        if s.retry_deadline != _DEFAULT_SETTINGS.retry_deadline:
            argv += opt("--retry-deadline", float(s.retry_deadline))
        if self.limit is not None:
            argv += opt("--limit", self.limit)
        if self.prices is not None:
            argv += opt("--prices", Path(self.prices).expanduser().resolve())
        return argv

    @classmethod
    def from_argv(cls, argv: list[str]) -> GenerationRequest:
        """The request a generation job's command line describes (`argv()` read back; a job
        started from an older command line keeps its other flags as source flags)."""
        values: dict[str, list[str]] = {}
        source: list[str] = []
        tokens: list[str] = []
        for token in argv[1:]:  # argv[0] is "generate"
            if token.startswith("--") and "=" in token:
                tokens += token.split("=", 1)
            elif token != "--stored-questions":
                tokens.append(token)
        for flag, value in zip(tokens[::2], tokens[1::2], strict=False):
            if flag in _READ_BACK:
                values.setdefault(flag, []).append(value)
            elif flag not in ("--workspace", "--owner", "--job-id", "--task"):
                source += [flag, value]

        def one(flag: str, cast=str, default=None):
            return cast(values[flag][-1]) if flag in values else default

        spec, gen = _DEFAULT_SPEC, _DEFAULT_SETTINGS
        teacher = TeacherSpec(
            kind=one("--teacher", default=spec.kind),
            model=one("--model"),
            base_url=one("--base-url"),
            mode=one("--mode", default=spec.mode),
            error_rate=one("--error-rate", float, spec.error_rate),
            replay_files=tuple(Path(p) for p in values.get("--replay-file", [])),
            timeout=one("--timeout", float, spec.timeout),
        )
        settings = GenerationSettings(
            samples=one("--samples", int, gen.samples),
            temperature=one("--temperature", float, gen.temperature),
            max_tokens=one("--max-tokens", int, gen.max_tokens),
            concurrency=one("--concurrency", int, gen.concurrency),
            rpm=one("--rpm", float),
            budget=one("--budget", float),
            max_attempts=one("--max-attempts", int, gen.max_attempts),
            retry_deadline=one("--retry-deadline", float, gen.retry_deadline),
        )
        return cls(
            experiment=one("--experiment", default=""),
            teacher=teacher,
            settings=settings,
            split=one("--split", default="train"),
            limit=one("--limit", int),
            source_argv=tuple(source),
            prices=one("--prices", Path),
        )


def _plan_counts(
    store: Store, exp: Experiment, key: SampleKey, questions: list[Example], d: int
) -> tuple[list[int], list[int]]:
    stored = {(s.split, s.idx, s.sample_index): s.status for s in load_samples(store, exp.id, key)}
    missing, half = [], []
    for q in questions:
        states = [stored.get((q.split, q.index, i)) for i in range(d)]
        missing.append(sum(1 for st in states if st in (None, "failed")))
        half.append(sum(1 for st in states if st == "rationale"))
    return missing, half


def plan_estimate(
    store: Store,
    exp: Experiment,
    teacher: Teacher,
    settings: GenerationSettings,
    questions: list[Example],
    price: Price | None,
) -> Estimate:
    """What generating the missing samples of `questions` would request and cost."""
    key = SampleKey.of(teacher.info, settings.temperature, settings.max_tokens)
    missing, half = _plan_counts(store, exp, key, questions, settings.samples)
    return estimate(
        [q.question for q in questions],
        missing,
        half,
        max_tokens=settings.max_tokens,
        supports_n=teacher.supports_n,
        price=price,
    )


def estimate_generation(
    store: Store,
    exp: Experiment,
    questions: list[Example],
    spec: TeacherSpec,
    settings: GenerationSettings,
    prices: Path | None = None,
) -> tuple[str, Estimate]:
    """The teacher's label and what generating for `questions` would request and cost (no key
    needed: nothing is requested)."""
    teacher = build_teacher(spec, exp.task, need_key=False)
    price = price_of(teacher.info, price_table(store.workspace, prices))
    est = plan_estimate(store, exp, teacher, settings, questions, price)
    return teacher.info.label or teacher.info.model, est


def stored_questions(store: Store, exp: Experiment, split: str, limit: int | None) -> list[Example]:
    """The experiment's snapshotted questions of `split` (the first `limit`), or a `UserError`."""
    questions = store.questions(exp.id, split)
    questions = questions[:limit] if limit is not None else questions
    if not questions:
        raise UserError(f"experiment {exp.name} has no {split} questions")
    return questions


def generation_plan(
    store: Store,
    request: GenerationRequest,
    owner: str,
    *,
    api_key: str | None = None,
    app_key: bool = False,
) -> JobPlan:
    """The background job of `request`, validated (a `UserError` before any job exists).

    `api_key`: an OpenAI-compatible teacher's key, for the job's environment only; `app_key`:
    it came from an app user, so a missing one is an error (see `build_teacher`). A base URL with
    credentials goes to the job's environment too (`URL_ENV`); its command line has it redacted.
    """
    exp = store.get_experiment(request.experiment, owner=owner)
    stored_questions(store, exp, request.split, request.limit)
    if request.teacher.base_url and has_hidden_parts(request.teacher.base_url):
        raise UserError(
            f"the teacher's base URL {request.teacher.base_url} has credentials, which are never "
            "stored: start this teacher from the Teacher tab with the whole base URL typed again "
            "(on the test split: 1 sample, temperature 0)"
        )
    teacher = build_teacher(request.teacher, exp.task, api_key=api_key, app_key=app_key)
    if (
        request.settings.budget is not None
        and price_of(teacher.info, price_table(store.workspace, request.prices)) is None
    ):
        raise UserError(
            f"a budget needs a price for model {teacher.info.model!r}: add it to prices.yaml "
            "(or pass --prices FILE)"
        )
    env_names = [KEY_ENV] if request.teacher.kind == "openai" else []
    env = {KEY_ENV: api_key} if api_key and env_names else {}
    url = request.teacher.base_url
    if env_names and url and redact_url(url) != url:  # credentials: never in the command line
        env_names.append(URL_ENV)
        env[URL_ENV] = url
    argv = scope_argv(request.argv(), store, owner)
    return JobPlan("generate", argv, exp.id, env=env, env_names=env_names)
