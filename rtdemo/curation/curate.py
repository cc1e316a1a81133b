"""Curation: answer filtering, review decisions on top, the training formats, exports and imports.

A sample is kept when a reviewer accepted it, or when nobody rejected it, its rationale is not
empty (a real small teacher sometimes writes nothing, or only white space: nothing to learn from)
and (with answer filtering, the default) its parsed answer matched the gold. An edited rationale
replaces the teacher's in every format while the original stays stored.

Formats (METHOD.md, step 2), with `q`, `r`, `a` stripped and `a` the gold answer:

- Fine-tune-CoT, causal student: prompt `"{q} ###"`, completion `" {r} --> {a}"`;
- vanilla baseline, causal student: prompt `"{q} ###"`, completion `" {a}"`;
- seq2seq student (T5): prompt `"{q}"`, completion `"{r} --> {a}"` / `"{a}"`.

The end-of-sequence token is appended by the trainer (it belongs to the student's tokenizer).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Protocol

from rtdemo.errors import UserError
from rtdemo.generation.diversity import diversity
from rtdemo.generation.samples import Sample, SampleKey, load_samples
from rtdemo.students.loading import StudentKind
from rtdemo.tasks.types import Example
from rtdemo.workspace.store import Experiment, Store

TrainFormat = Literal["cot", "vanilla"]
DELIMITER = " --> "


@dataclass(frozen=True)
class Curated:
    """A finished sample with its question, review state and whether it is kept."""

    sample: Sample
    question: str
    gold: str
    decision: str | None  # "accepted", "rejected" or None (not reviewed)
    edited_rationale: str | None
    kept: bool

    @property
    def rationale(self) -> str:
        """The rationale to train on: the reviewer's edit if any, else the teacher's."""
        if self.edited_rationale is not None:
            return self.edited_rationale
        return self.sample.rationale or ""


def format_pair(
    question: str, rationale: str, answer: str, fmt: TrainFormat, student: StudentKind = "causal"
) -> dict[str, str]:
    """One prompt-completion pair in the Fine-tune-CoT or vanilla format."""
    q, r, a = question.strip(), rationale.strip(), answer.strip()
    target = f"{r}{DELIMITER}{a}" if fmt == "cot" else a
    if student == "seq2seq":
        return {"prompt": q, "completion": target}
    return {"prompt": f"{q} ###", "completion": f" {target}"}


def curate(
    store: Store,
    experiment: Experiment,
    *,
    filter_answers: bool = True,
    diverse_samples: int | None = None,
    split: str | None = "train",
    key: SampleKey | None = None,
) -> list[Curated]:
    """Every finished sample of the experiment with its review applied and its kept flag.

    `key` restricts it to one teacher setting (an experiment may hold samples of several).
    """
    questions = {(q.split, q.index): q for q in store.questions(experiment.id)}
    reviews = {
        sid: (decision, edited)
        for sid, decision, edited in store.read(
            "SELECT r.sample_id, r.decision, r.edited_rationale FROM reviews r "
            "JOIN samples s ON s.id = r.sample_id WHERE s.experiment_id = ?",
            (experiment.id,),
        )
    }
    out = []
    for s in load_samples(store, experiment.id, key, split=split):
        if s.status != "done":
            continue
        if diverse_samples is not None and s.sample_index >= diverse_samples:
            continue
        q = questions.get((s.split, s.idx))
        if q is None:
            continue
        decision, edited = reviews.get(s.id, (None, None))
        written = (edited if edited is not None else s.rationale or "").strip()
        kept = decision == "accepted" or (
            decision is None and bool(written) and (bool(s.correct) or not filter_answers)
        )
        out.append(Curated(s, q.question, q.answer, decision, edited, kept))
    return out


class RunData(Protocol):
    """What a student run's training data depends on (a recipe's `RunConfig` and a `TrainRequest`
    have it)."""

    @property
    def format(self) -> TrainFormat: ...

    @property
    def filter_answers(self) -> bool: ...

    @property
    def diverse_samples(self) -> int: ...


def training_records(
    store: Store,
    exp: Experiment,
    run_cfg: RunData,
    train_q: list[Example],
    kind: StudentKind,
    key: SampleKey | None = None,
) -> list[dict]:
    """Prompt-completion pairs of a run: all gold answers (vanilla) or kept rationales (cot)."""
    if run_cfg.format == "vanilla":
        return [format_pair(q.question, "", q.answer, "vanilla", kind) for q in train_q]
    ids = {(q.split, q.index) for q in train_q}
    kept = [
        c
        for c in curate(
            store,
            exp,
            filter_answers=run_cfg.filter_answers,
            diverse_samples=run_cfg.diverse_samples,
            key=key,
        )
        if c.kept and (c.sample.split, c.sample.idx) in ids
    ]
    return [format_pair(c.question, c.rationale, c.gold, "cot", kind) for c in kept]


def review(
    store: Store,
    sample_id: int,
    decision: str | None = None,
    edited_rationale: str | None = None,
    *,
    clear_edit: bool = False,
) -> None:
    """Record a reviewer's decision and/or edit of one sample (the original stays stored)."""
    if decision not in (None, "accepted", "rejected"):
        raise UserError(f"a review decision is 'accepted' or 'rejected', not {decision!r}")
    now = datetime.now(UTC).isoformat(timespec="seconds")
    with store.transaction() as conn:
        if not conn.execute("SELECT 1 FROM samples WHERE id = ?", (sample_id,)).fetchone():
            raise UserError(f"no sample {sample_id}")
        old = conn.execute(
            "SELECT decision, edited_rationale FROM reviews WHERE sample_id = ?", (sample_id,)
        ).fetchone() or (None, None)
        new_decision = decision if decision is not None else old[0]
        new_edit = (
            None if clear_edit else (edited_rationale if edited_rationale is not None else old[1])
        )
        conn.execute(
            "INSERT INTO reviews (sample_id, decision, edited_rationale, updated_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (sample_id) DO UPDATE SET "
            "decision = excluded.decision, edited_rationale = excluded.edited_rationale, "
            "updated_at = excluded.updated_at",
            (sample_id, new_decision, new_edit, now),
        )


