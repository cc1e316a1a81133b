"""The built-in offline teacher: correct step-by-step rationales for the two symbolic tasks.

It is what runs when there is no key and no network. It is not a language model: it parses Coin
Flip and Last Letter Concatenation questions and writes the reasoning out in one of several
phrasings (diverse samples at temperature > 0), making a deliberate mistake in a configurable share
of samples so that answer filtering has work to do. Token counts are word counts. Everything it
writes is labelled as coming from the built-in teacher.
"""

from __future__ import annotations

import random
import re
from collections.abc import AsyncIterator, Sequence

from rtdemo.teachers.base import Completion, IndexedTeacher, TeacherError, TeacherInfo

LABEL = (
    "Built-in offline teacher (rule-based, Coin Flip and Last Letter only; not a language model)"
)
_COIN_STEP = re.compile(r"(\S+) (flips|does not flip) the coin\.")
_WORDS = re.compile(r'Take the last letters? of (?:each|the) words? in "([^"]+)"')
_QUESTION = re.compile(r"Q: (.*)\nA: Let's think step by step\.", re.S)
_FINAL = re.compile(r"So the answer is (.+?)\.\s*$")


def _coin_rationale(question: str, rng: random.Random, style: int, wrong: bool) -> str | None:
    steps = _COIN_STEP.findall(question)
    if not steps or "coin is heads up" not in question:
        return None
    flips = [verb == "flips" for _, verb in steps]
    if wrong:  # miscount one person: the classic slip
        slip = rng.randrange(len(flips))
        flips[slip] = not flips[slip]
    count = sum(flips)
    heads = count % 2 == 0
    answer = "yes" if heads else "no"
    if style == 0:
        side, parts = True, ["The coin starts heads up."]
        for (name, _), flip in zip(steps, flips, strict=True):
            side = side != flip
            verb = "flips it" if flip else "does not flip it"
            parts.append(f"{name} {verb}, so it is {'heads' if side else 'tails'} up.")
        parts.append(
            f"The coin ends {'heads' if heads else 'tails'} up. So the answer is {answer}."
        )
    elif style == 1:
        tally = ", ".join(
            f"{name}: {'flip' if f else 'no flip'}"
            for (name, _), f in zip(steps, flips, strict=True)
        )
        parity = "even" if heads else "odd"
        parts = [
            f"Let's count the flips. {tally}.",
            f"That is {count} flip{'s' * (count != 1)}, an {parity} number,",
            f"so the coin is {'still' if heads else 'no longer'} heads up. "
            f"So the answer is {answer}.",
        ]
    else:
        names = [name for (name, _), f in zip(steps, flips, strict=True) if f]
        who = " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
        who = who or "nobody"
        parts = [
            f"Only {who} flipped the coin, {count} time{'s' * (count != 1)} in all.",
            "Each flip reverses the coin, so an even number of flips leaves it heads up.",
            f"{count} is {'even' if heads else 'odd'}, so the coin is "
            f"{'heads' if heads else 'tails'} up. So the answer is {answer}.",
        ]
    return " " + " ".join(parts)


def _letter_rationale(question: str, rng: random.Random, style: int, wrong: bool) -> str | None:
    match = _WORDS.search(question)
    if not match:
        return None
    words = match.group(1).split()
    letters = [w[-1] for w in words]
    if wrong:  # take the second-to-last letter of one word
        slip = rng.randrange(len(words))
        if len(words[slip]) > 1:
            letters[slip] = words[slip][-2]
        else:
            letters[slip] = letters[slip].swapcase() if letters[slip].isalpha() else "x"
    joined = "".join(letters)
    if style == 0:
        parts = [
            f'The last letter of "{w}" is "{ch}".' for w, ch in zip(words, letters, strict=True)
        ]
        parts.append(f'Concatenating them is "{joined}". So the answer is {joined}.')
    elif style == 1:
        parts = [f'"{w}" ends with "{ch}".' for w, ch in zip(words, letters, strict=True)]
        parts.append(f"Putting the letters together gives {joined}. So the answer is {joined}.")
    else:
        listed = ", ".join(f"{ch} (from {w})" for w, ch in zip(words, letters, strict=True))
        parts = [
            f"The last letters are {listed}.",
            f"Together: {joined}. So the answer is {joined}.",
        ]
    return " " + " ".join(parts)


RATIONALE_WRITERS = (_coin_rationale, _letter_rationale)
STYLES = 3


def _truncate(text: str, max_tokens: int) -> tuple[str, str, int]:
    """Cut to `max_tokens` words (the built-in teacher's tokens); return text, finish, tokens."""
    words = text.split(" ")
    if len(words) - 1 <= max_tokens:  # the leading space makes an empty first word
        return text, "stop", len(words) - 1
    return " ".join(words[: max_tokens + 1]), "length", max_tokens


class BuiltinTeacher(IndexedTeacher):
    """Rule-based rationales for Coin Flip and Last Letter Concatenation, with an error rate."""

    def __init__(self, error_rate: float = 0.1, seed: int = 0) -> None:
        if not 0.0 <= error_rate <= 1.0:
            raise ValueError(f"error_rate must be between 0 and 1, not {error_rate}")
        self.error_rate = error_rate
        self.seed = seed
        self.info = TeacherInfo(kind="builtin", model=f"builtin-err{error_rate:g}", label=LABEL)

    def _write(self, question: str, index: int, temperature: float) -> str:
        # Deterministic per (question, sample index): a resumed run gets the same samples.
        rng = random.Random(f"{self.seed}:{index}:{temperature}:{question}")
        greedy = temperature <= 0
        style = 0 if greedy else rng.randrange(STYLES)
        # Greedy decoding makes the same mistake on every call for a question; sampling varies.
        error_rng = random.Random(f"{self.seed}:{question}") if greedy else rng
        wrong = error_rng.random() < self.error_rate
        for writer in RATIONALE_WRITERS:
            text = writer(question, rng, style, wrong)
            if text is not None:
                return text
        raise TeacherError(
            "unsupported",
            "the built-in offline teacher only answers Coin Flip and Last Letter Concatenation "
            "questions: choose an OpenAI-compatible or local teacher for this task",
        )

    async def rationales_for(
        self, prompt: str, indices: Sequence[int], *, temperature: float, max_tokens: int
    ) -> list[Completion]:
        """One rationale per sample index (deterministic for a given index)."""
        match = _QUESTION.fullmatch(prompt)
        question = match.group(1) if match else prompt
        prompt_tokens = len(prompt.split())
        out = []
        for k, index in enumerate(indices):
            text, finish, tokens = _truncate(self._write(question, index, temperature), max_tokens)
            out.append(Completion(text, finish, prompt_tokens if k == 0 else 0, tokens))
        return out

    async def answer(self, prompt: str, *, max_tokens: int) -> Completion:
        """Call 2: read the conclusion the rationale reached; a truncated one gets a guess."""
        rationale = prompt.rsplit("\nTherefore, the answer is", 1)[0]
        final = _FINAL.search(rationale)
        text = f" {final.group(1)}." if final else " unknown."
        return Completion(text, "stop", len(prompt.split()), len(text.split()))

    async def stream(
        self, prompt: str, *, temperature: float, max_tokens: int
    ) -> AsyncIterator[str]:
        """The rationale word by word."""
        [completion] = await self.rationale(
            prompt, n=1, temperature=temperature, max_tokens=max_tokens
        )
        for i, word in enumerate(completion.text.split(" ")):
            yield word if i == 0 else " " + word
