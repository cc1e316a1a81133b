"""How a background job looks in a tab: one status line, a progress fraction, and the log tail.

A queued torch job (training, evaluation, a local-model teacher) says where it stands in line for
the machine's one torch slot: "position N of M", in the order the scheduler will start them
(`rtdemo.jobs.runner.queue_position`: visitors take turns, so a position can also move back when
another visitor's first job comes in).

Used by the Teacher, Train and Evaluate tabs, which poll with `gr.Timer` and re-attach to the
newest job of their kind after a reload (the job lives in the store, not in the page). The
app's data folder is named `$RTDEMO_HOME` in what a tab shows, never by its server path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rtdemo.jobs.files import last_progress, tail_log
from rtdemo.jobs.progress import format_progress
from rtdemo.jobs.records import Job
from rtdemo.jobs.runner import RUNS_DIR, job_workspace, queue_position
from rtdemo.redaction import hide_folder
from rtdemo.workspace.store import Store

ICONS = {"queued": "⏳", "running": "▶️", "done": "✅", "failed": "❌", "cancelled": "⏹️"}
# What a resume of a failed or cancelled job keeps, per kind: only what is true of that kind.
RESUME_NOTES = {
    "generate": (
        "Every finished sample is kept: **Resume** (or starting the same generation again) "
        "skips them and generates only the rest."
    ),
    "train": (
        "**Resume** continues from the last checkpoint, saved at each epoch and when a job is "
        "cancelled: steps after it are trained again (with no checkpoint yet, from step 1)."
    ),
    "evaluate": (
        "An evaluation does not continue part-way: running it again (**Evaluate**, or "
        "`rtdemo jobs resume {id}`) scores every question from the first."
    ),
}
RESUME_OTHER = "**Resume** runs it again."


def progress_fraction(record: dict[str, Any] | None) -> float:
    """Done / total of a progress record (generation: done, total; training: step, total)."""
    if not record:
        return 0.0
    done = record.get("step", record.get("done", 0)) or 0
    total = record.get("total") or 0
    return min(1.0, float(done) / float(total)) if total else 0.0


def resume_note(job: Job) -> str:
    """What resuming the stopped `job` keeps and redoes, in the words of its kind."""
    return RESUME_NOTES.get(job.kind, RESUME_OTHER).format(id=job.id)


def queue_text(job: Job) -> str:
    """Where queued `job` stands in line for the torch slot ("position N of M …")."""
    if not job.uses_torch:
        return "starting…"  # only torch jobs wait; another is claimed as it is recorded
    with Store(job_workspace(job)) as store:
        place = queue_position(store, job.id)
    if place is None:  # no longer queued (it started meanwhile)
        return "starting…"
    n, m = place
    ahead = "it is next" if n == 1 else f"{n - 1} queued job(s) go before it"
    return (
        f"position {n} of {m} in line for this machine's training and evaluation slot "
        f"({ahead}, after the one running now; visitors take turns)"
    )


def job_status(job: Job | None) -> tuple[str, float, str]:
    """Markdown status, progress fraction in [0, 1], and the last lines of the job's log."""
    if job is None:
        return "No job yet.", 0.0, ""
    record = last_progress(job)
    line = f"{ICONS.get(job.status, '')} job {job.id} ({job.kind}) **{job.status}**"
    if job.status == "queued":
        line += f" — {queue_text(job)}"
    status = f"{line} — {format_progress(record, sep=' · ')}"
    if job.error:
        status += f"\n\n⚠️ {job.error}"
    if job.status in ("failed", "cancelled"):
        status += "\n\n" + resume_note(job)
    fraction = 1.0 if job.status == "done" else progress_fraction(record)
    workspace = job.run_dir.parents[len(Path(RUNS_DIR).parts)]  # <workspace>/runs/N-<kind>
    return hide_folder(status, workspace), fraction, hide_folder(tail_log(job, 30), workspace)
