"""A user's task file: the three formats, the paper's split rule, a clear error for bad files."""

from __future__ import annotations

import csv
import json

import pytest

from rtdemo.errors import UserError
from rtdemo.tasks import userfile
from rtdemo.tasks.types import AnswerFormat
from rtdemo.tasks.userfile import load_user_file, paper_split

NUMBER = AnswerFormat("number")
LETTER = AnswerFormat("letter", "ABCDE")
YES_NO = AnswerFormat("yes_no")
TEXT = AnswerFormat("text")
TEN_MB = 10_000_000


def write(tmp_path, name: str, content: str | bytes):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def jsonl(rows: list) -> str:
    return "\n".join(json.dumps(row) for row in rows) + "\n"


def error_of(path, answer=NUMBER, **kwargs) -> str:
    with pytest.raises(UserError) as info:
        load_user_file(path, answer, **kwargs)
    return str(info.value)


# --- the happy paths ---------------------------------------------------------------------------


def test_jsonl_with_mapped_columns_blank_lines_and_a_bom(tmp_path):
    rows = [{"q": "How many?", "a": 12}, {"q": "Sum?", "a": "1,000"}, {"q": 7, "a": 2.5}]
    text = "\ufeff" + jsonl(rows[:2]) + "\n  \n" + jsonl(rows[2:])
    path = write(tmp_path, "data.ndjson", text)
    examples = load_user_file(path, NUMBER, question_column="q", answer_column="a")
    assert [(e.question, e.answer, e.index) for e in examples] == [
        ("How many?", "12", 0),
        ("Sum?", "1,000", 1),  # numbers are kept as written
        ("7", "2.5", 2),
    ]
    split = paper_split(3)
    assert [e.split for e in examples] == [
        "train" if i in split["train"] else "test" for i in range(3)
    ]


def test_json_list_under_a_single_key_with_letters_normalised_and_its_own_split(tmp_path):
    rows = [
        {"question": "Pick one", "answer": " B ", "split": "train"},
        {"question": "Pick again", "answer": "(C)", "split": "test"},
        {"question": "And again", "answer": "D.", "split": "Train"},
    ]
    path = write(tmp_path, "data.json", json.dumps({"data": rows}))
    examples = load_user_file(path, LETTER)
    assert [(e.answer, e.split, e.index) for e in examples] == [
        ("B", "train", 0),
        ("C", "test", 1),
        ("D", "train", 2),
    ]


def test_json_yes_no_accepts_booleans_and_any_case(tmp_path):
    rows = [{"question": "a", "answer": True}, {"question": "b", "answer": "NO"}]
    rows.append({"question": "c", "answer": " Yes "})
    path = write(tmp_path, "data.json", json.dumps(rows))
    assert [e.answer for e in load_user_file(path, YES_NO)] == ["yes", "no", "yes"]


def test_csv_with_a_bom_quoted_multiline_field_and_split_column(tmp_path):
    text = '\ufeffquestion,answer,split\n"Line one,\nline two",yes,test\nShort?,No,train\n'
    path = write(tmp_path, "data.csv", text)
    examples = load_user_file(path, YES_NO)
    assert [(e.question, e.answer, e.split, e.index) for e in examples] == [
        ("Line one,\nline two", "yes", "test", 0),
        ("Short?", "no", "train", 1),
    ]


def test_tsv_with_mapped_columns_text_answers_and_the_paper_split(tmp_path):
    lines = ["Problem\tSolution"] + [f"q{i}\tanswer {i}" for i in range(10)]
    path = write(tmp_path, "data.tsv", "\n".join(lines) + "\n")
    examples = load_user_file(path, TEXT, question_column="Problem", answer_column="Solution")
    assert [e.answer for e in examples] == [f"answer {i}" for i in range(10)]
    split = paper_split(10)
    assert [e.index for e in examples if e.split == "train"] == split["train"]
    assert [e.index for e in examples if e.split == "test"] == split["test"]


def test_no_split_column_means_the_paper_split_even_with_split_column_none(tmp_path):
    rows = [{"question": f"q{i}", "answer": i, "split": "test"} for i in range(5)]
    path = write(tmp_path, "data.jsonl", jsonl(rows))
    examples = load_user_file(path, NUMBER, split_column=None)
    assert [e.index for e in examples if e.split == "test"] == paper_split(5)["test"]


