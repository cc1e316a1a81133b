"""Deterministic generators for the two symbolic tasks: Coin Flip and Last Letter Concatenation.

Same seed, same size, same length → the same questions, answers and split, on any machine. The
length (people who may flip, words to take letters from) can differ from the paper's 4 so that a
student can be tested out of distribution. Splits follow the paper's rule for non-official splits
(`paper_split`: a 70/30 permutation with `RandomState(0)`).

    python -m rtdemo tasks show coin_flip --source synthetic --size 10 --length 6
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from rtdemo.errors import UserError
from rtdemo.tasks.types import Example
from rtdemo.tasks.userfile import TRAIN_FRACTION, paper_test_mask

# The project's own list of first names (not the paper's), varied in length and ending letter.
NAMES: tuple[str, ...] = tuple(
    """
    Ada Alma Amara Anders Anouk Arlo Astrid Aurelio Basil Beatrix Benedikt Bram Bruna Caius
    Calla Casimir Cedric Celeste Cosima Dagny Dario Delphine Dmitri Edda Elif Elio Emeric Enzo
    Esme Evander Fabian Farah Felix Fenna Florin Freya Gaspard Greta Gustav Hana Hector Hedda
    Helio Idris Ilse Imogen Ines Ivo Jago Jasper Joost Juno Kasimir Keziah Kirra Lars Leif Lenka
    Linus Liora Lorcan Luz Magnus Maren Marit Milo Mirela Nadia Nestor Niamh Nico Noor Odile
    Olaf Orla Osric Otto Paloma Pavel Petra Quentin Quinn Rafael Rasmus Rhea Rocco Ronja
    Rosalind Ruben Saoirse Selma Silas Sigrid Soren Stellan Tamsin Tarek Thea Tobias Ulla
    Umberto Valentin Vera Viggo Wanda Wendel Wilma Xavier Ximena Yara Yusuf Zaira Zeno Zofia
    Abel Bettina Clemens Dorit Eamon Fiona Gideon Harriet Ingrid Jovan Kalinda Leopold
    Marguerite Neville Ottilie Philippa Rupert Sabine Tristan Ursula Vivienne Wolfgang Yvonne
    Zoltan
    """.split()  # noqa: SIM905 — a word list reads better as prose
)

MAX_SIZE = 1_000_000


@dataclass(frozen=True)
class SyntheticSettings:
    """Parameters of a synthetic task: seed, number of questions, people or words per question."""

    seed: int = 0
    size: int = 500
    length: int = 4
    min_length: int | None = None  # if set, each question has min_length..length people/words

    def __post_init__(self) -> None:
        if self.min_length is not None and not 1 <= self.min_length <= self.length:
            raise UserError(
                f"synthetic min length must be between 1 and the length ({self.length}), "
                f"not {self.min_length}"
            )
        if not 1 <= self.size <= MAX_SIZE:
            raise UserError(f"synthetic size must be between 1 and {MAX_SIZE:,}, not {self.size}")
        if not 1 <= self.length <= len(NAMES):
            raise UserError(
                f"synthetic length (people or words per question) must be between 1 and "
                f"{len(NAMES)}, not {self.length}"
            )


def coin_flip_item(rng: random.Random, people: int) -> tuple[str, str]:
    """One Coin Flip question and its answer ("yes" iff the number of flips is even)."""
    names = rng.sample(NAMES, people)
    flips = [rng.random() < 0.5 for _ in names]
    steps = " ".join(
        f"{name} flips the coin." if flip else f"{name} does not flip the coin."
        for name, flip in zip(names, flips, strict=True)
    )
    question = (
        f"A coin is heads up. {steps} Is the coin still heads up? "
        'Note that "flip" here means "reverse".'
    )
    return question, "yes" if sum(flips) % 2 == 0 else "no"


def last_letter_item(rng: random.Random, words: int) -> tuple[str, str]:
    """One Last Letter Concatenation question and its answer (last letters joined, case kept)."""
    names = rng.sample(NAMES, words)
    question = f'Take the last letters of each words in "{" ".join(names)}" and concatenate them.'
    return question, "".join(name[-1] for name in names)


GENERATORS = {"coin_flip": coin_flip_item, "last_letter_concatenation": last_letter_item}


def split_size(size: int, split: str) -> int:
    """How many of `size` synthetic questions fall in `split` (the paper's 70/30 rule), without
    generating any: what quotas check before the work."""
    train = round(size * TRAIN_FRACTION)
    return train if split == "train" else size - train


def generate(
    key: str, settings: SyntheticSettings, split: str | None = None, limit: int | None = None
) -> list[Example]:
    """The synthetic task `key`, all of it or one split, in index order.

    `limit`: only the first `limit` questions (of the split), and only the items up to the last
    of them are generated, so a preview of a huge size costs what it shows.
    """
    if key not in GENERATORS:
        raise UserError(f"{key} has no synthetic generator; only {', '.join(GENERATORS)} do")
    if limit is not None and limit < 0:
        raise UserError(f"the number of questions to take must be 0 or more, not {limit}")
    rng = random.Random(f"{key}:{settings.seed}")
    low = settings.min_length or settings.length
    in_test = paper_test_mask(settings.size).tolist()
    out: list[Example] = []
    for i in range(settings.size):
        if limit is not None and len(out) >= limit:
            break
        # Every item draws from the one generator, in index order, wanted or not: the questions
        # do not depend on the split or the limit asked for.
        length = rng.randint(low, settings.length) if low < settings.length else low
        question, answer = GENERATORS[key](rng, length)
        name = "test" if in_test[i] else "train"
        if split is None or name == split:
            out.append(Example(question, answer, name, i))
    return out
