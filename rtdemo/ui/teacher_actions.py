"""The Teacher tab's handlers: what a generation would cost, start, watch, cancel and resume it.

Plain functions `(ctx, owner, experiment_name, ...)` over the core (no Gradio) that raise
`UserError` for what a user can fix; `teacher_tab.py` lays out the tab and shows those as a "⚠️"
line. Generation runs as the `rtdemo generate` command in a background job
(`GenerationRequest` → `generation_plan`, as `rtdemo generate --background`), on exactly the
questions the experiment snapshotted (`--stored-questions`). An API key reaches the job through
its environment only (never argv, the store, a file or a log); a resume asks for it again. So do
credentials in the base URL (`http://user:secret@host/v1`): the estimate, the command line and the
job's records show the URL redacted (`http://***@host/v1`, `rtdemo.redaction`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rtdemo.errors import UserError
from rtdemo.generation.diversity import diversity
from rtdemo.generation.request import GenerationRequest, generation_plan, stored_questions
from rtdemo.generation.request import estimate_generation as estimate
from rtdemo.generation.run import GenerationSettings
from rtdemo.generation.samples import Sample, load_samples
from rtdemo.hosting.access import check_command
from rtdemo.hosting.credentials import for_user, user_job_env
from rtdemo.jobs.plan import JobPlan
from rtdemo.jobs.records import Job, flag_value
from rtdemo.jobs.runner import cancel_job, resume_job
from rtdemo.redaction import URL_ENV, hide_folder, redact_url
from rtdemo.teachers.spec import KEY_ENV, TeacherSpec
from rtdemo.ui.job_view import job_status
from rtdemo.ui.session import ACTIVE, AppContext, check_owner, cli_text, kept_upload
from rtdemo.workspace.store import Experiment, Store

KINDS = ["generate"]

# The newest samples, as a table of plain text (never Markdown or HTML: a teacher wrote it).
SAMPLE_COLUMNS = {
    "split": "str",
    "#": "number",
    "sample": "number",
    "status": "str",
    "correct": "bool",
    "prediction": "str",
    "rationale": "str",
    "teacher answer": "str",
    "error": "str",
}
NEWEST = 30  # samples shown while watching


@dataclass(frozen=True)
class TeacherChoice:
    """What the tab's controls describe: a teacher and how to sample it."""

    teacher: str = "builtin"
    base_url: str = ""
    model: str = ""
    mode: str = "chat"
    replay_file: str | None = None
    split: str = "train"
    samples: int = 1  # D
    temperature: float = 0.0
    max_tokens: int = 128
    concurrency: int = 8
    budget: float | None = None  # USD; None or 0 = no budget
    limit: int = 0  # the first N questions of the split; 0 = all

    def request(self, exp: Experiment, replay: Path | None = None) -> GenerationRequest:
        """The `GenerationRequest` of these settings on the experiment's stored questions."""
        if self.teacher in ("openai", "hf") and not self.model.strip():
            raise UserError("type the teacher's model name (a model id, or a folder for local)")
        if self.teacher == "replay" and replay is None:
            raise UserError("upload a completion file to replay (the paper's or an export)")
        teacher = TeacherSpec(
            kind=self.teacher,  # type: ignore[arg-type]
            base_url=self.base_url.strip() or None if self.teacher == "openai" else None,
            model=self.model.strip() or None if self.teacher in ("openai", "hf") else None,
            mode=self.mode,  # type: ignore[arg-type]
            replay_files=(replay,) if replay is not None else (),
        )
        settings = GenerationSettings(
            samples=int(self.samples),
            temperature=float(self.temperature),
            max_tokens=int(self.max_tokens),
            concurrency=int(self.concurrency),
            budget=float(self.budget) if self.budget else None,
        )
        # The snapshot's source flags only say how answers are read: nothing is reloaded.
        return GenerationRequest(
            experiment=exp.name,
            teacher=teacher,
            settings=settings,
            split=self.split,
            limit=int(self.limit) if self.limit else None,
            source_argv=tuple(exp.config.get("source_argv", [])),
        )

    def argv(self, exp: Experiment, replay: Path | None = None) -> list[str]:
        """The `rtdemo generate` arguments: no key, workspace or owner."""
        return self.request(exp, replay).argv()


