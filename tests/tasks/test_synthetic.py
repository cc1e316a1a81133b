"""Synthetic Coin Flip and Last Letter Concatenation: deterministic, correct, any length."""

from __future__ import annotations

import re

import pytest

from rtdemo.errors import UserError
from rtdemo.tasks import SourceOptions, load_examples
from rtdemo.tasks.synthetic import NAMES, SyntheticSettings, generate

FLIP = re.compile(r"(\w+) (flips|does not flip) the coin\.")
WORDS = re.compile(r'Take the last letters of each words in "([^"]+)" and concatenate them\.')


def test_same_seed_same_task_different_seed_different_task():
    a = generate("coin_flip", SyntheticSettings(seed=3, size=50))
    assert a == generate("coin_flip", SyntheticSettings(seed=3, size=50))
    assert a != generate("coin_flip", SyntheticSettings(seed=4, size=50))


@pytest.mark.parametrize("people", [1, 4, 9])
def test_coin_flip_answers_follow_the_flips(people):
    examples = generate("coin_flip", SyntheticSettings(seed=1, size=200, length=people))
    for e in examples:
        steps = FLIP.findall(e.question)
        assert len(steps) == people
        assert len({name for name, _ in steps}) == people
        flips = sum(verb == "flips" for _, verb in steps)
        assert e.answer == ("yes" if flips % 2 == 0 else "no")
        assert e.question.startswith("A coin is heads up. ")
        assert e.question.endswith(
            'Is the coin still heads up? Note that "flip" here means "reverse".'
        )
    answers = {e.answer for e in examples}
    assert answers == {"yes", "no"}


@pytest.mark.parametrize("words", [2, 4, 7])
def test_last_letter_answers_are_the_last_letters(words):
    for e in generate(
        "last_letter_concatenation", SyntheticSettings(seed=2, size=100, length=words)
    ):
        listed = WORDS.fullmatch(e.question).group(1).split(" ")
        assert len(listed) == words
        assert e.answer == "".join(w[-1] for w in listed)


def test_splits_follow_the_papers_70_30_rule_and_partition_the_set():
    settings = SyntheticSettings(seed=0, size=500)
    train = load_examples("coin_flip", "train", "synthetic", SourceOptions(synthetic=settings))
    test = load_examples("coin_flip", "test", "synthetic", SourceOptions(synthetic=settings))
    assert (len(train), len(test)) == (350, 150)
    assert sorted(e.index for e in train + test) == list(range(500))


def test_symbolic_tasks_load_with_no_data_folder():
    for key in ("coin_flip", "last_letter_concatenation"):
        assert len(load_examples(key, "test")) == 150  # default source resolves to synthetic


def test_bad_settings_and_non_synthetic_tasks_are_refused():
    with pytest.raises(UserError, match="size"):
        SyntheticSettings(size=0)
    with pytest.raises(UserError, match="between 1 and"):
        SyntheticSettings(length=len(NAMES) + 1)
    with pytest.raises(UserError, match="no synthetic generator"):
        load_examples("gsm8k", "test", "synthetic")


def test_a_length_range_mixes_question_lengths_deterministically():
    settings = SyntheticSettings(seed=5, size=300, length=4, min_length=2)
    examples = generate("last_letter_concatenation", settings)
    lengths = {len(WORDS.fullmatch(e.question).group(1).split()) for e in examples}
    assert lengths == {2, 3, 4}
    assert examples == generate("last_letter_concatenation", settings)
    # A fixed length draws the same questions as before the range existed.
    fixed = generate("coin_flip", SyntheticSettings(seed=3, size=5))
    assert fixed == generate("coin_flip", SyntheticSettings(seed=3, size=5, min_length=4))
    with pytest.raises(UserError, match="min length"):
        SyntheticSettings(length=3, min_length=5)


def test_split_size_is_known_before_generating():
    from rtdemo.tasks.synthetic import split_size

    for size in (1, 2, 7, 30, 500, 1001):
        settings = SyntheticSettings(seed=1, size=size)
        for split in ("train", "test"):
            assert split_size(size, split) == len(generate("coin_flip", settings, split))
    assert (split_size(1_000_000, "train"), split_size(1_000_000, "test")) == (700_000, 300_000)


def test_a_limit_takes_the_first_questions_and_generates_only_up_to_them(monkeypatch):
    from rtdemo.tasks import synthetic

    settings = SyntheticSettings(seed=2, size=300, length=3, min_length=2)
    for split in ("train", "test", None):
        whole = generate("last_letter_concatenation", settings, split)
        assert generate("last_letter_concatenation", settings, split, 7) == whole[:7]
        options = SourceOptions(synthetic=settings)
        if split is not None:
            taken = load_examples("last_letter_concatenation", split, "synthetic", options, 7)
            assert taken == whole[:7]
    assert generate("coin_flip", settings, "train", 0) == []
    with pytest.raises(UserError, match="0 or more"):
        load_examples("coin_flip", "train", "synthetic", SourceOptions(), limit=-1)

    calls = []
    real = synthetic.GENERATORS["coin_flip"]
    monkeypatch.setitem(
        synthetic.GENERATORS, "coin_flip", lambda rng, n: calls.append(n) or real(rng, n)
    )
    huge = SyntheticSettings(size=synthetic.MAX_SIZE)
    assert len(generate("coin_flip", huge, "test", 5)) == 5
    assert len(calls) < 100  # not a million: a preview costs what it shows