# --- the paper's split rule --------------------------------------------------------------------

NON_OFFICIAL = [
    ("coin_flip", 500),
    ("single_eq", 508),
    ("addsub", 395),
    ("svamp", 1000),
    ("strategy_qa", 2290),
    ("multiarith", 600),
    ("date_understanding", 369),
    ("tracking_shuffled_objects", 750),
    ("last_letter_concatenation", 500),
]


@pytest.mark.parametrize(("key", "n"), NON_OFFICIAL)
def test_paper_split_matches_the_papers_split_files(key, n, paper_data):
    # `paper_data` (conftest) is ../shared/data/reasoning-teacher or $RTDEMO_PAPER_DATA.
    expected = json.loads((paper_data / "split" / f"{key}__default.json").read_text())
    assert paper_split(n) == {"train": expected["train"], "test": expected["test"]}


def test_paper_split_of_nothing_is_empty():
    assert paper_split(0) == {"train": [], "test": []}


# --- malformed files: each message names the row and the problem ------------------------------


def test_wrong_columns_in_csv_lists_the_files_columns_and_the_mapping(tmp_path):
    path = write(tmp_path, "data.csv", "q,answer,c\nHow?,1,x\n")
    message = error_of(path)
    assert "column 'question' not found in data.csv; the file has columns: q, answer, c." in message
    assert "question_column/answer_column" in message
    assert "--question-column/--answer-column" in message
    both = error_of(write(tmp_path, "both.csv", "q,a\nHow?,1\n"))
    assert both.startswith("columns 'question' and 'answer' not found in both.csv")


def test_wrong_columns_in_jsonl_when_no_row_has_the_column(tmp_path):
    path = write(tmp_path, "data.jsonl", jsonl([{"question": "a", "label": 1}] * 2))
    message = error_of(path)
    assert message.startswith("column 'answer' not found in data.jsonl")
    assert "the file has columns: question, label." in message


def test_a_jsonl_row_missing_the_column_is_an_error_for_that_row(tmp_path):
    rows = [{"question": "a", "answer": 1}, {"question": "b"}, {"question": "c", "answer": 3}]
    message = error_of(write(tmp_path, "data.jsonl", jsonl(rows)))
    assert message == "1 problem in data.jsonl:\n  line 2: no 'answer' value"


def test_bad_encoding_in_csv_names_the_row_line_and_byte_offset(tmp_path):
    raw = b"question,answer\nq1,1\nq2,2\nq3 \xff\xfe,3\n"
    message = error_of(write(tmp_path, "data.csv", raw))
    offset = raw.index(b"\xff")
    assert f"row 3 (line 4) has bytes that cannot be decoded at byte offset {offset}" in message
    assert "Save the file as UTF-8" in message


def test_bad_encoding_in_jsonl_after_a_bom_counts_offsets_from_the_first_byte(tmp_path):
    raw = (
        b"\xef\xbb\xbf" + jsonl([{"question": "a", "answer": 1}] * 2).encode() + b'{"q": "\xe9"}\n'
    )
    message = error_of(write(tmp_path, "data.jsonl", raw))
    offset = raw.index(b"\xe9")
    assert f"line 3 has bytes that cannot be decoded at byte offset {offset}" in message


def test_utf16_files_are_named_as_such(tmp_path):
    path = write(tmp_path, "data.csv", "question,answer\nq,1\n".encode("utf-16"))
    message = error_of(path)
    assert "UTF-16" in message
    assert "the header (line 1)" in message


def test_empty_answers_are_named_by_row(tmp_path):
    rows = [{"question": f"q{i}", "answer": 1} for i in range(4)] + [
        {"question": "q", "answer": ""}
    ]
    rows.append({"question": "q", "answer": None})
    message = error_of(write(tmp_path, "data.json", json.dumps(rows)))
    assert message == "2 problems in data.json:\n  row 5: empty answer\n  row 6: empty answer"
    csv_path = write(tmp_path, "data.csv", "question,answer\nq,1\nq,  \n")
    assert "row 2 (line 3): empty answer" in error_of(csv_path)


