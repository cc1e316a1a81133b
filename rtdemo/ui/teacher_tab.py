"""The Teacher tab: choose a teacher and its sampling, see the cost, start, watch, cancel, resume.

Generation runs as the `rtdemo generate` command in a background job (`AppContext.start_command`),
on exactly the questions the experiment snapshotted (`--stored-questions`). An API key is typed into
a password box: it lives in the browser session and reaches the job through its environment only
(never argv, the store, a file or a log); a resume asks for it again.

Handlers are plain functions `(ctx, owner, experiment_name, ...)` that raise `UserError`; the
wiring at the bottom shows those as a "⚠️" line in the tab.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from rtdemo.commands.generate import KEY_ENV, estimate_of
from rtdemo.errors import UserError
from rtdemo.jobs import Job, cancel_job, resume_job
from rtdemo.samples import load_samples
from rtdemo.store import Experiment
from rtdemo.tasks.types import SPLITS
from rtdemo.ui.job_view import job_status
from rtdemo.ui.session import ACTIVE, AppContext, check_owner, cli_text, keep_upload

KINDS = ["generate"]
TEACHERS = [
    ("Built-in offline teacher (coin flip, last letters)", "builtin"),
    ("OpenAI-compatible server", "openai"),
    ("Local model (transformers)", "hf"),
    ("Replay an uploaded completion file", "replay"),
]
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

    def argv(self, exp: Experiment, replay: Path | None = None) -> list[str]:
        """The `rtdemo generate` arguments: no key, workspace or owner (the session adds those)."""
        if self.teacher in ("openai", "hf") and not self.model.strip():
            raise UserError("type the teacher's model name (a model id, or a folder for local)")
        if self.teacher == "replay" and replay is None:
            raise UserError("upload a completion file to replay (the paper's or an export)")
        # The snapshot's source flags only say how answers are read: nothing is reloaded.
        argv = ["generate", "--experiment", exp.name, "--stored-questions"]
        argv += [*exp.config.get("source_argv", []), "--split", self.split]
        argv += ["--teacher", self.teacher]
        if self.teacher == "openai" and self.base_url.strip():
            argv += ["--base-url", self.base_url.strip()]
        if self.teacher in ("openai", "hf"):
            argv += ["--model", self.model.strip()]
        if self.teacher == "openai":
            argv += ["--mode", self.mode]
        if replay is not None:
            argv += ["--replay-file", str(replay)]
        argv += ["--samples", str(int(self.samples)), "--temperature", f"{self.temperature:g}"]
        argv += ["--max-tokens", str(int(self.max_tokens))]
        argv += ["--concurrency", str(int(self.concurrency))]
        if self.budget:
            argv += ["--budget", f"{self.budget:g}"]
        if self.limit:
            argv += ["--limit", str(int(self.limit))]
        return argv


def _secrets(choice: TeacherChoice, key: str | None) -> dict[str, str]:
    """The key for the job's environment: only an OpenAI-compatible teacher gets one."""
    return {KEY_ENV: key.strip()} if choice.teacher == "openai" and key and key.strip() else {}


def _command(argv: list[str], choice: TeacherChoice) -> str:
    lines = ["# --stored-questions: this experiment's snapshot; elsewhere use --task KEY instead"]
    if choice.teacher == "openai":
        lines.append(f"# the key comes from ${KEY_ENV} (there is no flag for it)")
    return "\n".join([*lines, cli_text(argv)])


def estimate_generation(
    ctx: AppContext, owner: str | None, experiment: str | None, choice: TeacherChoice, key: str = ""
) -> tuple[str, str]:
    """What a generation would request and cost (nothing is requested), and its command line."""
    owner = check_owner(owner)
    with ctx.store() as store:
        exp = ctx.experiment(store, owner, experiment)
    replay = Path(choice.replay_file) if choice.replay_file else None
    argv = choice.argv(exp, replay)
    from rtdemo.cli import build_parser

    args = build_parser().parse_args(
        ["estimate", *argv[1:], "--workspace", str(ctx.workspace), "--owner", owner]
    )
    args.secret_env = _secrets(choice, key)  # never the server's own key
    label, est = estimate_of(args, need_key=False)
    text = f"**Estimate** — teacher {label}: {est.describe()}"
    if choice.budget and est.cost_max is None:
        text += "\n\n⚠️ a budget needs a price for this model: add it to prices.yaml"
    return text, _command(argv, choice)


