"""Teacher samples in the workspace store: one row per rationale, committed call by call.

A sample is identified by (experiment, question, teacher, base URL (redacted: no credentials,
`rtdemo.redaction`), model, temperature, max tokens, sample index). Call 1's result is committed
as soon as it arrives (status `rationale`), so a crash before call 2 does not repeat call 1;
call 2 completes it (`done`); a request that kept failing is kept as `failed` with its reason,
and a later run retries it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rtdemo.redaction import redact_url
from rtdemo.tasks.types import Example
from rtdemo.teachers.base import Completion, TeacherInfo
from rtdemo.workspace.store import Store

COLUMNS = (
    "id, split, idx, teacher, base_url, model, temperature, max_tokens, sample_index, status, "
    "rationale_prompt, rationale, rationale_finish, answer_prompt, answer_text, answer_finish, "
    "prediction, correct, prompt_tokens, completion_tokens, cost, error, attempts, settings"
)


def question_hash(question: str) -> str:
    """A short stable identity of a question's text."""
    return hashlib.sha256(question.encode("utf-8")).hexdigest()[:20]


@dataclass(frozen=True)
class SampleKey:
    """Everything that identifies a sample except its question and index."""

    teacher: str
    base_url: str
    model: str
    temperature: float
    max_tokens: int

    @classmethod
    def of(cls, info: TeacherInfo, temperature: float, max_tokens: int) -> SampleKey:
        """The key of a teacher's samples at these settings (its base URL redacted: credentials
        are never stored, and a run with the same server and other credentials resumes)."""
        base_url = redact_url(info.base_url)
        return cls(info.kind, base_url, info.model, float(temperature), int(max_tokens))


@dataclass(frozen=True)
class SampleSlot:
    """Where one sample lives: its experiment, question (split, index, text), teacher setting
    and sample index. The row it names is unique (`save_rationale` and `save_failure` upsert)."""

    experiment_id: int
    split: str
    idx: int
    question: str
    key: SampleKey
    sample_index: int

    @classmethod
    def of(cls, experiment_id: int, example: Example, key: SampleKey, index: int) -> SampleSlot:
        """The slot of sample `index` of `example` at the teacher setting `key`."""
        return cls(experiment_id, example.split, example.index, example.question, key, index)

    def ident(self) -> dict[str, Any]:
        """The columns that identify the row (the samples table's unique key)."""
        return {
            "experiment_id": self.experiment_id,
            "question_hash": question_hash(self.question),
            "teacher": self.key.teacher,
            "base_url": self.key.base_url,
            "model": self.key.model,
            "temperature": self.key.temperature,
            "max_tokens": self.key.max_tokens,
            "sample_index": self.sample_index,
        }


@dataclass(frozen=True)
class Sample:
    """One stored sample (a row of `samples`)."""

    id: int
    split: str
    idx: int
    teacher: str
    base_url: str
    model: str
    temperature: float
    max_tokens: int
    sample_index: int
    status: str
    rationale_prompt: str | None
    rationale: str | None
    rationale_finish: str | None
    answer_prompt: str | None
    answer_text: str | None
    answer_finish: str | None
    prediction: str | None
    correct: bool | None
    prompt_tokens: int
    completion_tokens: int
    cost: float
    error: str | None
    attempts: int
    settings: dict[str, Any]

    @property
    def truncated(self) -> bool:
        """Whether either call stopped at the token cap."""
        return "length" in (self.rationale_finish, self.answer_finish)


def _sample(row: tuple) -> Sample:
    values = list(row)
    values[17] = None if values[17] is None else bool(values[17])
    values[23] = json.loads(values[23] or "{}")
    return Sample(*values)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def load_samples(
    store: Store, experiment_id: int, key: SampleKey | None = None, split: str | None = None
) -> list[Sample]:
    """An experiment's samples (of one teacher setting / split if given), by question, index."""
    where, params = ["experiment_id = ?"], [experiment_id]
    if key is not None:
        where.append(
            "teacher = ? AND base_url = ? AND model = ? AND temperature = ? AND max_tokens = ?"
        )
        params += [key.teacher, key.base_url, key.model, key.temperature, key.max_tokens]
    if split is not None:
        where.append("split = ?")
        params.append(split)
    rows = store.read(
        f"SELECT {COLUMNS} FROM samples WHERE {' AND '.join(where)} "
        "ORDER BY split = 'test', idx, sample_index, id",
        tuple(params),
    )
    return [_sample(r) for r in rows]


def _upsert(store: Store, slot: SampleSlot, fields: dict[str, Any]) -> int:
    ident = slot.ident()
    row = {**ident, "split": slot.split, "idx": slot.idx, **fields, "updated_at": _now()}
    names = ", ".join(row)
    marks = ", ".join("?" for _ in row)
    updates = ", ".join(f"{k} = excluded.{k}" for k in row if k not in ident)
    with store.transaction() as conn:
        conn.execute(
            f"INSERT INTO samples ({names}) VALUES ({marks}) ON CONFLICT ({', '.join(ident)}) "
            f"DO UPDATE SET {updates}",
            tuple(row.values()),
        )
        where = " AND ".join(f"{k} = ?" for k in ident)
        return int(
            conn.execute(f"SELECT id FROM samples WHERE {where}", tuple(ident.values())).fetchone()[
                0
            ]
        )


def save_rationale(
    store: Store,
    slot: SampleSlot,
    prompt: str,
    completion: Completion,
    cost: float,
    settings: dict[str, Any],
) -> int:
    """Commit call 1's result for one sample (status `rationale`); return the sample's id."""
    return _upsert(
        store,
        slot,
        {
            "status": "rationale",
            "rationale_prompt": prompt,
            "rationale": completion.text,
            "rationale_finish": completion.finish_reason,
            "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens,
            "cost": cost,
            "error": None,
            "settings": json.dumps(settings, sort_keys=True),
        },
    )


def save_answer(
    store: Store,
    sample_id: int,
    prompt: str,
    completion: Completion,
    prediction: str | None,
    correct: bool,
    cost: float,
) -> None:
    """Commit call 2's result: the sample is `done`, with its parsed answer and verdict."""
    with store.transaction() as conn:
        conn.execute(
            "UPDATE samples SET status = 'done', answer_prompt = ?, answer_text = ?, "
            "answer_finish = ?, prediction = ?, correct = ?, prompt_tokens = prompt_tokens + ?, "
            "completion_tokens = completion_tokens + ?, cost = cost + ?, error = NULL, "
            "updated_at = ? WHERE id = ?",
            (
                prompt,
                completion.text,
                completion.finish_reason,
                prediction,
                int(correct),
                completion.prompt_tokens,
                completion.completion_tokens,
                cost,
                _now(),
                sample_id,
            ),
        )


def save_failure(
    store: Store, slot: SampleSlot, error: str, attempts: int, keep_rationale: bool
) -> None:
    """Record that a sample's request kept failing (call 1, or call 2 if `keep_rationale`)."""
    if keep_rationale:  # call 1's result stays: a retry only needs call 2
        ident = slot.ident()
        with store.transaction() as conn:
            conn.execute(
                "UPDATE samples SET error = ?, attempts = attempts + ?, updated_at = ? WHERE "
                + " AND ".join(f"{k} = ?" for k in ident),
                (error, attempts, _now(), *ident.values()),
            )
        return
    _upsert(store, slot, {"status": "failed", "error": error, "attempts": attempts})