def test_a_10_mb_question_on_one_jsonl_line_is_a_row_error(tmp_path):
    rows = [{"question": "fine", "answer": 1}, {"question": "x" * TEN_MB, "answer": 2}]
    message = error_of(write(tmp_path, "big.jsonl", jsonl(rows)))
    assert "line 2: question is 10,000,000 characters long; the limit is 20,000" in message
    assert len(message) < 500  # the value itself is never echoed


def test_a_10_mb_question_in_csv_is_a_row_error_not_a_csv_field_limit_error(tmp_path):
    path = write(tmp_path, "big.csv", "question,answer\n" + "y" * TEN_MB + ",3\nok,4\n")
    message = error_of(path)
    assert message == (
        "1 problem in big.csv:\n"
        "  row 1 (line 2): question is 10,000,000 characters long; the limit is 20,000"
    )


def test_invalid_json_on_a_line(tmp_path):
    text = '{"question": "a", "answer": 1}\n{"question": "b", "answer": 2,}\n'
    message = error_of(write(tmp_path, "data.jsonl", text))
    assert "line 2: invalid JSON (" in message
    assert "column 31" in message


def test_a_line_that_is_not_an_object(tmp_path):
    text = '{"question": "a", "answer": 1}\n["b", 2]\n"c"\n'
    message = error_of(write(tmp_path, "data.jsonl", text))
    assert "line 2: is a list, not an object" in message
    assert "line 3: is a string, not an object" in message


def test_json_file_that_is_not_a_list_or_not_json(tmp_path):
    message = error_of(write(tmp_path, "data.json", '{"a": 1, "b": 2}'))
    assert "must hold a list of objects" in message
    assert "it holds an object" in message
    message = error_of(write(tmp_path, "lines.json", jsonl([{"question": "a", "answer": 1}] * 2)))
    assert "lines.json is not valid JSON: Extra data at line 2, column 1" in message
    assert "name it .jsonl" in message


def test_bad_letters(tmp_path):
    rows = [{"question": "a", "answer": "b"}, {"question": "b", "answer": "F"}]
    rows += [{"question": "c", "answer": "AB"}, {"question": "d", "answer": True}]
    message = error_of(write(tmp_path, "data.jsonl", jsonl(rows)), LETTER)
    assert (
        "line 1: answer 'b' is lower-case; the choices are the upper-case letters A, B, C"
        in message
    )
    assert "line 2: answer 'F' is not one of the choices A, B, C, D, E" in message
    assert "line 3: answer 'AB' is not one of the choices" in message
    assert "line 4: answer is true, not a letter" in message


def test_bad_numbers(tmp_path):
    path = write(tmp_path, "data.csv", "question,answer\na,twelve\nb,1.2.3\nc,$5\nd,-3.5\n")
    message = error_of(path)
    assert message.startswith("3 problems in data.csv:")
    assert "row 1 (line 2): answer 'twelve' is not a number" in message
    assert "row 2 (line 3): answer '1.2.3' is not a number" in message
    assert "row 3 (line 4): answer '$5' is not a number" in message
    bools = write(tmp_path, "data.json", json.dumps([{"question": "a", "answer": False}]))
    assert "row 1: answer is false, not a number" in error_of(bools)


def test_bad_yes_no(tmp_path):
    path = write(tmp_path, "data.csv", "question,answer\na,yes\nb,maybe\n")
    assert "row 2 (line 3): answer 'maybe' is not yes or no" in error_of(path, YES_NO)


def test_bad_split_values(tmp_path):
    rows = [{"question": "a", "answer": 1, "split": "train"}, {"question": "b", "answer": 2}]
    rows.append({"question": "c", "answer": 3, "split": "validation"})
    message = error_of(write(tmp_path, "data.jsonl", jsonl(rows)))
    assert "line 2: no 'split' value" in message
    assert "line 3: split 'validation' must be train or test" in message


def test_unknown_extension_names_the_supported_ones(tmp_path):
    message = error_of(write(tmp_path, "data.xlsx", b"PK"))
    assert "data.xlsx has '.xlsx'" in message
    for extension in (".jsonl", ".ndjson", ".json", ".csv", ".tsv"):
        assert extension in message


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("e.jsonl", ""),
        ("e.jsonl", "\n \n"),
        ("e.json", ""),
        ("e.json", "[]"),
        ("e.csv", ""),
        ("e.csv", "question,answer\n"),
        ("e.tsv", "\n\n"),
    ],
)
def test_empty_files_have_no_rows(tmp_path, name, content):
    assert error_of(write(tmp_path, name, content)) == f"{name} has no rows"


