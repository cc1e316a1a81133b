"""Results: the teacher's measured accuracy and the side-by-side table of an experiment.

`results.json` holds `{"experiment", "task", "wall_seconds", "teacher": {"accuracy": A or null,
...}, "runs": [{"name", "format", "diverse_samples", "train_examples", "student",
"student_description", "train_seconds", "precision", "metrics": {"accuracy", "contains_answer",
"correct_format", "complete"}, "paper": figure or null}]}`, accuracies as fractions in [0, 1];
`student_description` says what a student `rtdemo models prepare` made really is ("a dequantized
4-bit (Q4_1) copy of HuggingFaceTB/SmolLM2-135M-Instruct ...", else null). `results.md` is the
same as a table for people. Nothing is shown that was not measured: an unmeasured teacher is "not
measured", and the paper's figure appears only where the comparison holds.
"""

from __future__ import annotations

import json
from pathlib import Path

from rtdemo.evaluation.paper_results import paper_figure
from rtdemo.generation.run import GenerationSettings
from rtdemo.generation.samples import SampleKey, load_samples
from rtdemo.tasks import TASKS
from rtdemo.tasks.cleansing import judge, metrics
from rtdemo.tasks.types import AnswerFormat
from rtdemo.teachers.base import TeacherInfo
from rtdemo.training.runs import latest_evaluations, list_runs
from rtdemo.workspace.store import Experiment, Store


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
    return key_metrics(store, experiment, key, answer, split)


def key_metrics(
    store: Store, experiment: Experiment, key: SampleKey, answer: AnswerFormat, split: str = "test"
) -> dict | None:
    """The four metrics of the first sample per question of one teacher setting on `split`."""
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
    described = {r["student"]: r.get("student_description") for r in results["runs"]}
    for who, text in described.items():
        lines += ["", f"Student {who}: {text}."] if text else []
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


def experiment_folder(store: Store, experiment: Experiment) -> Path:
    """Where an experiment's runs and results live."""
    base = store.workspace / "experiments"
    if experiment.owner != "local":
        base = base / experiment.owner
    return base / experiment.name


def write_results(results: dict, folder: Path) -> tuple[Path, Path]:
    """Write results.json and results.md into `folder`; return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    json_path, md_path = folder / "results.json", folder / "results.md"
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    md_path.write_text(results_markdown(results))
    return json_path, md_path


# The side-by-side comparison of an experiment, from the store (the app's Evaluate tab) ----------

ROW_NAMES = {
    "vanilla": "vanilla baseline",
    "cot": "Fine-tune-CoT",
    "diverse": "Fine-tune-CoT, diverse",
    "teacher": "teacher (Zero-shot-CoT)",
}
TEACHER_PREFIX = "teacher: "


def greedy_teachers(store: Store, experiment: Experiment, split: str = "test") -> dict:
    """The teacher settings with greedy (temperature 0) samples on `split`: key → label."""
    found: dict[SampleKey, str] = {}
    for s in load_samples(store, experiment.id, split=split):
        if s.temperature == 0:
            key = SampleKey(s.teacher, s.base_url, s.model, s.temperature, s.max_tokens)
            if key not in found:
                # The label's short form: "Built-in offline teacher (rule-based, ...)" is long
                label = (s.settings.get("label") or s.model).split(" (")[0] or s.model
                if label in found.values():  # two settings of one teacher: tell them apart
                    label = f"{label} ({s.model}, max {s.max_tokens} tokens)"
                found[key] = label
    return found


def paper_source(store: Store, experiment: Experiment, test_only: bool = False) -> str | None:
    """ "paper" when the experiment holds the paper's whole split(s) from its files, else None.

    The paper's figures compare only with its data and split (METHOD.md): a limited or synthetic
    snapshot, or another source, compares with no cell.
    """

    if experiment.config.get("source") != "paper":
        return None
    sizes = TASKS[experiment.task].paper_sizes
    splits = ("test",) if test_only else ("train", "test")
    whole = all(store.count_questions(experiment.id, s) == sizes.get(s) for s in splits)
    return "paper" if whole else None


def row_of(fmt: str, diverse_samples: int) -> str:
    """The paper's row of a student run: vanilla, cot (D=1) or diverse (D>1)."""
    return "vanilla" if fmt == "vanilla" else ("diverse" if diverse_samples > 1 else "cot")


