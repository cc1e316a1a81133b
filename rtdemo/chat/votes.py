"""Votes on chat exchanges: which side answered better, saved with the whole exchange.

    vote_id = save_vote(store, exp, owner, exchange.record(), "right")
    rows = list_votes(store, exp, owner)               # newest first, this owner's only
    write_votes_jsonl(store, exp, owner, "votes.jsonl")  # one exchange and its vote per line

A vote is "left" (the teacher answered better), "right" (the student did), "tie" or "both_bad",
as in a side-by-side arena. The exchange keeps the question, its gold answer, both sides'
rationales, answers and verdicts, and the settings they ran with (never an API key: the settings
are built without one, and `save_vote` refuses a record holding a key-like field; never a server
path: the student is named, not located, and the export names the data folder `$RTDEMO_HOME`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rtdemo.errors import UserError
from rtdemo.redaction import hide_folder
from rtdemo.workspace.store import Experiment, Store

VOTES: dict[str, str] = {
    "left": "teacher (left) better",
    "right": "student (right) better",
    "tie": "tie",
    "both_bad": "both bad",
}
_SECRET_FIELDS = ("key", "api_key", "token", "password", "secret")


@dataclass(frozen=True)
class Vote:
    """One saved vote and its exchange."""

    id: int
    vote: str
    question: str
    gold: str | None
    teacher: str
    student: str
    teacher_correct: bool | None
    student_correct: bool | None
    exchange: dict[str, Any]
    created_at: str  # UTC, ISO 8601


def _bool(value: int | None) -> bool | None:
    return None if value is None else bool(value)


def _secret_fields(value: Any) -> list[str]:
    if isinstance(value, dict):
        found = [k for k in value if str(k).lower() in _SECRET_FIELDS]
        return found + [f for v in value.values() for f in _secret_fields(v)]
    if isinstance(value, list):
        return [f for v in value for f in _secret_fields(v)]
    return []


def save_vote(
    store: Store, experiment: Experiment, owner: str, exchange: dict[str, Any], vote: str
) -> int:
    """Save `vote` on a finished exchange (`Exchange.record()`) of the owner; its id."""
    if vote not in VOTES:
        raise UserError(f"a vote is one of {', '.join(VOTES)}, not {vote!r}")
    if experiment.owner != owner:
        raise UserError(f"no experiment named {experiment.name!r}")
    if secrets := _secret_fields(exchange):
        raise ValueError(f"an exchange must not carry secrets ({secrets[0]!r}): never stored")
    teacher, student = exchange["teacher"], exchange["student"]
    with store.transaction() as conn:
        cursor = conn.execute(
            "INSERT INTO chat_votes (owner, experiment_id, vote, question, gold, teacher, student,"
            " teacher_correct, student_correct, exchange, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                owner,
                experiment.id,
                vote,
                exchange["question"],
                exchange.get("gold"),
                teacher["who"],
                student["who"],
                teacher.get("correct"),
                student.get("correct"),
                json.dumps(exchange, ensure_ascii=False, sort_keys=True),
                datetime.now(UTC).isoformat(timespec="seconds"),
            ),
        )
        return int(cursor.lastrowid)


def list_votes(store: Store, experiment: Experiment, owner: str) -> list[Vote]:
    """The owner's votes on the experiment's exchanges, newest first (nobody else's)."""
    rows = store.read(
        "SELECT id, vote, question, gold, teacher, student, teacher_correct, student_correct,"
        " exchange, created_at FROM chat_votes WHERE owner = ? AND experiment_id = ?"
        " ORDER BY id DESC",
        (owner, experiment.id),
    )
    return [
        Vote(i, v, q, g, t, s, _bool(tc), _bool(sc), json.loads(x), at)
        for i, v, q, g, t, s, tc, sc, x, at in rows
    ]


def _named_student(vote: Vote) -> dict[str, Any]:
    """The vote's exchange with the student named: votes saved before students were named in the
    settings kept the student's folder (`settings.student.path`); they get its label instead."""
    exchange = dict(vote.exchange)
    settings = exchange.get("settings")
    student = settings.get("student") if isinstance(settings, dict) else None
    if isinstance(student, dict) and "path" in student:
        student = {"name": vote.student, **{k: v for k, v in student.items() if k != "path"}}
        exchange["settings"] = {**settings, "student": student}
    return exchange


def write_votes_jsonl(store: Store, experiment: Experiment, owner: str, path: Path) -> int:
    """Write the owner's votes on the experiment to `path` as JSONL, oldest first; how many.

    Each line: id, time, experiment, task, vote, then the exchange's own fields (question, gold,
    split, index, teacher, student, settings). No line names a folder of the server: the data
    folder is written `$RTDEMO_HOME` (an error note may have named a file in it)."""
    votes = list(reversed(list_votes(store, experiment, owner)))
    lines = [
        hide_folder(
            json.dumps(
                {
                    "id": v.id,
                    "created_at": v.created_at,
                    "experiment": experiment.name,
                    "task": experiment.task,
                    "vote": v.vote,
                    **_named_student(v),
                },
                ensure_ascii=False,
            ),
            store.workspace,
        )
        + "\n"
        for v in votes
    ]
    Path(path).write_text("".join(lines), encoding="utf-8")
    return len(lines)
