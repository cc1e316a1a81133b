"""Answer cleansing, rule by rule (METHOD.md), for every answer type and output format."""

from __future__ import annotations

import pytest

from rtdemo.tasks.cleansing import Verdict, candidates, judge, metrics
from rtdemo.tasks.registry import TASKS
from rtdemo.tasks.types import AnswerFormat

NUM = AnswerFormat("number")
AE = AnswerFormat("letter", "ABCDE")
AF = AnswerFormat("letter", "ABCDEF")
AC = AnswerFormat("letter", "ABC")
YN = AnswerFormat("yes_no")
TXT = AnswerFormat("text")

# (answer format, output format, output text, gold, expected prediction, expected correct)
CASES = [
    # --- numbers: commas removed everywhere, first candidate for teacher/vanilla ---
    (NUM, "teacher", " 1,234.", "1234", "1234", True),
    (NUM, "teacher", " 1,234.", "1,234", "1234", True),  # gold commas removed too
    (NUM, "teacher", " -7 degrees", "-7", "-7", True),
    (NUM, "teacher", " 3.5 hours", "3.5", "3.5", True),
    (NUM, "teacher", " 18.0", "18", "18.0", True),  # numeric, not string, comparison
    (NUM, "teacher", " 18", "18.0", "18", True),
    (NUM, "teacher", " 18.0000001", "18", "18.0000001", True),  # within 1e-6
    (NUM, "teacher", " 18.01", "18", "18.01", False),
    (NUM, "teacher", " 5 apples and 7 pears", "7", "5", False),  # first candidate only
    (NUM, "teacher", "", "5", None, False),  # empty output
    (NUM, "teacher", " five", "5", None, False),  # words are not numbers
    (NUM, "vanilla", " 42", "42", "42", True),
    (NUM, "vanilla", " 4-2", "4", "4", True),  # "-2" is the second candidate
    (NUM, "vanilla", " $1,000,000.50 total", "1000000.5", "1000000.50", True),
    # --- numbers, Fine-tune-CoT: after the first "-->", else the last candidate ---
    (NUM, "cot", " 3 + 4 = 7 --> 7", "7", "7", True),
    (NUM, "cot", " 3 + 4 = 7 --> 7 --> 9", "7", "7", True),  # several delimiters: first one
    (NUM, "cot", " 3 + 4 = 7 so 7", "7", "7", True),  # missing delimiter: last candidate
    (NUM, "cot", " 7 apples minus 2 is 5", "7", "5", False),  # last candidate, not first
    (NUM, "cot", " 12 --> ", "12", None, False),  # nothing after the delimiter
    (NUM, "cot", " 2,500 --> 2,500.", "2500", "2500", True),
    (NUM, "cot", " drop to --> -3", "-3", "-3", True),
    (NUM, "cot", "", "1", None, False),
    # --- multiple choice: upper-case letters in range, anywhere, case-sensitive ---
    (AE, "teacher", " (B)", "B", "B", True),
    (AE, "teacher", " B.", "B", "B", True),
    (AE, "teacher", " b", "B", None, False),  # lower case yields nothing
    (AE, "teacher", " Based on this, (C)", "C", "B", False),  # crude on purpose
    (AE, "teacher", " F", "F", None, False),  # F is out of range for A–E
    (AF, "teacher", " F", "F", "F", True),
    (AC, "teacher", " (D) or (C)", "C", "C", True),  # D out of range for A–C
    (AE, "vanilla", " E", "E", "E", True),
    (AE, "cot", " ... so (A) is wrong --> D", "D", "D", True),
    (AE, "cot", " so the answer is (C)", "C", "C", True),  # no delimiter: last candidate
    (AE, "cot", " --> b", "B", None, False),
    # --- yes / no ---
    (YN, "teacher", ' "Yes."', "yes", "yes", True),
    (YN, "teacher", " Yes.", "Yes", "yes", True),  # StrategyQA's gold is lower-cased
    (YN, "teacher", " No, it is not.", "no", "no", True),
    (YN, "teacher", " yes:no", "no", "yes", False),  # first candidate
    (YN, "teacher", " Yesterday", "yes", None, False),  # whole tokens only
    (YN, "teacher", " 'no'", "no", "no", True),
    (YN, "vanilla", " no", "no", "no", True),
    (YN, "cot", " it flipped twice, yes. --> no", "no", "no", True),
    (YN, "cot", " no flips are odd\nso yes", "yes", "yes", True),  # last candidate
    (YN, "cot", "", "yes", None, False),
    # --- free text (last letter concatenation): the whole cleaned string ---
    (TXT, "teacher", ' "nk".', "nk", "nk", True),
    (TXT, "teacher", " n k", "nk", "nk", True),  # white space deleted
    (TXT, "teacher", " NK", "nk", "NK", False),  # case kept
    (TXT, "vanilla", " yajo", "yajo", "yajo", True),
    (TXT, "cot", ' The last letter of "Elon" is "n". --> nk', "nk", "nk", True),
    (TXT, "cot", " nk", "nk", "nk", True),  # no delimiter: the whole text is the one candidate
    (TXT, "cot", " -->  ", "nk", None, False),
    (TXT, "teacher", "", "nk", None, False),
]


