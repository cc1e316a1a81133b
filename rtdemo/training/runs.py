"""Student runs and evaluations in the workspace store.

A student run is one fine-tuning of one student in one format (Fine-tune-CoT or the vanilla
baseline) on an experiment's curated samples; its files live in `runs/students/<name>/` of the
workspace. An evaluation is one scoring of a student run, or of the teacher, on a split.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rtdemo.errors import UserError
from rtdemo.workspace.store import Experiment, Store, check_name

_RUN_COLUMNS = (
    "id, name, format, diverse_samples, student, method, status, train_examples, output_dir, "
    "settings, result"
)


@dataclass(frozen=True)
class StudentRun:
    """One student fine-tuning of an experiment."""

    id: int
    name: str
    format: str
    diverse_samples: int
    student: str
    method: str
    status: str
    train_examples: int
    output_dir: Path
    settings: dict[str, Any]
    result: dict[str, Any]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _run(row: tuple, workspace: Path) -> StudentRun:
    values = list(row)
    values[8] = workspace / values[8]
    values[9], values[10] = json.loads(values[9]), json.loads(values[10])
    return StudentRun(*values)


def check_run_name(name: str) -> None:
    """Refuse a run name that is not one plain folder name (it becomes `runs/students/.../<name>`).

    The rule of experiment names: 1-64 letters, digits, '-', '_' or '.', not only dots; so
    '../x', 'a/b' or '..' never reach the file system.
    """
    check_name(name, "run name", "cot-d1")


def runs_folder(store: Store, experiment: Experiment) -> Path:
    """The folder of all the experiment's student runs."""
    return store.workspace / "runs" / "students" / f"{experiment.id}-{experiment.name}"


def run_folder(store: Store, experiment: Experiment, name: str) -> Path:
    """Where a student run's checkpoints and final model go (a bad name: `UserError`)."""
    check_run_name(name)
    return runs_folder(store, experiment) / name


def create_run(
    store: Store,
    experiment: Experiment,
    name: str,
    fmt: str,
    diverse_samples: int,
    student: str,
    method: str,
    train_examples: int,
    settings: dict,
) -> StudentRun:
    """Record a run about to be trained (an existing run of that name is reused if untrained)."""
    folder = run_folder(store, experiment, name)
    relative = str(folder.relative_to(store.workspace))
    with store.transaction() as conn:
        row = conn.execute(
            "SELECT status FROM student_runs WHERE experiment_id = ? AND name = ?",
            (experiment.id, name),
        ).fetchone()
        if row is not None and row[0] == "trained":
            raise UserError(
                f"run {name!r} of {experiment.name} is already trained: pick another run name"
            )
        conn.execute(
            "INSERT INTO student_runs (experiment_id, name, format, diverse_samples, student, "
            "method, train_examples, output_dir, settings, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (experiment_id, name) DO UPDATE "
            "SET format = excluded.format, diverse_samples = excluded.diverse_samples, "
            "student = excluded.student, method = excluded.method, "
            "train_examples = excluded.train_examples, settings = excluded.settings",
            (
                experiment.id,
                name,
                fmt,
                diverse_samples,
                student,
                method,
                train_examples,
                relative,
                json.dumps(settings, sort_keys=True, default=str),
                _now(),
            ),
        )
    return get_run(store, experiment, name)


def finish_run(store: Store, run: StudentRun, result: dict) -> StudentRun:
    """Mark a run trained, with its training result (steps, seconds, precision...)."""
    with store.transaction() as conn:
        conn.execute(
            "UPDATE student_runs SET status = 'trained', result = ? WHERE id = ?",
            (json.dumps(result, sort_keys=True, default=str), run.id),
        )
    return StudentRun(**{**run.__dict__, "status": "trained", "result": result})


def get_run(store: Store, experiment: Experiment, name: str) -> StudentRun:
    """The run `name` of the experiment, or a UserError listing the runs it has."""
    rows = store.read(
        f"SELECT {_RUN_COLUMNS} FROM student_runs WHERE experiment_id = ? AND name = ?",
        (experiment.id, name),
    )
    if not rows:
        names = ", ".join(r.name for r in list_runs(store, experiment)) or "none yet"
        raise UserError(f"experiment {experiment.name} has no run {name!r} (runs: {names})")
    return _run(rows[0], store.workspace)


def list_runs(store: Store, experiment: Experiment) -> list[StudentRun]:
    """The experiment's runs, oldest first."""
    rows = store.read(
        f"SELECT {_RUN_COLUMNS} FROM student_runs WHERE experiment_id = ? ORDER BY id",
        (experiment.id,),
    )
    return [_run(r, store.workspace) for r in rows]


def save_evaluation(
    store: Store,
    experiment: Experiment,
    subject: str,
    split: str,
    metrics: dict,
    predictions_path: Path | None,
    run: StudentRun | None = None,
    epoch: float | None = None,
) -> None:
    """Store one evaluation's metrics (of a run, or of the teacher when `run` is None)."""
    path = None if predictions_path is None else str(predictions_path)
    with store.transaction() as conn:
        conn.execute(
            "INSERT INTO evaluations (experiment_id, run_id, subject, split, epoch, metrics, "
            "predictions_path, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                experiment.id,
                run.id if run else None,
                subject,
                split,
                epoch,
                json.dumps(metrics, sort_keys=True),
                path,
                _now(),
            ),
        )


def latest_evaluations(store: Store, experiment: Experiment, split: str = "test") -> dict:
    """The newest final evaluation (no epoch) per subject: subject → {metrics, predictions}."""
    rows = store.read(
        "SELECT subject, metrics, predictions_path FROM evaluations WHERE experiment_id = ? "
        "AND split = ? AND epoch IS NULL ORDER BY id",
        (experiment.id, split),
    )
    return {s: {"metrics": json.loads(m), "predictions": p} for s, m, p in rows}
