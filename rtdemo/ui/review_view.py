"""The Review tab's read side: what the tab shows, as plain values (no Gradio).

Handlers take `(ctx, owner, experiment_name, ...)` and read the store fresh each time: a
`ReviewPage` for the tab, dicts for API clients. Problems a user can fix raise `UserError`; the tab
shows them as "⚠️ message". The write side (decisions, bulk, export, import) is `review_actions.py`.

Everything a teacher wrote (and every edit) is returned as plain text for text components; nothing
here builds HTML or Markdown out of model output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from typing import Literal

from rtdemo.curation.curate import (
    Curated,
    ReviewFilter,
    check_sample,
    curate,
    review_counts,
)
from rtdemo.errors import UserError
from rtdemo.generation.diversity import diversity
from rtdemo.ui.session import AppContext

SPLIT = "train"  # the student trains on the train split: that is what a reviewer curates
Move = Literal["stay", "next", "prev", "show"]
TABLE_LIMIT = 500  # rows sent to the browser's table; the filter narrows the rest
TABLE_HEADERS = [
    "id",
    "question #",
    "sample",
    "question",
    "rationale",
    "parsed answer",
    "gold",
    "✔/✘",
    "finish",
    "decision",
    "edited",
    "kept",
]
SIBLING_HEADERS = ["", "id", "sample", "rationale", "parsed answer", "✔/✘", "finish", "decision"]
YIELD_HEADERS = [
    "question #",
    "question",
    "finished",
    "✔ correct",
    "truncated",
    "accepted",
    "rejected",
    "kept",
    "distinct rationales",
]
# Words with their trailing spaces: a rewrite reads as one removed and one added run, not as
# an alternation of words around the spaces they happen to share.
_TOKENS = re.compile(r"^\s+|\S+\s*")


@dataclass
class SampleDetail:
    """The one-question view of one sample, every field plain text."""

    sample_id: int | None = None
    position: str = ""
    question: str = ""
    gold: str = ""
    prediction: str = ""
    verdict: str = ""
    decision: str = ""
    teacher: str = ""
    siblings: list[list[str]] = field(default_factory=list)
    original: str = ""
    rationale: str = ""  # what the student trains on: the edit if any, else the original
    diff: list[tuple[str, str | None]] = field(default_factory=list)
    answer_text: str = ""


@dataclass
class ReviewPage:
    """Everything the tab shows after one action."""

    message: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    in_filter: int = 0
    table: list[list[str]] = field(default_factory=list)
    yields: list[list] = field(default_factory=list)
    detail: SampleDetail = field(default_factory=SampleDetail)


def diff_spans(original: str, edited: str) -> list[tuple[str, str | None]]:
    """Word-level diff of an edit against the original: (text, None | "removed" | "added")."""
    a, b = _TOKENS.findall(original or ""), _TOKENS.findall(edited or "")
    spans: list[tuple[str, str | None]] = []
    for op, i1, i2, j1, j2 in SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            spans.append(("".join(a[i1:i2]), None))
            continue
        if i2 > i1:
            spans.append(("".join(a[i1:i2]), "removed"))
        if j2 > j1:
            spans.append(("".join(b[j1:j2]), "added"))
    return spans


def _verdict(c: Curated) -> str:
    return "✔" if c.sample.correct else "✘"


def _finish(c: Curated) -> str:
    return "truncated" if c.sample.truncated else "complete"


def _decision(c: Curated) -> str:
    return c.decision or "not reviewed"


def sample_record(c: Curated) -> dict:
    """One sample for API clients: its texts, verdict and review state."""
    s = c.sample
    return {
        "sample_id": s.id,
        "index": s.idx,
        "sample_index": s.sample_index,
        "question": c.question,
        "gold": c.gold,
        "rationale": s.rationale or "",
        "edited_rationale": c.edited_rationale,
        "teacher_answer": s.answer_text or "",
        "prediction": s.prediction,
        "correct": bool(s.correct),
        "truncated": s.truncated,
        "decision": c.decision,
        "kept": c.kept,
    }


def _table_row(c: Curated) -> list[str]:
    s = c.sample
    edited = "edited" if c.edited_rationale is not None else ""
    return [
        str(s.id),
        str(s.idx),
        str(s.sample_index + 1),
        c.question,
        c.rationale,
        s.prediction or "",
        c.gold,
        _verdict(c),
        _finish(c),
        _decision(c),
        edited,
        "yes" if c.kept else "no",
    ]


def yield_rows(curated: list[Curated]) -> list[list]:
    """Per question: finished samples, correct, truncated, accepted, rejected, kept, and the
    distinct rationales the teacher wrote (after whitespace normalisation: D samples that are
    one rationale repeated count 1)."""
    spread = diversity(c.sample for c in curated)
    rows: dict[tuple[str, int], list] = {}
    for c in curated:
        s = c.sample
        distinct = spread.per_question.get((s.split, s.idx), 0)
        row = rows.setdefault(
            (s.split, s.idx), [str(s.idx), c.question, 0, 0, 0, 0, 0, 0, distinct]
        )
        row[2] += 1
        row[3] += bool(s.correct)
        row[4] += s.truncated
        row[5] += c.decision == "accepted"
        row[6] += c.decision == "rejected"
        row[7] += c.kept
    return list(rows.values())


def _pick(full: list[Curated], queue: list[Curated], current: int | None, move: Move):
    """The sample to show after `move` from `current`, by question and sample order.

    The current sample may have left the filter (a decision moved it out): "next" then means the
    first one after where it was, so a reviewer working through "not reviewed" never skips one.
    """
    order = {c.sample.id: i for i, c in enumerate(full)}
    here = order.get(current) if current is not None else None
    if move == "show" and here is not None:
        return full[here]
    if not queue:
        return None
    if here is None:
        return queue[-1] if move == "prev" else queue[0]
    inside = next((c for c in queue if c.sample.id == current), None)
    before = [c for c in queue if order[c.sample.id] < here]
    after = [c for c in queue if order[c.sample.id] > here]
    if move == "next":
        return after[0] if after else inside or before[-1]
    if move == "prev":
        return before[-1] if before else inside or after[0]
    return inside or (after[0] if after else before[-1])


def _detail(c: Curated, full: list[Curated], queue: list[Curated]) -> SampleDetail:
    s = c.sample
    siblings = [x for x in full if (x.sample.split, x.sample.idx) == (s.split, s.idx)]
    ids = [x.sample.id for x in queue]
    where = "Not in this filter"
    if s.id in ids:
        where = f"Rationale {ids.index(s.id) + 1} of {len(ids)} in this filter"
    decision = _decision(c) + (" · edited" if c.edited_rationale is not None else "")
    decision += " · kept for training" if c.kept else " · not kept"
    return SampleDetail(
        sample_id=s.id,
        position=f"{where} · question #{s.idx} · sample {s.sample_index + 1} of "
        f"{len(siblings)} · sample id {s.id}",
        question=c.question,
        gold=c.gold,
        prediction=s.prediction or "(no answer found)",
        verdict=f"{_verdict(c)} {'correct' if s.correct else 'wrong'} · {_finish(c)}",
        decision=decision,
        teacher=f"{s.teacher} · {s.model} · T={s.temperature:g} · max {s.max_tokens} tokens",
        siblings=[_sibling_row(x, current=x.sample.id == s.id) for x in siblings],
        original=s.rationale or "",
        rationale=c.rationale,
        diff=diff_spans(s.rationale or "", c.rationale) if c.edited_rationale is not None else [],
        answer_text=s.answer_text or "",
    )


def _sibling_row(c: Curated, current: bool) -> list[str]:
    s = c.sample
    return [
        "▶" if current else "",
        str(s.id),
        str(s.sample_index + 1),
        c.rationale,
        s.prediction or "",
        _verdict(c),
        _finish(c),
        _decision(c),
    ]


def counts_markdown(counts: dict[str, int], in_filter: int) -> str:
    """The progress line above the tab (numbers only: safe as Markdown)."""
    if not counts:
        return ""
    c = counts
    return (
        f"**{c['samples']}** rationales (train split) · ✔ {c['correct']} correct · "
        f"✘ {c['wrong']} wrong · {c['truncated']} truncated  \n"
        f"Reviewed **{c['accepted'] + c['rejected']}** ({c['accepted']} accepted, "
        f"{c['rejected']} rejected) · {c['pending']} not reviewed · {c['edited']} edited  \n"
        f"**Kept for training: {c['kept']}** · {c['questions_kept']} of {c['questions']} "
        f"questions keep at least one rationale · {in_filter} in this filter"
    )


def load_page(
    ctx: AppContext,
    owner: str | None,
    name: str | None,
    filt: ReviewFilter,
    sample_id: float | None = None,
    move: Move = "stay",
    message: str = "",
) -> ReviewPage:
    """The tab after `move` from `sample_id` under `filt` (fresh from the store)."""
    with ctx.store() as store:
        exp = ctx.experiment(store, owner, name)
        full = curate(store, exp, split=SPLIT)
    queue = [c for c in full if filt.matches(c)]
    current = _pick(full, queue, int(sample_id) if sample_id is not None else None, move)
    if not full and not message:
        message = f"No finished rationales in {exp.name} yet: generate some in the Teacher tab."
    elif not queue and not message:
        message = "No rationales match this filter."
    return ReviewPage(
        message=message,
        counts=review_counts(full),
        in_filter=len(queue),
        table=[_table_row(c) for c in queue[:TABLE_LIMIT]],
        yields=yield_rows(full),
        detail=_detail(current, full, queue) if current else SampleDetail(),
    )


def review_queue(ctx: AppContext, owner: str | None, name: str | None, filt: ReviewFilter) -> dict:
    """The filtered queue for API clients: counts, the samples, per-question yield."""
    with ctx.store() as store:
        exp = ctx.experiment(store, owner, name)
        full = curate(store, exp, split=SPLIT)
    return {
        "experiment": exp.name,
        "counts": review_counts(full),
        "samples": [sample_record(c) for c in full if filt.matches(c)],
        "questions": [dict(zip(YIELD_HEADERS, row, strict=True)) for row in yield_rows(full)],
    }


def review_sample(ctx: AppContext, owner: str | None, name: str | None, sample_id: int) -> dict:
    """One sample of the owner's experiment as `sample_record` (a `UserError` if not theirs)."""
    with ctx.store() as store:
        exp = ctx.experiment(store, owner, name)
        check_sample(store, exp, sample_id)
        found = [c for c in curate(store, exp, split=None) if c.sample.id == int(sample_id)]
    if not found:
        raise UserError(f"rationale {sample_id} has not finished generating: nothing to review yet")
    return sample_record(found[0])
