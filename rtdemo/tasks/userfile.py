"""A user's own task: questions and gold answers from an uploaded JSONL, JSON or CSV file.

    from rtdemo.tasks.userfile import load_user_file
    examples = load_user_file("data.csv", AnswerFormat("letter", "ABCDE"))

The user picks the answer type; every row is checked against it and all problems are reported in
one `UserError`, row by row, so that the file can be fixed in one go. Files without a split column
are split with the paper's rule for tasks without an official split (`paper_split`).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from rtdemo.errors import UserError
from rtdemo.tasks.types import SPLITS, AnswerFormat, Example

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv"}
MAX_FILE_BYTES = 200 * 1024 * 1024
MAX_TEXT_CHARS = 20_000
MAX_LISTED_PROBLEMS = 20
TRAIN_FRACTION = 0.7
# A field can never be longer than the file, so this limit is never what stops a read: an oversized
# question gets the row-named length error instead of `_csv.Error: field larger than field limit`.
CSV_FIELD_LIMIT = MAX_FILE_BYTES

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_LETTER = re.compile(r"\(?([A-Za-z])[.)]?")  # "B", "(B)", "B." and "B)" all mean B


class _Problem(Exception):
    """A problem with one row or value; the caller prefixes the row's label."""


class TooManyRows(UserError):
    """A file with more rows than the reader was allowed to read (`load_user_file(max_rows=)`)."""

    def __init__(self, name: str, max_rows: int) -> None:
        super().__init__(f"{name} has more than {max_rows:,} rows")
        self.max_rows = max_rows


# One row as read: (0-based position, label for messages, its fields or what is wrong with it).
_Row = tuple[int, str, "dict[str, Any] | _Problem"]


def paper_split(n: int) -> dict[str, list[int]]:
    """The paper's train/test split of `n` items for tasks without an official split.

    A `RandomState(0)` permutation whose first `round(0.7 * n)` items are the training set; both
    index lists are sorted. It reproduces the paper's `split/<key>__default.json` files.
    """
    test = paper_test_mask(n)
    return {"train": np.flatnonzero(~test).tolist(), "test": np.flatnonzero(test).tolist()}


def paper_test_mask(n: int) -> np.ndarray:
    """`paper_split(n)` as a boolean array, True for the test items (fast for millions)."""
    perm = np.random.RandomState(0).permutation(n)
    test = np.zeros(n, dtype=bool)
    test[perm[round(n * TRAIN_FRACTION) :]] = True
    return test


def load_user_file(
    path: str | Path,
    answer: AnswerFormat,
    question_column: str = "question",
    answer_column: str = "answer",
    split_column: str | None = "split",
    max_rows: int | None = None,
) -> list[Example]:
    """Read a user's task file into examples ordered by their 0-based row position (`index`).

    The format comes from the extension (.jsonl/.ndjson, .json, .csv/.tsv). Answers are checked
    against `answer`; letters and yes/no are normalised ("(B)" -> "B", "YES"/true -> "yes"), numbers
    and text are kept as written. When `split_column` is among the file's columns its values
    (train/test) are used, otherwise `paper_split`. Raises `UserError` listing every problem.
    `max_rows`: reading stops with `TooManyRows` at the first row beyond it (a bound on the work
    a file may cost: reading a 200 MB file takes about a minute).
    """
    path = Path(path)
    kind = _format_of(path)
    text = _read_text(path, kind)
    limit = math.inf if max_rows is None else max_rows
    if kind == "jsonl":
        rows, columns = _jsonl_rows(text, limit)
    elif kind == "json":
        rows, columns = _json_rows(text, path.name, limit)
    else:
        rows, columns = _csv_rows(text, "\t" if kind == "tsv" else ",", path.name, limit)
    if len(rows) > limit:
        raise TooManyRows(path.name, int(limit))
    if not rows:
        raise UserError(f"{path.name} has no rows")
    if columns:  # none when no row could be read at all; the row problems say why
        _check_columns(columns, (question_column, answer_column), path.name)
    wanted = {"question": question_column, "answer": answer_column}
    if split_column is not None and split_column in columns:
        wanted["split"] = split_column
    test_rows = set() if "split" in wanted else set(paper_split(len(rows))["test"])
    problems: list[str] = []
    examples: list[Example] = []
    for index, label, fields in rows:
        if isinstance(fields, _Problem):
            problems.append(f"{label}: {fields}")
            continue
        values = _read_values(fields, wanted, answer)
        if isinstance(values, list):
            problems += [f"{label}: {problem}" for problem in values]
        else:
            split = values.get("split") or ("test" if index in test_rows else "train")
            examples.append(Example(values["question"], values["answer"], split, index))
    _raise_problems(problems, path.name)
    return examples


