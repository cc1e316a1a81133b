"""Results: the teacher's measured accuracy and the side-by-side table of an experiment.

`results.json` holds `{"experiment", "task", "wall_seconds", "teacher": {"accuracy": A or null,
...}, "runs": [{"name", "format", "diverse_samples", "train_examples", "student",
"train_seconds", "precision", "metrics": {"accuracy", "contains_answer", "correct_format",
"complete"}, "paper": figure or null}]}`, accuracies as fractions in [0, 1]. `results.md` is the
same as a table for people. Nothing is shown that was not measured: an unmeasured teacher is "not
measured", and the paper's figure appears only where the comparison holds.
"""

from __future__ import annotations

import json
from pathlib import Path

from rtdemo.generation import GenerationSettings
from rtdemo.samples import SampleKey, load_samples
from rtdemo.store import Experiment, Store
from rtdemo.tasks.cleansing import judge, metrics
from rtdemo.tasks.types import AnswerFormat
from rtdemo.teachers.base import TeacherInfo


def teacher_metrics(
    store: Store,
    experiment: Experiment,
    info: TeacherInfo,
    settings: GenerationSettings,
    answer: AnswerFormat,
    split: str = "test",
) -> dict | None:
    """The four metrics of a teacher's greedy samples on `split` (None if it has none)."""
    key = SampleKey.of(info, settings.temperature, settings.max_tokens)
    gold = {(q.split, q.index): q.answer for q in store.questions(experiment.id, split)}
    verdicts = []
    for s in load_samples(store, experiment.id, key, split):
        if s.status != "done" or s.sample_index != 0:
            continue
        finish = "length" if s.truncated else "stop"
        verdicts.append(
            judge(s.answer_text or "", gold[(s.split, s.idx)], answer, "teacher", finish)
        )
    if not verdicts:
        return None
    return metrics(verdicts).to_dict()


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def results_markdown(results: dict) -> str:
    """The results as a Markdown table."""
    teacher = results["teacher"]
    lines = [
        f"# {results['experiment']}: {results['task']}",
        "",
        f"{results.get('test_questions', '?')} test questions; wall time "
        f"{results['wall_seconds']:.0f} s.",
        "",
        "| who | format | D | train examples | accuracy | contains answer | correct format "
        "| complete | paper |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    tm = teacher.get("metrics") or {}
    acc = "not measured" if teacher.get("accuracy") is None else _pct(teacher["accuracy"])
    lines.append(
        f"| teacher: {teacher.get('label') or teacher.get('model')} | Zero-shot-CoT | 1 | — | "
        f"{acc} | {_pct(tm.get('contains_answer'))} | — | {_pct(tm.get('complete'))} | "
        f"{_pct(teacher.get('paper'))} |"
    )
    for run in results["runs"]:
        m = run["metrics"]
        fmt = "vanilla fine-tuning" if run["format"] == "vanilla" else "Fine-tune-CoT"
        lines.append(
            f"| {run['name']} ({run['student']}) | {fmt} | {run['diverse_samples']} | "
            f"{run['train_examples']} | {_pct(m['accuracy'])} | {_pct(m['contains_answer'])} | "
            f"{_pct(m['correct_format'])} | {_pct(m['complete'])} | {_pct(run.get('paper'))} |"
        )
    lines += [
        "",
        "Training: "
        + "; ".join(
            f"{r['name']}: {r.get('global_step')} steps in {r.get('train_seconds') or 0:.0f} s, "
            f"{r.get('precision')}, model selection: {r.get('selection')}"
            for r in results["runs"]
        )
        + ".",
        "",
        "“paper” is the paper's figure for the same task, data and student family; “—” where no "
        "comparison holds.",
    ]
    return "\n".join(lines) + "\n"


def write_results(results: dict, folder: Path) -> tuple[Path, Path]:
    """Write results.json and results.md into `folder`; return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    json_path, md_path = folder / "results.json", folder / "results.md"
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    md_path.write_text(results_markdown(results))
    return json_path, md_path