def export_record(c: Curated, fmt: TrainFormat, student: StudentKind = "causal") -> dict:
    """One export line: the training pair plus everything needed to trace or replay it."""
    s = c.sample
    return {
        **format_pair(c.question, c.rationale, c.gold, fmt, student),
        "sample_id": s.id,
        "split": s.split,
        "index": s.idx,
        "sample_index": s.sample_index,
        "question": c.question,
        "answer": c.gold,
        "rationale": s.rationale,
        "edited_rationale": c.edited_rationale,
        "rationale_finish": s.rationale_finish,
        "teacher_answer": s.answer_text,
        "answer_finish": s.answer_finish,
        "prediction": s.prediction,
        "correct": s.correct,
        "decision": c.decision,
        "kept": c.kept,
        "teacher": s.teacher,
        "model": s.model,
        "base_url": s.base_url,
        "temperature": s.temperature,
        "max_tokens": s.max_tokens,
    }


def export_jsonl(
    store: Store,
    experiment: Experiment,
    path: Path,
    fmt: TrainFormat = "cot",
    *,
    include_all: bool = False,
    student: StudentKind = "causal",
    filter_answers: bool = True,
) -> int:
    """Write the kept samples (all finished ones with `include_all`) as JSONL; return the count."""
    records = [
        export_record(c, fmt, student)
        for c in curate(store, experiment, filter_answers=filter_answers, split=None)
        if c.kept or include_all
    ]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    tmp.replace(path)  # a crash mid-write never leaves a half export under the real name
    return len(records)


def to_dataset(records: list[dict]):
    """A `datasets.Dataset` of prompt-completion records (what TRL's SFTTrainer takes)."""
    import datasets

    return datasets.Dataset.from_list(
        [{"prompt": r["prompt"], "completion": r["completion"]} for r in records]
    )


