# ruff: noqa: E501 — the table rows read best one per line, as in METHOD.md
"""The paper's test accuracies (METHOD.md, "Paper results"), and when a comparison with them holds.

A figure is comparable only with the paper's data and split (`source: paper`) and a student of the
same family and size; the synthetic offline demo is comparable to no cell.
"""

from __future__ import annotations

TASK_ORDER = (
    "single_eq", "addsub", "multiarith", "gsm8k", "aqua", "svamp", "date_understanding",
    "tracking_shuffled_objects", "last_letter_concatenation", "coin_flip", "commonsense_qa",
    "strategy_qa",
)  # fmt: skip

_ROWS = {
    ("teacher", "text-davinci-002"): "81.50 76.71 78.79 42.17 29.74 64.20 67.58 53.20 57.71 90.04 60.07 53.45",
    ("vanilla", "GPT-3 6.7B"): "24.34 25.21 15.00 6.14 15.35 20.67 14.41 33.78 32.67 72.00 76.17 65.21",
    ("cot", "GPT-3 6.7B"): "20.39 21.01 33.33 6.75 24.02 12.67 60.36 64.44 52.67 98.67 56.76 55.02",
    ("diverse", "GPT-3 6.7B"): "24.34 31.09 53.33 - - 30.33 83.78 73.33 62.00 100.00 - 58.22",
    ("vanilla", "Flan-T5 700M"): "7.24 12.61 18.89 5.53 24.80 11.00 82.88 33.78 53.33 100.00 66.75 63.90",
    ("cot", "Flan-T5 700M"): "11.84 10.92 14.44 5.38 28.35 10.67 84.68 55.11 64.00 100.00 66.83 59.83",
    ("diverse", "Flan-T5 700M"): "10.53 15.13 20.00 - - 13.67 87.39 89.33 65.33 100.00 - 61.72",
    ("vanilla", "GPT-2 124M"): "5.26 9.24 12.22 2.73 24.80 10.33 27.93 33.78 1.33 60.00 20.88 54.44",
    ("cot", "GPT-2 124M"): "3.95 5.88 8.33 3.03 22.44 4.33 25.23 38.67 4.67 77.33 22.69 55.75",
    ("diverse", "GPT-2 124M"): "6.58 5.88 17.78 - - 10.33 21.62 45.33 6.00 76.00 - 56.33",
}  # fmt: skip

# Student ids that are the paper's students (same family and size).
PAPER_STUDENTS = {
    "gpt2": "GPT-2 124M",
    "openai-community/gpt2": "GPT-2 124M",
    "google/flan-t5-large": "Flan-T5 700M",
}


def _table() -> dict[tuple[str, str], dict[str, float | None]]:
    table = {}
    for key, row in _ROWS.items():
        cells = row.split()
        table[key] = {
            t: None if c == "-" else float(c) / 100 for t, c in zip(TASK_ORDER, cells, strict=True)
        }
    return table


PAPER = _table()


def paper_figure(
    task: str, row: str, student: str | None, source: str | None, teacher: str | None = None
) -> float | None:
    """The paper's accuracy (fraction) for a comparable setting, else None.

    `row` is "teacher", "vanilla", "cot" (D=1) or "diverse" (D>1); `student` the student id (not
    needed for the teacher); `source` the task's data source, which must be the paper's files;
    `teacher` the teacher model, which must be the paper's for the teacher row.
    """
    if source != "paper":
        return None
    if row == "teacher":
        if teacher != "text-davinci-002":
            return None
        return PAPER[("teacher", "text-davinci-002")].get(task)
    family = PAPER_STUDENTS.get(student or "")
    if family is None:
        return None
    return PAPER.get((row, family), {}).get(task)