def _format_of(path: Path) -> str:
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        shown = f"'{path.suffix}'" if path.suffix else "no extension"
        raise UserError(
            f"{path.name} has {shown}; the supported file types are {', '.join(FORMATS)}"
        )
    return kind


def _read_text(path: Path, kind: str) -> str:
    if not path.is_file():
        raise UserError(f"{path} does not exist or is not a file")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:  # checked before reading: a huge upload must not fill the memory
        raise UserError(
            f"{path.name} is {size / 2**20:,.0f} MB; the limit is {MAX_FILE_BYTES / 2**20:,.0f} MB."
            " Keep a sample of the rows or split the file."
        )
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror or err}") from None
    # Strip the BOM ourselves (rather than decode "utf-8-sig") so error offsets count from byte 0.
    bom = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
    try:
        return raw[bom:].decode("utf-8")
    except UnicodeDecodeError as err:
        message = _decode_error(raw, bom, bom + err.start, bom + err.end, kind, path.name)
        raise UserError(message) from None


def _decode_error(raw: bytes, bom: int, start: int, end: int, kind: str, name: str) -> str:
    line = raw.count(b"\n", 0, start) + 1
    where = f"line {line}"
    if kind in ("csv", "tsv"):
        # The lines before decode (this is the first bad byte); their records name the data row.
        before = raw[bom : raw.rfind(b"\n", 0, start) + 1].decode("utf-8")
        delimiter = "\t" if kind == "tsv" else ","
        reader = csv.reader(io.StringIO(before, newline=""), delimiter=delimiter)
        records = sum(1 for record in reader if any(field.strip() for field in record))
        where = f"row {records} (line {line})" if records else f"the header (line {line})"
    utf16 = raw[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
    hint = " It looks like UTF-16." if utf16 else ""
    return (
        f"{name} is not valid UTF-8: {where} has bytes that cannot be decoded at byte offset"
        f" {start} ({raw[start:end]!r}).{hint} Save the file as UTF-8 (in Excel: 'CSV UTF-8')"
        " and upload it again."
    )


# The row readers stop once they hold one row more than `limit`: the caller refuses the file.


def _jsonl_rows(text: str, limit: float) -> tuple[list[_Row], list[str]]:
    rows: list[_Row] = []
    columns: dict[str, None] = {}  # ordered set: the columns in order of first appearance
    # Split on "\n" only: str.splitlines would also split on U+2028, which JSON strings may hold.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        if len(rows) > limit:
            break
        rows.append((len(rows), f"line {number}", _parse_object(line, columns)))
    return rows, list(columns)


def _parse_object(line: str, columns: dict[str, None]) -> dict[str, Any] | _Problem:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as err:
        return _Problem(f"invalid JSON ({err.msg} at column {err.colno})")
    except RecursionError:
        return _Problem("invalid JSON (nested too deeply)")
    return _as_object(value, columns)


def _as_object(value: object, columns: dict[str, None]) -> dict[str, Any] | _Problem:
    if not isinstance(value, dict):
        return _Problem(f'is {_kind(value)}, not an object like {{"question": ..., "answer": ...}}')
    columns.update(dict.fromkeys(value))
    return value


def _json_rows(text: str, name: str, limit: float) -> tuple[list[_Row], list[str]]:
    if not text.strip():
        return [], []
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        hint = " If it has one object per line, name it .jsonl." if err.msg == "Extra data" else ""
        where = f"{err.msg} at line {err.lineno}, column {err.colno}"
        raise UserError(f"{name} is not valid JSON: {where}.{hint}") from None
    except RecursionError:
        raise UserError(f"{name} is not valid JSON: it is nested too deeply") from None
    if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), list):
        data = next(iter(data.values()))  # {"data": [...]}, as some exporters write it
    if not isinstance(data, list):
        raise UserError(
            f'{name} must hold a list of objects like [{{"question": ..., "answer": ...}}]'
            f' (or {{"data": [...]}}); it holds {_kind(data)}'
        )
    rows: list[_Row] = []
    columns: dict[str, None] = {}
    for index, value in enumerate(data):
        if len(rows) > limit:
            break
        rows.append((index, f"row {index + 1}", _as_object(value, columns)))
    return rows, list(columns)