def start_generation(
    ctx: AppContext, owner: str | None, experiment: str | None, choice: TeacherChoice, key: str = ""
) -> tuple[str, str]:
    """Start the generation job; a status line and the equivalent command line."""
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
    # Kept in the owner's folder: the job (and a resume) reads it after Gradio's copy is gone.
    replay = keep_upload(ctx, owner, choice.replay_file) if choice.replay_file else None
    argv = choice.argv(exp, replay)
    try:
        job = ctx.start_command(owner, argv, secrets_env=_secrets(choice, key))
    except ValueError as err:  # an argument that looks like a secret (a key pasted as a model)
        raise UserError(str(err)) from None
    message = (
        f"Started job {job.id}: {choice.samples} sample(s) × {questions} {choice.split} "
        "questions. It runs on the server: you may close this page and come back."
    )
    return message, _command(argv, choice)


def _watch(
    ctx: AppContext, owner: str | None, experiment: str | None
) -> tuple[Job | None, tuple[str, float, str, list[list[Any]]]]:
    if not owner or not experiment:
        return None, ("No experiment selected.", 0.0, "", [])
    with ctx.store() as store:
        exp = ctx.experiment(store, owner, experiment)
        job = ctx.latest_job(store, owner, exp, KINDS)
        rows = _newest_samples(store, exp, job) if job is not None else []
    return job, (*job_status(job), rows)


def _job_split(job: Job) -> str:
    argv = job.argv
    return argv[argv.index("--split") + 1] if "--split" in argv[:-1] else "train"


def _newest_samples(store, exp: Experiment, job: Job) -> list[list[Any]]:
    """The newest samples of the job's split; teacher text stays plain text in a table."""
    samples = sorted(load_samples(store, exp.id, split=_job_split(job)), key=lambda s: -s.id)
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
    return _watch(ctx, owner, experiment)[1]


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
    ctx: AppContext, owner: str | None, experiment: str | None, key: str = ""
) -> str:
    """Start the experiment's failed or cancelled generation job again, where it stopped."""
    job = _latest(ctx, owner, experiment)
    env = {KEY_ENV: key.strip()} if key and key.strip() and KEY_ENV in job.env_names else {}
    if KEY_ENV in job.env_names and not env:
        raise UserError(
            f"job {job.id} uses an OpenAI-compatible teacher: type the API key again (keys are "
            "never stored, not even for a resume), then press Resume"
        )
    with ctx.store() as store:
        if job.status not in ACTIVE:
            ctx.quotas.check_running(job.owner, len(ctx.active_jobs(store, job.owner)))
        resume_job(store, job.id, job.owner, env=env)
    return f"Resumed job {job.id}: it continues where it stopped, nothing is requested twice."


# The wiring ---------------------------------------------------------------------------------


def _shown(fn: Callable[..., Any], blanks: int = 0) -> Callable[..., Any]:
    """`fn` with a `UserError` turned into a "⚠️" message (and `blanks` empty outputs after it)."""

    @functools.wraps(fn)  # Gradio names the API parameters after fn's signature
    def run(*args: Any) -> Any:
        try:
            return fn(*args)
        except UserError as err:
            return (f"⚠️ {err}", *[""] * blanks) if blanks else f"⚠️ {err}"

    return run


def _with_choice(ctx: AppContext, action: Callable[..., tuple[str, str]]) -> Callable[..., Any]:
    """`action(ctx, owner, experiment, TeacherChoice, key)` over the tab's inputs, by name."""

    def run(
        owner: str | None,
        experiment: str | None,
        teacher: str,
        base_url: str | None,
        model: str | None,
        mode: str | None,
        replay_file: str | None,
        split: str | None,
        samples: float | None,
        temperature: float | None,
        max_tokens: float | None,
        concurrency: float | None,
        budget: float | None,
        first_n: float | None,
        api_key: str | None,
    ) -> tuple[str, str]:
        number = lambda value, default: default if value is None else value  # noqa: E731
        choice = TeacherChoice(
            teacher,
            base_url or "",
            model or "",
            mode or "chat",
            replay_file or None,
            split or "train",
            int(number(samples, 1)),  # 0 stays 0: the command says what is wrong with it
            float(number(temperature, 0.0)),
            int(number(max_tokens, 128)),
            int(number(concurrency, 8)),
            float(budget) if budget else None,
            int(first_n or 0),
        )
        return action(ctx, owner, experiment, choice, api_key or "")

    return _shown(run, 1)


