"""The Hub source: real `datasets.load_dataset` on local copies in each dataset's schema, and a
clear, immediate message when there is neither network nor a copy."""

from __future__ import annotations

import json
import socket

import pytest

from rtdemo.errors import UserError
from rtdemo.tasks import SourceOptions, get_task, load_examples, source_status
from rtdemo.tasks.hub import hub_unreachable_reason, verbalise


def write_copy(root, dataset_id, config, split_rows):
    folder = root / dataset_id / (config or "")
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in split_rows.items():
        with open(folder / f"{split}.jsonl", "w") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
    return root


def load(tmp_path, key, split):
    return load_examples(key, split, "hub", SourceOptions(hub_dir=tmp_path))


def test_gsm8k_answer_after_the_final_marker(tmp_path):
    rows = [{"question": "Q1?", "answer": "2 + 2 = <<2+2=4>>4\n#### 1,004"}]
    write_copy(tmp_path, "openai/gsm8k", "main", {"train": rows, "test": rows})
    [e] = load(tmp_path, "gsm8k", "train")
    assert (e.question, e.answer, e.split) == ("Q1?", "1,004", "train")


def test_aqua_options_are_verbalised_like_the_paper(tmp_path):
    row = {
        "question": "How many?",
        "options": ["A)21", "B)21.5", "C)22", "D)22.5", "E)23"],
        "rationale": "...",
        "correct": "C",
    }
    write_copy(tmp_path, "deepmind/aqua_rat", "raw", {"train": [row], "test": [row]})
    [e] = load(tmp_path, "aqua", "test")
    assert e.question == "How many? Answer choices: (A) 21, (B) 21.5, (C) 22, (D) 22.5, (E) 23."
    assert e.answer == "C"


def test_commonsense_qa_uses_validation_as_test_and_matches_the_paper_wording(tmp_path, paper_data):
    row = {
        "id": "x",
        "question": "The sanctions against the school were a punishing blow, and "
        "they seemed to what the efforts the school had made to change?",
        "question_concept": "punishing",
        "choices": {
            "label": ["A", "B", "C", "D", "E"],
            "text": ["ignore", "enforce", "authoritarian", "yell at", "avoid"],
        },
        "answerKey": "A",
    }
    write_copy(tmp_path, "tau/commonsense_qa", None, {"train": [row], "validation": [row, row]})
    test = load(tmp_path, "commonsense_qa", "test")
    assert len(test) == 2
    paper = json.loads((paper_data / "dataset" / "commonsense_qa.json").read_text())
    assert test[0].question == paper[0]["question"] and test[0].answer == paper[0]["answer"]


def test_bigbench_multiple_choice_and_which_choice_wording(tmp_path):
    row = {
        "inputs": "Q: Yesterday was April 30, 2021. What is the date today in MM/DD/YYYY?\nA:",
        "targets": ["05/01/2021"],
        "multiple_choice_targets": ["06/12/2021", "05/01/2021"],
        "multiple_choice_scores": [0, 1],
        "idx": 0,
    }
    write_copy(
        tmp_path, "tasksource/bigbench", "date_understanding", {"train": [row], "validation": [row]}
    )
    [e] = load(tmp_path, "date_understanding", "test")
    assert e.question == (
        "Yesterday was April 30, 2021. What is the date today in MM/DD/YYYY?\n"
        "Which choice is true? Answer choices: (A) 06/12/2021, (B) 05/01/2021."
    )
    assert e.answer == "B"


def test_strategy_qa_svamp_multiarith_and_last_letter(tmp_path):
    write_copy(
        tmp_path,
        "ChilleD/StrategyQA",
        None,
        {
            "train": [{"question": "Is ice cold?", "answer": True}],
            "test": [{"question": "Is fire cold?", "answer": False}],
        },
    )
    write_copy(
        tmp_path,
        "ChilleD/SVAMP",
        None,
        {
            "train": [{"Body": "Tom has 3 apples.", "Question": "How many?", "Answer": 3.0}],
            "test": [{"Body": "B.", "Question": "Q?", "Answer": 1.0}],
        },
    )
    write_copy(
        tmp_path,
        "ChilleD/MultiArith",
        None,
        {"train": [{"question": "1+1?", "final_ans": "2"}], "test": []},
    )
    write_copy(
        tmp_path,
        "ChilleD/LastLetterConcat",
        None,
        {"train": [{"question": "Take ...", "answer": "abcd"}], "test": []},
    )
    assert load(tmp_path, "strategy_qa", "test")[0].answer == "No"
    assert load(tmp_path, "svamp", "train")[0].question == "Tom has 3 apples. How many?"
    assert load(tmp_path, "svamp", "train")[0].answer == "3.0"
    assert load(tmp_path, "multiarith", "train")[0].answer == "2"
    assert load(tmp_path, "last_letter_concatenation", "train")[0].answer == "abcd"


def test_a_copy_with_the_wrong_schema_names_its_columns(tmp_path):
    write_copy(tmp_path, "openai/gsm8k", "main", {"train": [{"problem": "Q", "solution": "1"}]})
    with pytest.raises(UserError, match=r"expected schema.*problem, solution"):
        load(tmp_path, "gsm8k", "train")


def test_offline_without_a_copy_is_one_clear_message(tmp_path):
    hub_unreachable_reason.cache_clear()
    with pytest.raises(UserError, match="needs network or a local copy: openai/gsm8k") as err:
        load(tmp_path, "gsm8k", "train")
    assert "HF_HUB_OFFLINE" in str(err.value)
    ok, why = source_status(get_task("gsm8k"), SourceOptions())["hub"]
    assert not ok and why.startswith("needs network or a local copy")


def test_unreachable_hub_fails_fast_instead_of_retrying(tmp_path, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("HF_DATASETS_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    hub_unreachable_reason.cache_clear()
    try:
        # The probe answers before datasets' ~25 s retry loop would start: the message says so.
        with pytest.raises(
            UserError, match=r"needs network or a local copy.*cannot reach 127.0.0.1"
        ):
            load(tmp_path, "strategy_qa", "train")
    finally:
        hub_unreachable_reason.cache_clear()


def test_tasks_without_a_hub_dataset_say_so():
    with pytest.raises(UserError, match="no Hub dataset"):
        load_examples("single_eq", "train", "hub")


def test_verbalise():
    assert verbalise(" Q? ", ["x", "y"]) == "Q? Answer choices: (A) x, (B) y."