def _secrets(choice: TeacherChoice, key: str | None) -> dict[str, str]:
    """The key for the job's environment: only an OpenAI-compatible teacher gets one."""
    return {KEY_ENV: key.strip()} if choice.teacher == "openai" and key and key.strip() else {}


def _command(argv: list[str], choice: TeacherChoice, workspace: Path) -> str:
    """The command line to show: the data folder as `$RTDEMO_HOME` (an uploaded replay file
    lives there), never the server's path."""
    lines = ["# --stored-questions: this experiment's snapshot; elsewhere use --task KEY instead"]
    if choice.teacher == "openai":
        lines.append(f"# the key comes from ${KEY_ENV} (there is no flag for it)")
    url = choice.base_url.strip()
    if choice.teacher == "openai" and url and redact_url(url) != url:
        lines.append(f"# the base URL's credentials (***) come from ${URL_ENV}: the whole URL")
    return "\n".join([*lines, hide_folder(cli_text(argv), workspace)])


def estimate_generation(
    ctx: AppContext, owner: str | None, experiment: str | None, choice: TeacherChoice, key: str = ""
) -> tuple[str, str]:
    """What a generation would request and cost (nothing is requested), and its command line."""
    owner = check_owner(owner)
    replay = Path(choice.replay_file) if choice.replay_file else None
    with ctx.store() as store:
        exp = ctx.experiment(store, owner, experiment)
        request = choice.request(exp, replay)
        check_command(request.argv())  # the server's own network and disk, if forbidden
        questions = stored_questions(store, exp, request.split, request.limit)
        label, est = estimate(store, exp, questions, request.teacher, request.settings)
    text = f"**Estimate** — teacher {label}: {est.describe()}"
    if choice.budget and est.cost_max is None:
        text += "\n\n⚠️ a budget needs a price for this model: add it to prices.yaml"
    return text, _command(request.argv(), choice, ctx.workspace)


def start_generation(
    ctx: AppContext,
    owner: str | None,
    experiment: str | None,
    choice: TeacherChoice,
    key: str = "",
    hub_token: str | None = None,
) -> tuple[str, str]:
    """Start the generation job; a status line and the equivalent command line.

    A local (`hf`) teacher given as a Hub id is fetched in the job with `hub_token`, the
    signed-in user's own token: on a shared app none else, never the server's
    (`rtdemo.hosting.credentials.for_user`)."""
    owner = check_owner(owner)
    with ctx.store() as store:
        exp = ctx.experiment(store, owner, experiment)
        count = store.count_questions(exp.id, choice.split)
    if choice.teacher == "openai" and not _secrets(choice, key):
        raise UserError(
            "type the API key of the OpenAI-compatible server (a local server "
            "without authentication accepts any non-empty value)"
        )
    questions = min(count, int(choice.limit)) if choice.limit else count
    ctx.quotas.check_samples(owner, questions, int(choice.samples))
    # Kept in the owner's folder: the job (and a resume) reads it after Gradio's copy is gone;
    # deleted again if the job does not start.
    with kept_upload(ctx, owner, choice.replay_file) as replay:
        request = choice.request(exp, replay)
        key = _secrets(choice, key).get(KEY_ENV)

        def plan(store: Store) -> JobPlan:
            return generation_plan(store, request, owner, api_key=key, app_key=True)

        try:
            job = ctx.start(owner, request.argv(), for_user(plan, hub_token), hub_token)
        except ValueError as err:  # an argument that looks like a secret (a key as a model)
            raise UserError(str(err)) from None
    message = (
        f"Started job {job.id}: {choice.samples} sample(s) × {questions} {choice.split} "
        "questions. It runs on the server: you may close this page and come back."
    )
    return message, _command(request.argv(), choice, ctx.workspace)