def comparison_rows(store: Store, experiment: Experiment, answer: AnswerFormat) -> list[dict]:
    """Every student run and teacher of the experiment with its newest test-split metrics.

    Rows: vanilla runs, Fine-tune-CoT runs, diverse runs, then the teacher (a "not measured" row
    when no greedy test-split generation exists). Each: who, row, student, diverse_samples,
    train_examples, status, metrics (None until evaluated) and the paper's figure or None.
    """

    evaluations = latest_evaluations(store, experiment)
    source = paper_source(store, experiment)
    rows = []
    for run in list_runs(store, experiment):
        row = row_of(run.format, run.diverse_samples)
        entry = evaluations.get(run.name)
        rows.append(
            {
                "who": run.name,
                "row": row,
                "student": run.student,
                "diverse_samples": run.diverse_samples,
                "train_examples": run.train_examples,
                "status": run.status,
                "metrics": entry["metrics"] if entry else None,
                "paper": paper_figure(experiment.task, row, run.student, source),
            }
        )
    order = list(ROW_NAMES)
    rows.sort(key=lambda r: order.index(r["row"]))  # stable: runs keep their age order
    teachers = greedy_teachers(store, experiment) or {None: "not run on the test split yet"}
    test_source = paper_source(store, experiment, test_only=True)
    for key, label in teachers.items():
        model = key.model if key else None
        rows.append(
            {
                "who": f"{TEACHER_PREFIX}{label}",
                "row": "teacher",
                "student": None,
                "diverse_samples": 1,
                "train_examples": None,
                "status": "teacher",
                "metrics": key_metrics(store, experiment, key, answer) if key else None,
                "paper": paper_figure(experiment.task, "teacher", None, test_source, model),
            }
        )
    return rows


def failures_first(predictions: list[dict]) -> list[dict]:
    """Predictions with the wrong ones first, each group in question order."""
    return sorted(predictions, key=lambda p: (bool(p.get("correct")), p.get("index") or 0))


def subject_predictions(store: Store, experiment: Experiment, subject: str) -> list[dict]:
    """Per-question predictions of a run's newest test evaluation, or of a teacher's greedy
    test samples (`subject` "teacher: <label>"): index, question, answer, output, prediction,
    correct. Failures first."""
    if subject.startswith(TEACHER_PREFIX):
        label = subject.removeprefix(TEACHER_PREFIX)
        keys = [k for k, lab in greedy_teachers(store, experiment).items() if lab == label]
        if not keys:
            return []
        questions = {q.index: q for q in store.questions(experiment.id, "test")}
        rows = []
        for s in load_samples(store, experiment.id, keys[0], "test"):
            if s.status != "done" or s.sample_index != 0 or s.idx not in questions:
                continue
            q = questions[s.idx]
            output = f"{s.rationale or ''}\n{s.answer_text or ''}".strip()
            rows.append(
                {
                    "index": s.idx,
                    "question": q.question,
                    "answer": q.answer,
                    "output": output,
                    "prediction": s.prediction,
                    "correct": bool(s.correct),
                }
            )
        return failures_first(rows)

    entry = latest_evaluations(store, experiment).get(subject)
    if not entry or not entry["predictions"] or not Path(entry["predictions"]).is_file():
        return []
    text = Path(entry["predictions"]).read_text(encoding="utf-8")
    return failures_first([json.loads(line) for line in text.splitlines() if line.strip()])


TABLE_COLUMNS = ["who", "kind", "student", "D", "train examples", "test questions", "accuracy"]
TABLE_COLUMNS += ["contains answer", "correct format", "complete", "paper"]


def _cell(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def comparison_table(rows: list[dict], tests: int) -> tuple[list[list[str]], list[tuple]]:
    """`comparison_rows` as text cells (`TABLE_COLUMNS`), and bars (who, accuracy %, series:
    "measured" or "paper") for a chart. Nothing unmeasured is given a number."""
    table, bars = [], []
    for r in rows:
        m = r["metrics"] or {}
        if r["metrics"] is None:
            missing = {"teacher": "not measured", "trained": "not evaluated"}
            accuracy = missing.get(r["status"], "not trained yet")
        else:
            accuracy = _cell(m["accuracy"])
            bars.append((r["who"], round(100 * m["accuracy"], 1), "measured"))
        if r["paper"] is not None:
            bars.append((f"{r['who']} (paper)", round(100 * r["paper"], 1), "paper"))
        count = m.get("count")
        partial = count is not None and count < tests  # a cancelled evaluation's partial score
        table.append(
            [
                r["who"],
                ROW_NAMES[r["row"]],
                r["student"] or "—",
                str(r["diverse_samples"]),
                "—" if r["train_examples"] is None else str(r["train_examples"]),
                "—" if count is None else (f"{count} of {tests}" if partial else str(count)),
                accuracy,
                _cell(m.get("contains_answer")),
                _cell(m.get("correct_format")),
                _cell(m.get("complete")),
                _cell(r["paper"]),
            ]
        )
    return table, bars
