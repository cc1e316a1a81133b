"""Replay stored completions as a teacher: reuse rationales someone already paid for.

Two formats:

- the paper's released completion files (`B_<model>__C_<key>/D_<task>.json`, METHOD.md):
  `{"metadata": {"base_model", ...}, "data": {"<sample index>": [{"completion_index",
  "question", "reasoning_completion", "reasoning_finish_reason", "completion",
  "finish_reason"}, ...]}}`;
- this project's own exports (`rtdemo export --all`): JSONL with `question`, `sample_index`,
  `rationale`, `rationale_finish`, `teacher_answer`, `answer_finish`.

Sample index i of a question replays the i-th stored completion of that question. Nothing is
requested from anywhere; a question or sample the files do not hold fails as "unsupported".
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rtdemo.errors import UserError
from rtdemo.teachers.base import Completion, IndexedTeacher, TeacherError, TeacherInfo

_SUFFIX = "\nA: Let's think step by step."
_ANSWER_CUE = "\nTherefore, the answer is"


@dataclass(frozen=True)
class StoredSample:
    """One stored two-call completion."""

    rationale: str
    rationale_finish: str
    answer: str
    answer_finish: str


def _paper_records(data: dict) -> tuple[str, list[tuple[str, int, StoredSample]]]:
    model = str(data.get("metadata", {}).get("base_model") or "replay")
    records = []
    for entries in data["data"].values():
        for k, entry in enumerate(entries):
            sample = StoredSample(
                entry["reasoning_completion"],
                entry.get("reasoning_finish_reason") or "stop",
                entry["completion"],
                entry.get("finish_reason") or "stop",
            )
            records.append((entry["question"], int(entry.get("completion_index", k)), sample))
    return model, records


def _export_records(
    lines: list[str], path: Path
) -> tuple[str, list[tuple[str, int, StoredSample]]]:
    records, model = [], "replay"
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            sample = StoredSample(
                row["rationale"],
                row.get("rationale_finish") or "stop",
                row["teacher_answer"],
                row.get("answer_finish") or "stop",
            )
            records.append((row["question"], int(row["sample_index"]), sample))
            model = str(row.get("model") or model)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise UserError(
                f"{path} line {number} is not a replayable sample ({err!r}): export with "
                "`rtdemo export --all`, or use the paper's completion files"
            ) from None
    return model, records


def load_replay(paths: Sequence[str | Path]) -> tuple[str, dict[str, dict[int, StoredSample]]]:
    """Read completion files; return the teacher model they came from and question → samples."""
    if not paths:
        raise UserError("the replay teacher needs at least one completion file (--replay-file)")
    by_question: dict[str, dict[int, StoredSample]] = {}
    models = set()
    for raw in paths:
        path = Path(raw)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise UserError(f"cannot read replay file {path}: {err}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = None
        if isinstance(data, dict) and "data" in data:
            try:
                model, records = _paper_records(data)
            except (KeyError, TypeError, AttributeError) as err:
                raise UserError(f"{path} is not a completion file of the paper ({err!r})") from None
        else:
            model, records = _export_records(text.splitlines(), path)
        models.add(model)
        for question, index, sample in records:
            by_question.setdefault(question.strip(), {})[index] = sample
    if not by_question:
        raise UserError(f"no completions found in {', '.join(map(str, paths))}")
    return "+".join(sorted(models)), by_question


class ReplayTeacher(IndexedTeacher):
    """A teacher that answers from stored completion files, for free."""

    def __init__(self, paths: Sequence[str | Path]) -> None:
        model, self._samples = load_replay(paths)
        names = ",".join(sorted(Path(p).name for p in paths))
        self.info = TeacherInfo(
            kind="replay",
            model=model,
            base_url=f"replay:{names}",
            label=f"Replay of stored {model} completions ({names})",
        )

    def _lookup(self, question: str, index: int) -> StoredSample:
        samples = self._samples.get(question.strip())
        if samples is None:
            raise TeacherError("unsupported", "this question is not in the replay files")
        if index not in samples:
            raise TeacherError(
                "unsupported",
                f"the replay files hold {len(samples)} sample(s) of this question, not sample "
                f"{index}: lower the number of samples",
            )
        return samples[index]

    async def rationales_for(
        self, prompt: str, indices: Sequence[int], *, temperature: float, max_tokens: int
    ) -> list[Completion]:
        """The stored rationales of the given sample indices (temperature and cap do not apply)."""
        question = prompt.removeprefix("Q: ").removesuffix(_SUFFIX)
        return [
            Completion(s.rationale, s.rationale_finish)
            for s in (self._lookup(question, i) for i in indices)
        ]

    async def answer(self, prompt: str, *, max_tokens: int) -> Completion:
        """The stored answer text of the rationale in the prompt."""
        head = prompt.removesuffix(_ANSWER_CUE)
        question_part, _, rationale = head.partition(_SUFFIX)
        question = question_part.removeprefix("Q: ")
        for sample in self._samples.get(question.strip(), {}).values():
            if sample.rationale == rationale:
                return Completion(sample.answer, sample.answer_finish)
        raise TeacherError("unsupported", "this rationale is not in the replay files")