def watch_generation(
    ctx: AppContext, owner: str | None, experiment: str | None
) -> tuple[Job | None, tuple[str, float, str, list[list[Any]]]]:
    """The newest generation job (None: none yet) and what the tab shows of it: status line
    (with the diversity of the job's split when it has D > 1 samples at T > 0), progress, log
    tail and newest samples."""
    if not owner or not experiment:
        return None, ("No experiment selected.", 0.0, "", [])
    with ctx.store() as store:
        exp = ctx.experiment(store, owner, experiment)
        job = ctx.latest_job(store, owner, exp, KINDS)
        samples = load_samples(store, exp.id, split=_job_split(job)) if job is not None else []
    status, fraction, log = job_status(job)
    return job, (status + diversity_note(samples), fraction, log, _newest(samples))


def _job_split(job: Job) -> str:
    argv = job.argv
    return argv[argv.index("--split") + 1] if "--split" in argv[:-1] else "train"


def diversity_note(samples: list[Sample]) -> str:
    """Markdown for the status: distinct rationales per question when questions have D > 1
    samples at T > 0, and a warning when all of them came back identical ("" otherwise). Only
    counts: no text a teacher wrote."""
    spread = diversity(samples)
    if not spread.sampled:
        return ""
    note = f"\n\n**Diversity** ({samples[0].split} split): {spread.describe()}"
    if warning := spread.warning():
        note += f"\n\n⚠️ {warning}"
    return note


def _newest(samples: list[Sample]) -> list[list[Any]]:
    """The newest samples; teacher text stays plain text in a table."""
    samples = sorted(samples, key=lambda s: -s.id)
    return [
        [
            s.split,
            s.idx,
            s.sample_index,
            s.status,
            s.correct,
            s.prediction or "",
            s.rationale or "",
            s.answer_text or "",
            s.error or "",
        ]
        for s in samples[:NEWEST]
    ]


def generation_status(
    ctx: AppContext, owner: str | None, experiment: str | None
) -> tuple[str, float, str, list[list[Any]]]:
    """The experiment's newest generation job: status line, progress, log tail, newest samples."""
    return watch_generation(ctx, owner, experiment)[1]


def _latest(ctx: AppContext, owner: str | None, experiment: str | None) -> Job:
    owner = check_owner(owner)
    with ctx.store() as store:
        exp = ctx.experiment(store, owner, experiment)
        job = ctx.latest_job(store, owner, exp, KINDS)
    if job is None:
        raise UserError(f"experiment {exp.name} has no generation job yet: press Start")
    return job


def cancel_generation(ctx: AppContext, owner: str | None, experiment: str | None) -> str:
    """Ask the experiment's running generation job to stop (what it stored is kept)."""
    job = _latest(ctx, owner, experiment)
    with ctx.store() as store:
        cancel_job(store, job.id, job.owner)
    return f"Cancel requested for job {job.id}: it stops after the requests in flight."


def resume_generation(
    ctx: AppContext,
    owner: str | None,
    experiment: str | None,
    key: str = "",
    base_url: str = "",
    hub_token: str | None = None,
) -> str:
    """Start the experiment's failed or cancelled generation job again, where it stopped.

    The key, and a base URL with credentials, are asked for again (never stored); a local
    teacher given as a Hub id is fetched with `hub_token`, as in `start_generation`."""
    job = _latest(ctx, owner, experiment)
    env = {KEY_ENV: key.strip()} if key and key.strip() and KEY_ENV in job.env_names else {}
    if KEY_ENV in job.env_names and not env:
        raise UserError(
            f"job {job.id} uses an OpenAI-compatible teacher: type the API key again (keys are "
            "never stored, not even for a resume), then press Resume"
        )
    if URL_ENV in job.env_names:
        shown, url = flag_value(job.argv, "--base-url"), (base_url or "").strip()
        if not url or redact_url(url) != shown:
            raise UserError(
                f"job {job.id}'s base URL {shown} has credentials, which are never stored: type "
                "the whole base URL again, then press Resume"
            )
        env[URL_ENV] = url
    with ctx.store() as store:
        if job.status not in ACTIVE:
            ctx.quotas.check_running(job.owner, len(ctx.active_jobs(store, job.owner)))
        resume_job(store, job.id, job.owner, env={**user_job_env(hub_token), **env})
    return f"Resumed job {job.id}: it continues where it stopped, nothing is requested twice."