def import_jsonl(store: Store, experiment: Experiment, path: Path) -> dict[str, int]:
    """Apply an edited export back: `decision` fields and changed rationales become reviews.

    A line's rationale is read from `edited_rationale` if present, else from its Fine-tune-CoT
    `completion` (the text before the last ` --> `). Lines of other experiments are refused.
    All or nothing: every line is checked before any review is written, so a bad file changes
    nothing.
    """
    own = {s.id: s for s in load_samples(store, experiment.id)}
    counts = {"decisions": 0, "edits": 0, "unchanged": 0}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read {path}: {err}") from None
    plan: list[tuple[int, str | None, str | None]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            sample = own[int(row["sample_id"])]
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise UserError(
                f"{path} line {number}: not a sample of experiment {experiment.name} "
                "(needs the sample_id of an `rtdemo export` line)"
            ) from None
        decision, edited = row.get("decision"), row.get("edited_rationale")
        if decision not in (None, "accepted", "rejected"):
            raise UserError(
                f"{path} line {number}: decision is 'accepted', 'rejected' or null, "
                f"not {decision!r}"
            )
        if edited is None and DELIMITER in str(row.get("completion", "")):
            edited = str(row["completion"]).rsplit(DELIMITER, 1)[0].strip()
        if edited is not None and not isinstance(edited, str):
            raise UserError(f"{path} line {number}: edited_rationale must be text or null")
        if edited is not None and edited.strip() == (sample.rationale or "").strip():
            edited = None
        if decision is None and edited is None:
            counts["unchanged"] += 1
            continue
        plan.append((sample.id, decision, edited))
    with store.transaction():  # one transaction: a failure half-way leaves the reviews as they were
        for sample_id, decision, edited in plan:
            review(store, sample_id, decision, edited)
            counts["decisions"] += decision is not None
            counts["edits"] += edited is not None
    return counts


def question_yield(store: Store, experiment: Experiment, split: str | None = "train") -> dict:
    """Per question: samples, correct, truncated and failed counts, and distinct rationales
    (after whitespace normalisation); overall teacher accuracy, distinct rationales per question
    on average, and the warning when every question's samples at T > 0 came back identical
    (`rtdemo.generation.diversity`; None otherwise)."""
    questions = {(q.split, q.index): q for q in store.questions(experiment.id, split)}
    rows: dict[tuple, dict] = {}
    samples = load_samples(store, experiment.id, split=split)
    spread = diversity(samples)
    for s in samples:
        q = questions.get((s.split, s.idx))
        r = rows.setdefault(
            (s.split, s.idx),
            {
                "split": s.split,
                "index": s.idx,
                "question": q.question if q else "",
                "samples": 0,
                "done": 0,
                "correct": 0,
                "truncated": 0,
                "failed": 0,
                "distinct": spread.per_question.get((s.split, s.idx), 0),
            },
        )
        r["samples"] += 1
        r["done"] += s.status == "done"
        r["correct"] += bool(s.correct) and s.status == "done"
        r["truncated"] += s.truncated
        r["failed"] += s.status == "failed" or s.error is not None
    done = sum(r["done"] for r in rows.values())
    correct = sum(r["correct"] for r in rows.values())
    return {
        "questions": list(rows.values()),
        "done": done,
        "correct": correct,
        "accuracy": correct / done if done else None,
        "questions_with_a_correct_sample": sum(1 for r in rows.values() if r["correct"]),
        "distinct_per_question": spread.mean_distinct,
        "identical_questions": spread.identical,
        "sampled_questions": spread.sampled,
        "diversity": spread.describe(),
        "diversity_warning": spread.warning(),
    }


# The reviewer's queue: filters over the curated samples, and decisions on many at once.

VERDICTS = ("any", "correct", "wrong")
LENGTHS = ("any", "complete", "truncated")
STATES = ("any", "pending", "reviewed", "accepted", "rejected", "edited")
BULK_ACTIONS = ("accept_correct_complete", "reject_wrong_or_truncated", "clear")


@dataclass(frozen=True)
class ReviewFilter:
    """Which samples a reviewer looks at: answer verdict, truncation, review state, a text."""

    verdict: str = "any"  # correct: the parsed answer matches the gold
    length: str = "any"  # truncated: either call stopped at the token cap
    state: str = "any"  # pending = not reviewed yet
    text: str = ""  # case-insensitive, in the question, gold, rationales and answers

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("verdict", self.verdict, VERDICTS),
            ("length", self.length, LENGTHS),
            ("state", self.state, STATES),
        ):
            if value not in allowed:
                raise UserError(f"the {name} filter is one of {', '.join(allowed)}, not {value!r}")

    def matches(self, c: Curated) -> bool:
        """Whether `c` passes every part of the filter."""
        s = c.sample
        if self.verdict != "any" and bool(s.correct) != (self.verdict == "correct"):
            return False
        if self.length != "any" and s.truncated != (self.length == "truncated"):
            return False
        state = {
            "any": True,
            "pending": c.decision is None,
            "reviewed": c.decision is not None,
            "accepted": c.decision == "accepted",
            "rejected": c.decision == "rejected",
            "edited": c.edited_rationale is not None,
        }[self.state]
        needle = self.text.strip().casefold()
        if not state or not needle:
            return state
        fields = (c.question, c.gold, s.rationale, c.edited_rationale, s.prediction, s.answer_text)
        return any(needle in (f or "").casefold() for f in fields)