def _csv_rows(text: str, delimiter: str, name: str, limit: float) -> tuple[list[_Row], list[str]]:
    if csv.field_size_limit() < CSV_FIELD_LIMIT:  # only ever raised: the limit is process-wide
        csv.field_size_limit(CSV_FIELD_LIMIT)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header: list[str] | None = None
    rows: list[_Row] = []
    while len(rows) <= limit:
        first_line = reader.line_num + 1
        label = f"row {len(rows) + 1} (line {first_line})"
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as err:  # the rest of the file cannot be trusted: stop at this row
            where = label if header else f"the header (line {first_line})"
            raise UserError(f"{name}, {where}: cannot be read as CSV ({err})") from None
        if not any(field.strip() for field in record):
            continue
        if header is None:
            header = [column.strip() for column in record]
        elif len(record) > len(header):
            problem = _Problem(
                f"has {len(record)} fields but the header has {len(header)};"
                f" put fields that contain {delimiter!r} in double quotes"
            )
            rows.append((len(rows), label, problem))
        else:  # a short row lacks its last columns; the missing values are reported by name
            rows.append((len(rows), label, dict(zip(header, record, strict=False))))
    return rows, header or []


def _check_columns(columns: list[str], wanted: tuple[str, str], name: str) -> None:
    missing = [column for column in wanted if column not in columns]
    if not missing:
        return
    noun = "column" if len(missing) == 1 else "columns"
    named = " and ".join(f"'{column}'" for column in missing)
    shown = ", ".join(columns[:30]) + (", ..." if len(columns) > 30 else "")
    raise UserError(
        f"{noun} {named} not found in {name}; the file has columns: {shown}. Map your columns"
        " with question_column/answer_column (CLI: --question-column/--answer-column)"
    )


def _read_values(
    fields: dict[str, Any], wanted: dict[str, str], answer: AnswerFormat
) -> list[str] | dict[str, str]:
    """The row's values by role (question, answer, split), each checked, or its problems."""
    values: dict[str, str] = {}
    problems: list[str] = []
    for role, column in wanted.items():
        try:
            if column not in fields:
                raise _Problem(f"no '{column}' value")
            values[role] = _check(role, fields[column], answer)
        except _Problem as problem:
            problems.append(str(problem))
    return problems or values


def _check(role: str, value: object, answer: AnswerFormat) -> str:
    if role == "answer":
        return _answer(value, answer)
    text = _text(value, role)
    if role == "split" and text.lower() not in SPLITS:
        raise _Problem(f"split {_show(text)} must be train or test")
    return text.lower() if role == "split" else text


def _answer(value: object, answer: AnswerFormat) -> str:
    kind = answer.answer_type
    if isinstance(value, bool):
        if kind == "yes_no":
            return "yes" if value else "no"
        expected = {"number": "a number", "letter": "a letter", "text": "text"}[kind]
        raise _Problem(f"answer is {_kind(value)}, not {expected}")
    text = _text(value, "answer")
    if kind == "number":
        if not _NUMBER.fullmatch(text.replace(",", "")):
            raise _Problem(f"answer {_show(text)} is not a number (write it like 42, -3.5, 1,000)")
        return text  # as written: "1,000" stays "1,000"; answer cleansing compares numbers later
    if kind == "letter":
        return _letter(text, answer.letters)
    if kind == "yes_no":
        if text.lower() not in ("yes", "no"):
            raise _Problem(f"answer {_show(text)} is not yes or no")
        return text.lower()
    return text


def _letter(text: str, letters: str) -> str:
    match = _LETTER.fullmatch(text)
    letter = match.group(1) if match else ""
    shown, choices = f"answer {_show(text)}", ", ".join(letters)
    if letter and letter in letters:
        return letter
    if letter and letter.upper() in letters:
        raise _Problem(f"{shown} is lower-case; the choices are the upper-case letters {choices}")
    raise _Problem(f"{shown} is not one of the choices {choices}")


def _text(value: object, what: str) -> str:
    text = ""
    if isinstance(value, str):
        text = value.strip()
    elif isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
    elif isinstance(value, float) and math.isfinite(value):
        text = np.format_float_positional(value, trim="0")  # 1e20 as digits, like a user wrote it
    elif value is not None:
        raise _Problem(f"{what} is {_kind(value)}; write text or a number")
    if not text:
        raise _Problem(f"empty {what}")
    if len(text) > MAX_TEXT_CHARS:
        raise _Problem(f"{what} is {len(text):,} characters long; the limit is {MAX_TEXT_CHARS:,}")
    return text


def _show(text: str) -> str:
    """A value quoted for a message, shortened so that a long value cannot flood it."""
    return repr(text if len(text) <= 40 else text[:37] + "...")


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # NaN or Infinity, which Python's json accepts
    kinds = {dict: "an object", list: "a list", str: "a string", int: "a number", float: "a number"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


def _raise_problems(problems: list[str], name: str) -> None:
    if not problems:
        return
    count = len(problems)
    lines = [f"{count} problem{'s' if count != 1 else ''} in {name}:"]
    lines += [f"  {problem}" for problem in problems[:MAX_LISTED_PROBLEMS]]
    if count > MAX_LISTED_PROBLEMS:
        lines.append(f"  and {count - MAX_LISTED_PROBLEMS} more")
    raise UserError("\n".join(lines))