def build_teacher_tab(ctx: AppContext, owner: gr.State, experiment: gr.Dropdown) -> None:
    """Lay out the Teacher tab inside the current Blocks context."""
    gr.Markdown(
        "A teacher writes a rationale and an answer for each question (two-step Zero-shot-CoT). "
        "The paper's diverse setting is D > 1 samples at temperature 0.7; on the **test** split, "
        "D = 1 at temperature 0 gives the teacher's accuracy for the Evaluate tab."
    )
    teacher = gr.Radio(TEACHERS, value="builtin", label="Teacher")
    with gr.Row(visible=False) as server_row:
        base_url = gr.Textbox(
            label="Base URL", placeholder="empty = OpenAI; or http://host:8000/v1"
        )
        key = gr.Textbox(label="API key (kept in this browser session only)", type="password")
        mode = gr.Radio(["chat", "completions"], value="chat", label="Mode")
    model = gr.Textbox(
        label="Model", placeholder="e.g. gpt-4o-mini, or a model folder", visible=False
    )
    replay = gr.File(
        label="Completion file to replay",
        file_types=[".json", ".jsonl"],
        type="filepath",
        visible=False,
    )
    with gr.Row():
        split = gr.Radio(list(SPLITS), value="train", label="Split")
        samples = gr.Number(1, label="Samples per question (D)", precision=0, minimum=1)
        temperature = gr.Slider(0.0, 2.0, value=0.0, step=0.05, label="Temperature")
        max_tokens = gr.Number(128, label="Max tokens per call", precision=0, minimum=1)
    with gr.Row():
        concurrency = gr.Number(8, label="Requests in flight", precision=0, minimum=1)
        budget = gr.Number(0, label="Budget in USD (0 = none)", minimum=0)
        limit = gr.Number(0, label="First N questions (0 = all)", precision=0, minimum=0)
    with gr.Row():
        estimate_btn = gr.Button("Estimate cost")
        start_btn = gr.Button("Start", variant="primary")
        cancel_btn = gr.Button("Cancel", variant="stop")
        resume_btn = gr.Button("Resume")
        refresh_btn = gr.Button("Refresh")
    message = gr.Markdown()
    command = gr.Code(
        label="Equivalent command line",
        language="shell",
        interactive=False,
        wrap_lines=True,
        lines=2,
        max_lines=6,
    )
    status = gr.Markdown("No job yet.")
    progress = gr.Slider(0.0, 1.0, value=0.0, label="Progress", interactive=False)
    log = gr.Textbox(label="Log (last lines)", lines=6, max_lines=12, interactive=False)
    table = gr.Dataframe(
        headers=list(SAMPLE_COLUMNS),
        datatype=list(SAMPLE_COLUMNS.values()),
        interactive=False,
        label="Newest samples (what the teacher wrote, as plain text)",
        wrap=True,
        column_widths=["6%", "5%", "6%", "7%", "7%", "9%", "35%", "12%", "13%"],
    )
    timer = gr.Timer(2.0)

    settings = [
        teacher,
        base_url,
        model,
        mode,
        replay,
        split,
        samples,
        temperature,
        max_tokens,
        concurrency,
        budget,
        limit,
    ]
    watched = [status, progress, log, table]

    def toggle(kind: str):
        return (
            gr.Row(visible=kind == "openai"),
            gr.Textbox(visible=kind in ("openai", "hf")),
            gr.File(visible=kind == "replay"),
        )

    teacher.change(toggle, teacher, [server_row, model, replay], api_visibility="private")

    def status_of(owner: str | None, experiment: str | None):
        try:
            return generation_status(ctx, owner, experiment)
        except UserError as err:
            return f"⚠️ {err}", 0.0, "", []

    def cancel(owner: str | None, experiment: str | None) -> str:
        return cancel_generation(ctx, owner, experiment)

    def resume(owner: str | None, experiment: str | None, api_key: str | None) -> str:
        return resume_generation(ctx, owner, experiment, api_key or "")

    def tick(who, name):
        try:
            job, shown = _watch(ctx, who, name)
        except UserError as err:
            return f"⚠️ {err}", 0.0, "", [], gr.Timer(active=False)
        # Poll while a job may still change (or the page has no owner yet); a new job restarts it.
        keep = who is None or (job is not None and job.status in ACTIVE)
        return (*shown, gr.Timer(active=keep))

    def rewatch(who, name):
        return (*tick(who, name)[:-1], gr.Timer(active=True))

    inputs = [owner, experiment, *settings, key]
    estimate = _with_choice(ctx, estimate_generation)
    estimate_btn.click(estimate, inputs, [message, command], api_name="estimate_generation")
    start = _with_choice(ctx, start_generation)
    started = start_btn.click(start, inputs, [message, command], api_name="start_generation")
    refresh_btn.click(
        status_of,
        [owner, experiment],
        watched,
        api_name="generation_status",
        concurrency_limit=None,
    )
    cancelled = cancel_btn.click(
        _shown(cancel),
        [owner, experiment],
        message,
        api_name="cancel_generation",
    )
    resumed = resume_btn.click(
        _shown(resume),
        [owner, experiment, key],
        message,
        api_name="resume_generation",
    )
    for event in (started, cancelled, resumed):
        event.then(rewatch, [owner, experiment], [*watched, timer], api_visibility="private")
    experiment.change(rewatch, [owner, experiment], [*watched, timer], api_visibility="private")
    timer.tick(
        tick,
        [owner, experiment],
        [*watched, timer],
        api_visibility="private",
        concurrency_limit=None,
        show_progress="hidden",
    )
