"""The paper's twelve reasoning tasks by key: answer type, split sizes, Hub source, synthetic.

Hub ids were found by search and could not be loaded on the machine this was written on: they are
configuration, verified by a user with network (METHOD.md, "The twelve tasks").
"""

from __future__ import annotations

from rtdemo.errors import UserError
from rtdemo.tasks.types import AnswerFormat, HubSource, TaskSpec

NUMBER = AnswerFormat("number")
YES_NO = AnswerFormat("yes_no")
TEXT = AnswerFormat("text")


def _letters(letters: str) -> AnswerFormat:
    return AnswerFormat("letter", letters)


def _hub(dataset_id: str, adapter: str, config: str | None = None, test: str = "test", **columns):
    return HubSource(dataset_id, config, {"train": "train", "test": test}, adapter, **columns)


_TASKS = [
    TaskSpec(
        "single_eq",
        "SingleEq",
        NUMBER,
        {"train": 356, "test": 152},
        description="One-step equation word problems (MAWPS).",
        notes=("No canonical Hub dataset: use the paper files or upload a file.",),
    ),
    TaskSpec(
        "addsub",
        "AddSub",
        NUMBER,
        {"train": 276, "test": 119},
        description="Addition and subtraction word problems (MAWPS).",
        notes=("No canonical Hub dataset: use the paper files or upload a file.",),
    ),
    TaskSpec(
        "multiarith",
        "MultiArith",
        NUMBER,
        {"train": 420, "test": 180},
        hub=_hub("ChilleD/MultiArith", "plain", answer_column="final_ans"),
        description="Multi-step arithmetic word problems (MAWPS).",
    ),
    TaskSpec(
        "gsm8k",
        "GSM8K",
        NUMBER,
        {"train": 7473, "test": 1319},
        hub=_hub("openai/gsm8k", "gsm8k", config="main"),
        description="Grade-school math word problems.",
        notes=(
            "The paper files hold only the 1,319 test items; the training set comes from the Hub.",
        ),
    ),
    TaskSpec(
        "aqua",
        "AQUA-RAT",
        _letters("ABCDE"),
        {"train": 10000, "test": 254},
        hub=_hub("deepmind/aqua_rat", "aqua", config="raw"),
        description="Algebraic word problems with five answer choices.",
        notes=(
            "Comes from the Hub only. With the paper's split file the training set is its 10,000 "
            "sampled items; without it, the whole official training split.",
        ),
    ),
    TaskSpec(
        "svamp",
        "SVAMP",
        NUMBER,
        {"train": 700, "test": 300},
        hub=_hub("ChilleD/SVAMP", "svamp", answer_column="Answer"),
        description="Arithmetic word problems with varied structure.",
    ),
    TaskSpec(
        "date_understanding",
        "Date Understanding",
        _letters("ABCDEF"),
        {"train": 258, "test": 111},
        hub=_hub("tasksource/bigbench", "bigbench", config="date_understanding", test="validation"),
        description="BIG-bench: infer a date from a context, six choices.",
    ),
    TaskSpec(
        "tracking_shuffled_objects",
        "Tracking Shuffled Objects (3)",
        _letters("ABC"),
        {"train": 525, "test": 225},
        hub=_hub(
            "tasksource/bigbench", "bigbench", config="tracking_shuffled_objects", test="validation"
        ),
        description="BIG-bench: track three objects through swaps.",
    ),
    TaskSpec(
        "last_letter_concatenation",
        "Last Letter Concatenation (4 words)",
        TEXT,
        {"train": 350, "test": 150},
        hub=_hub("ChilleD/LastLetterConcat", "plain"),
        synthetic=True,
        description="Concatenate the last letters of four words.",
    ),
    TaskSpec(
        "coin_flip",
        "Coin Flip (4 people)",
        YES_NO,
        {"train": 350, "test": 150},
        synthetic=True,
        description="Is a coin still heads up after four people flip it or not?",
    ),
    TaskSpec(
        "commonsense_qa",
        "CommonsenseQA",
        _letters("ABCDE"),
        {"train": 9741, "test": 1221},
        hub=_hub("tau/commonsense_qa", "commonsense_qa", test="validation"),
        description="Commonsense multiple choice; the official dev set is the test split.",
    ),
    TaskSpec(
        "strategy_qa",
        "StrategyQA",
        YES_NO,
        {"train": 1603, "test": 687},
        hub=_hub("ChilleD/StrategyQA", "strategy_qa"),
        description="Yes/no questions that need implicit multi-step reasoning.",
    ),
]

TASKS: dict[str, TaskSpec] = {task.key: task for task in _TASKS}


def get_task(key: str) -> TaskSpec:
    """The task with this key, or a UserError that lists the keys."""
    try:
        return TASKS[key]
    except KeyError:
        raise UserError(f"unknown task {key!r}; the tasks are: {', '.join(TASKS)}") from None