@pytest.mark.parametrize(("answer", "fmt", "output", "gold", "prediction", "correct"), CASES)
def test_judge(answer, fmt, output, gold, prediction, correct):
    verdict = judge(output, gold, answer, fmt)
    assert verdict.prediction == prediction
    assert verdict.correct is correct


@pytest.mark.parametrize(
    ("answer", "text", "expected"),
    [
        (NUM, "1,000 and -2.5 and 3.", ["1000", "-2.5", "3"]),
        (AE, "(A) Apple, Banana, e, F", ["A", "A", "B"]),  # "e" is lower case, F out of range
        (YN, 'Yes.\n"no",yes:maybe', ["yes", "no", "yes"]),
        (TXT, ' "a b".\n', ["ab"]),
        (TXT, " . ' ", []),
    ],
)
def test_candidates(answer, text, expected):
    assert candidates(text, answer) == expected


@pytest.mark.parametrize(
    ("fmt", "output", "correct_format"),
    [
        ("cot", " r --> 1", True),
        ("cot", " r so 1", False),
        ("vanilla", " 1", True),
        ("teacher", " 1", True),
    ],
)
def test_correct_format(fmt, output, correct_format):
    assert judge(output, "1", NUM, fmt).correct_format is correct_format


def test_contains_answer_looks_at_all_candidates_of_the_chosen_text():
    # Vanilla/teacher: the whole text; the first candidate is wrong but gold is among them.
    v = judge(" 5 or 7", "7", NUM, "vanilla")
    assert (v.correct, v.contains_answer) == (False, True)
    # Fine-tune-CoT: only the text after "-->" counts when the delimiter is there.
    v = judge(" 7 apples --> 5", "7", NUM, "cot")
    assert (v.correct, v.contains_answer) == (False, False)
    v = judge(" 7 apples then 5", "7", NUM, "cot")
    assert (v.correct, v.contains_answer) == (False, True)


@pytest.mark.parametrize(
    ("finish", "complete"), [("stop", True), ("eos", True), ("length", False), (None, None)]
)
def test_complete_from_finish_reason(finish, complete):
    assert judge(" 1", "1", NUM, "cot", finish).complete is complete


def test_metrics_aggregate_and_unknown_completeness():
    verdicts = [
        judge(" a --> 1", "1", NUM, "cot", "stop"),
        judge(" a --> 2", "1", NUM, "cot", "length"),
        judge(" 1 or 2", "1", NUM, "cot"),  # no finish reason: not counted for "complete"
        judge("", "1", NUM, "cot"),
    ]
    m = metrics(verdicts)
    assert m.count == 4
    assert m.accuracy == pytest.approx(1 / 4)
    assert m.contains_answer == pytest.approx(2 / 4)
    assert m.correct_format == pytest.approx(2 / 4)
    assert m.complete == pytest.approx(1 / 2)
    assert metrics([]).count == 0
    assert metrics([Verdict("1", True, True, True, None)]).complete is None


def test_every_task_has_a_working_answer_format():
    for task in TASKS.values():
        gold = {"number": "3", "letter": task.answer.letters[:1], "yes_no": "yes", "text": "ab"}
        g = gold[task.answer_type]
        assert judge(f" {g}.", g, task.answer, "teacher").correct, task.key
        assert judge(f" {g}", g, task.answer, "vanilla").correct, task.key
        assert judge(f" because --> {g}", g, task.answer, "cot").correct, task.key
