"""The Review tab's write side: decisions, edits, bulk actions, export and import.

Plain functions over `rtdemo.curation.curate` taking `(ctx, owner, experiment_name, ...)`; each
saves at once and returns a status line (or a file); `UserError` for what a user can fix. The read
side (what the tab shows) is `review_view.py`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from rtdemo.curation.curate import (
    ReviewFilter,
    StudentKind,
    TrainFormat,
    bulk_review,
    check_sample,
    curate,
    export_jsonl,
    import_jsonl,
    review,
    set_decisions,
)
from rtdemo.errors import UserError
from rtdemo.ui.review_view import SPLIT
from rtdemo.ui.session import AppContext
from rtdemo.workspace.store import Experiment, Store

ACTIONS = ("accept", "reject", "clear", "edit", "discard_edit")


def review_decide(
    ctx: AppContext,
    owner: str | None,
    name: str | None,
    sample_id: float | None,
    action: str,
    edited: str | None = None,
) -> str:
    """Accept, reject, clear, edit or discard the edit of one sample; a status line.

    Accept also saves a changed rationale in `edited` (what a reviewer typed before accepting);
    an edit equal to the teacher's original is no edit.
    """
    if action not in ACTIONS:
        raise UserError(f"the action is one of {', '.join(ACTIONS)}, not {action!r}")
    if sample_id is None:
        raise UserError("no rationale selected: pick one in the table or press Next")
    sid, edit_note = int(sample_id), ""
    with ctx.store() as store, store.transaction():  # an edit and its decision land together
        exp = ctx.experiment(store, owner, name)
        check_sample(store, exp, sid)
        if action in ("accept", "edit"):
            edit_note = _save_edit(store, exp, sid, edited, required=action == "edit")
        if action == "edit":
            return edit_note
        if action == "discard_edit":
            review(store, sid, clear_edit=True)
            return f"Rationale {sid}: back to the teacher's original."
        decision = {"accept": "accepted", "reject": "rejected", "clear": None}[action]
        set_decisions(store, [sid], decision)
    note = f"Rationale {sid}: {decision or 'not reviewed'}."
    return f"{note} {edit_note}" if action == "accept" and edit_note else note


def _save_edit(
    store: Store, exp: Experiment, sid: int, edited: str | None, *, required: bool
) -> str:
    """Save `edited` as the sample's rationale if it changed; a note (empty if nothing to do)."""
    c = next((x for x in curate(store, exp, split=None) if x.sample.id == sid), None)
    if c is None:
        raise UserError(f"rationale {sid} has not finished generating: nothing to review yet")
    text = (edited or "").strip()
    if not text:
        if required:
            raise UserError("an edited rationale cannot be empty: use Reject to drop it")
        return ""
    if text == c.rationale.strip():
        return "The edit box has no change to save." if required else ""
    if text == (c.sample.rationale or "").strip():
        review(store, sid, clear_edit=True)
        return "The edit matches the teacher's original again: edit removed."
    review(store, sid, edited_rationale=text)
    note = "Edit saved (the teacher's original is kept)."
    if required and c.decision != "accepted":
        note += " Accept it to train on it."
    return note


BULK_NOTES = {
    "accept_correct_complete": "Accepted {n} correct and complete rationales",
    "reject_wrong_or_truncated": "Rejected {n} wrong or truncated rationales",
    "clear": "Cleared the decisions of {n} rationales",
}


def review_bulk(
    ctx: AppContext, owner: str | None, name: str | None, filt: ReviewFilter, action: str
) -> str:
    """A bulk action on the current filter; a status line with how many changed."""
    with ctx.store() as store:
        exp = ctx.experiment(store, owner, name)
        changed, left = bulk_review(store, exp, filt, action, SPLIT)
    note = BULK_NOTES[action].format(n=changed) + " in this filter."
    if left and action != "clear":
        note += f" {left} already decided were left as they were."
    return note


def export_curated(
    ctx: AppContext,
    owner: str | None,
    name: str | None,
    fmt: TrainFormat = "cot",
    student: StudentKind = "causal",
    include_all: bool = False,
) -> tuple[str, str]:
    """Write the curated set as JSONL to a fresh temporary file; (path, status line)."""
    if fmt not in ("cot", "vanilla") or student not in ("causal", "seq2seq"):
        raise UserError("the format is cot or vanilla, the student causal or seq2seq")
    with ctx.store() as store:
        exp = ctx.experiment(store, owner, name)
        # A temporary folder: Gradio serves downloads from there wherever the workspace lives.
        folder = Path(tempfile.mkdtemp(prefix="rtdemo-export-"))
        suffix = "-all" if include_all else ""
        path = folder / f"{exp.name}-{fmt}-{student}{suffix}.jsonl"
        n = export_jsonl(store, exp, path, fmt, include_all=include_all, student=student)
    what = "finished rationales" if include_all else "kept rationales"
    return str(path), f"Exported {n} {what} of {exp.name} ({fmt}, {student} student)."


def import_curated(ctx: AppContext, owner: str | None, name: str | None, path: str | None) -> str:
    """Apply an edited export (decisions and rationale edits); all lines or none."""
    if not path:
        raise UserError("choose a .jsonl file exported from this experiment first")
    with ctx.store() as store:
        exp = ctx.experiment(store, owner, name)
        try:
            counts = import_jsonl(store, exp, Path(path))
        except UserError as err:  # name the file, not Gradio's temporary folder
            raise UserError(str(err).replace(str(path), Path(path).name)) from None
    return (
        f"Imported {Path(path).name} into {exp.name}: {counts['decisions']} decisions, "
        f"{counts['edits']} edits, {counts['unchanged']} lines unchanged."
    )
