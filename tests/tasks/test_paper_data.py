"""The paper's files: exact split sizes, GSM8K's index mapping, every gold answer judged correct."""

from __future__ import annotations

import json
import shutil

import pytest

from rtdemo.errors import UserError
from rtdemo.tasks import SourceOptions, get_task, load_examples
from rtdemo.tasks.cleansing import judge

LOCAL_TASKS = [
    "single_eq",
    "addsub",
    "multiarith",
    "svamp",
    "date_understanding",
    "tracking_shuffled_objects",
    "last_letter_concatenation",
    "coin_flip",
    "commonsense_qa",
    "strategy_qa",
]


@pytest.mark.parametrize("key", LOCAL_TASKS)
def test_ten_tasks_load_with_the_papers_exact_split_sizes(key, paper_data):
    options = SourceOptions(paper_data=paper_data)
    task = get_task(key)
    train = load_examples(key, "train", "paper", options)
    test = load_examples(key, "test", "paper", options)
    assert len(train) == task.paper_sizes["train"]
    assert len(test) == task.paper_sizes["test"]
    split = json.loads((paper_data / "split" / f"{key}__default.json").read_text())
    assert [e.index for e in train] == split["train"]
    assert not {e.index for e in train} & {e.index for e in test}


def test_gsm8k_test_split_maps_indices_onto_the_test_only_file(paper_data):
    test = load_examples("gsm8k", "test", "paper", SourceOptions(paper_data=paper_data))
    items = json.loads((paper_data / "dataset" / "gsm8k_test_only.json").read_text())
    assert len(test) == 1319
    assert test[0].index == 7473 and test[0].question == items[0]["question"]
    assert test[-1].answer == items[-1]["answer"]


def test_gsm8k_train_is_not_in_the_paper_files_and_says_so(paper_data):
    with pytest.raises(UserError, match="training set is on the Hub"):
        load_examples("gsm8k", "train", "paper", SourceOptions(paper_data=paper_data))


@pytest.mark.parametrize("key", [*LOCAL_TASKS, "gsm8k"])
def test_every_gold_answer_written_as_a_teacher_would_is_judged_correct(key, paper_data):
    task = get_task(key)
    options = SourceOptions(paper_data=paper_data)
    splits = ["test"] if key == "gsm8k" else ["train", "test"]
    examples = [e for s in splits for e in load_examples(key, s, "paper", options)]
    wrong = [
        e for e in examples if not judge(f" {e.answer}.", e.answer, task.answer, "teacher").correct
    ]
    assert wrong == []
    # And as a Fine-tune-CoT student would write it.
    wrong = [
        e for e in examples if not judge(f" r --> {e.answer}", e.answer, task.answer, "cot").correct
    ]
    assert wrong == []


def test_missing_or_inconsistent_paper_folder_gives_clear_errors(tmp_path, paper_data):
    with pytest.raises(UserError, match=r"paper-data folder .* does not exist"):
        load_examples("addsub", "train", "paper", SourceOptions(paper_data=tmp_path / "nope"))
    (tmp_path / "split").mkdir()
    (tmp_path / "dataset").mkdir()
    shutil.copy(paper_data / "split" / "addsub__default.json", tmp_path / "split")
    with pytest.raises(UserError, match=r"addsub.json is missing"):
        load_examples("addsub", "train", "paper", SourceOptions(paper_data=tmp_path))
    (tmp_path / "dataset" / "addsub.json").write_text('[{"question": "q", "answer": "1"}]')
    with pytest.raises(UserError, match="outside the dataset file"):
        load_examples("addsub", "train", "paper", SourceOptions(paper_data=tmp_path))
    (tmp_path / "dataset" / "addsub.json").write_text("not json")
    with pytest.raises(UserError, match="cannot read paper file"):
        load_examples("addsub", "train", "paper", SourceOptions(paper_data=tmp_path))


def test_environment_variable_selects_the_folder(paper_data, monkeypatch):
    monkeypatch.setenv("RTDEMO_PAPER_DATA", str(paper_data))
    assert len(load_examples("svamp", "test")) == 300  # default source: the paper files