def review_queue(
    store: Store, experiment: Experiment, filt: ReviewFilter | None = None, split: str = "train"
) -> list[Curated]:
    """The finished samples of `split` that pass `filt`, in question and sample order."""
    filt = filt or ReviewFilter()
    return [c for c in curate(store, experiment, split=split) if filt.matches(c)]


def check_sample(store: Store, experiment: Experiment, sample_id: int) -> None:
    """A `UserError` unless `sample_id` is a sample of `experiment` (ids come from clients)."""
    found = store.read(
        "SELECT 1 FROM samples WHERE id = ? AND experiment_id = ?", (int(sample_id), experiment.id)
    )
    if not found:
        raise UserError(f"no sample {sample_id} in experiment {experiment.name}")


def set_decisions(store: Store, sample_ids: list[int], decision: str | None) -> int:
    """Accept or reject many samples in one transaction, or clear (None) their decision.

    Clearing keeps an edit: only the decision goes back to "not reviewed". Returns the count.
    """
    if decision is not None:
        with store.transaction():
            for sample_id in sample_ids:
                review(store, sample_id, decision)
        return len(sample_ids)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    with store.transaction() as conn:
        for sample_id in sample_ids:
            conn.execute(
                "UPDATE reviews SET decision = NULL, updated_at = ? WHERE sample_id = ?",
                (now, sample_id),
            )
            conn.execute(  # a row with neither decision nor edit means the same as no row
                "DELETE FROM reviews WHERE sample_id = ? AND edited_rationale IS NULL "
                "AND decision IS NULL",
                (sample_id,),
            )
    return len(sample_ids)


def bulk_review(
    store: Store, experiment: Experiment, filt: ReviewFilter, action: str, split: str = "train"
) -> tuple[int, int]:
    """Apply a bulk action to the samples of a filter; return (changed, left as they were).

    Accepting and rejecting only touch samples nobody has decided yet: a bulk action never
    overrides a reviewer's own judgement of one sample (clear the filter's decisions first).
    """
    if action not in BULK_ACTIONS:
        raise UserError(f"a bulk action is one of {', '.join(BULK_ACTIONS)}, not {action!r}")
    queue = review_queue(store, experiment, filt, split)
    if action == "clear":
        ids = [c.sample.id for c in queue if c.decision is not None]
        return set_decisions(store, ids, None), len(queue) - len(ids)
    if action == "accept_correct_complete":
        targets = [c for c in queue if c.sample.correct and not c.sample.truncated]
        decision = "accepted"
    else:
        targets = [c for c in queue if not c.sample.correct or c.sample.truncated]
        decision = "rejected"
    ids = [c.sample.id for c in targets if c.decision is None]
    return set_decisions(store, ids, decision), len(targets) - len(ids)


def review_counts(curated: list[Curated]) -> dict[str, int]:
    """What a reviewer tracks: verdicts, truncation, decisions, edits and the kept set."""
    questions = {(c.sample.split, c.sample.idx) for c in curated}
    with_kept = {(c.sample.split, c.sample.idx) for c in curated if c.kept}
    return {
        "samples": len(curated),
        "correct": sum(bool(c.sample.correct) for c in curated),
        "wrong": sum(not c.sample.correct for c in curated),
        "truncated": sum(c.sample.truncated for c in curated),
        "pending": sum(c.decision is None for c in curated),
        "accepted": sum(c.decision == "accepted" for c in curated),
        "rejected": sum(c.decision == "rejected" for c in curated),
        "edited": sum(c.edited_rationale is not None for c in curated),
        "kept": sum(c.kept for c in curated),
        "questions": len(questions),
        "questions_kept": len(with_kept),
    }