def test_many_errors_are_listed_once_with_and_n_more(tmp_path):
    text = "question,answer\n" + "".join(f"q{i},\n" for i in range(34))
    message = error_of(write(tmp_path, "data.csv", text))
    lines = message.split("\n")
    assert lines[0] == "34 problems in data.csv:"
    assert lines[1] == "  row 1 (line 2): empty answer"
    assert lines[20] == "  row 20 (line 21): empty answer"
    assert lines[21] == "  and 14 more"
    assert len(lines) == 22


def test_csv_row_with_too_many_fields_and_a_short_row(tmp_path):
    path = write(tmp_path, "data.csv", "question,answer\nWhat is 1,000 + 1?,1001\nq\n")
    message = error_of(path)
    assert "row 1 (line 2): has 3 fields but the header has 2" in message
    assert "row 2 (line 3): no 'answer' value" in message


def test_a_csv_error_becomes_a_row_named_user_error(tmp_path, monkeypatch):
    previous = csv.field_size_limit(100)
    monkeypatch.setattr(userfile, "CSV_FIELD_LIMIT", 100)
    try:
        path = write(tmp_path, "data.csv", "question,answer\nok,1\n" + "z" * 200 + ",2\n")
        message = error_of(path)
    finally:
        csv.field_size_limit(previous)
    assert message.startswith("data.csv, row 2 (line 3): cannot be read as CSV (field larger than")


def test_oversized_files_are_refused_before_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(userfile, "MAX_FILE_BYTES", 10)
    path = write(tmp_path, "data.jsonl", jsonl([{"question": "a", "answer": 1}]))
    message = error_of(path)
    assert message.startswith("data.jsonl is ")
    assert "the limit is" in message


def test_a_missing_file(tmp_path):
    assert "does not exist" in error_of(tmp_path / "nope.csv")


def test_values_that_are_neither_text_nor_numbers(tmp_path):
    text = '[{"question": ["a"], "answer": 1}, {"question": "b", "answer": NaN}]'
    message = error_of(write(tmp_path, "data.json", text))
    assert "row 1: question is a list; write text or a number" in message
    assert "row 2: answer is nan; write text or a number" in message


@pytest.mark.parametrize("kind", ["jsonl", "json", "csv"])
def test_max_rows_stops_reading_at_the_first_row_beyond_it(tmp_path, kind):
    rows = [{"question": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(3)]
    if kind == "jsonl":  # good rows, then bad lines the reader never reaches
        content = jsonl(rows) + "not json\n" * 1000
    elif kind == "json":
        content = json.dumps(rows + [[]] * 1000)
    else:
        content = "question,answer\n" + "".join(f"{r['question']},{r['answer']}\n" for r in rows)
        content += '"unterminated\n' * 1000
    path = write(tmp_path, f"mine.{kind}", content)
    with pytest.raises(userfile.TooManyRows, match=rf"mine\.{kind} has more than 2 rows") as info:
        load_user_file(path, NUMBER, max_rows=2)
    assert info.value.max_rows == 2
    assert len(load_user_file(write(tmp_path, f"ok.{kind}", _three(kind, rows)), NUMBER)) == 3
    assert len(load_user_file(tmp_path / f"ok.{kind}", NUMBER, max_rows=3)) == 3


def _three(kind: str, rows: list[dict]) -> str:
    if kind == "jsonl":
        return jsonl(rows)
    if kind == "json":
        return json.dumps(rows)
    return "question,answer\n" + "".join(f"{r['question']},{r['answer']}\n" for r in rows)


def test_max_rows_bounds_the_work_not_only_the_result(tmp_path, monkeypatch):
    parsed: list[str] = []
    real = userfile._parse_object
    monkeypatch.setattr(
        userfile, "_parse_object", lambda line, c: parsed.append(line) or real(line, c)
    )
    rows = [{"question": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(10_000)]
    with pytest.raises(userfile.TooManyRows):
        load_user_file(write(tmp_path, "big.jsonl", jsonl(rows)), NUMBER, max_rows=10)
    assert len(parsed) == 11  # the one beyond the limit, and no more
