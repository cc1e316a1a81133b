"""LocalHFTeacher on tiny models built in the test (tests/tiny_models.py), loaded from folders
through `from_pretrained`, exactly as a downloaded Hub model would be.

What a Completion says is checked against what the model really wrote: the text is the decoded
continuation only, "length" when the cap is hit, "stop" when the model wrote a token its
generation config calls EOS (random weights rarely do, so the test makes a token the model writes
greedily its EOS), token counts as the tokenizer counts them.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from rtdemo.errors import UserError
from rtdemo.teachers.base import rationale_prompt
from rtdemo.teachers.local_hf import LocalHFTeacher
from tests.tiny_models import (
    build_tiny_causal_lm,
    build_tiny_seq2seq,
    greedy_token_ids,
    set_eos_token_id,
)

PROMPT = rationale_prompt("A coin is heads up. Ada flips the coin. Is the coin still heads up?")


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """Tiny GPT-2 and Llama folders, built once for the module (tests must not modify them)."""
    root = tmp_path_factory.mktemp("tiny")
    torch.set_num_threads(1)
    return {kind: build_tiny_causal_lm(root / kind, kind=kind) for kind in ("gpt2", "llama")}


def run(teacher: LocalHFTeacher, call):
    """Run `call(teacher)` in a fresh event loop, then free the model."""

    async def main():
        try:
            return await call(teacher)
        finally:
            await teacher.aclose()

    return asyncio.run(main())


def prompt_tokens(folder: Path, prompt: str = PROMPT) -> int:
    return len(AutoTokenizer.from_pretrained(folder)(prompt)["input_ids"])


def decode(folder: Path, ids: list[int]) -> str:
    return AutoTokenizer.from_pretrained(folder).decode(ids, skip_special_tokens=True)


def stop_folder(models: dict[str, Path], tmp_path: Path) -> tuple[Path, list[int], int]:
    """A copy of the Llama whose EOS is the token it greedily writes at position k >= 2 (its
    first occurrence); returns the folder, the greedy ids up to the new EOS, and k."""
    folder = Path(shutil.copytree(models["llama"], tmp_path / "llama-stop"))
    ids = greedy_token_ids(folder, PROMPT, max_new_tokens=12)
    k = next(i for i in range(2, len(ids)) if ids[i] not in ids[:i])
    set_eos_token_id(folder, ids[k])
    return folder, ids[: k + 1], k


def test_constructor_loads_nothing_and_names_the_folder(models):
    teacher = LocalHFTeacher(str(models["gpt2"]))
    assert teacher._model is None and teacher.device is None
    assert teacher.supports_n
    assert teacher.info.kind == "hf"
    assert teacher.info.model == str(models["gpt2"].resolve())
    assert "gpt2" in teacher.info.label
    hub = LocalHFTeacher("Qwen/Qwen2.5-7B")  # no network needed to construct
    assert hub.info.model == "Qwen/Qwen2.5-7B" and hub._model is None
    with pytest.raises(UserError, match="dtype"):
        LocalHFTeacher("x", dtype="int3")  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_answer_is_the_greedy_continuation_and_hits_the_cap(models, kind):
    folder = models[kind]
    completion = run(
        LocalHFTeacher(str(folder), device="cpu"), lambda t: t.answer(PROMPT, max_tokens=6)
    )
    expected = greedy_token_ids(folder, PROMPT, max_new_tokens=6)
    assert len(expected) == 6  # random weights: no EOS in the first six tokens
    assert completion.text == decode(folder, expected)
    assert not completion.text.startswith(PROMPT[:10])
    assert completion.finish_reason == "length"
    assert completion.completion_tokens == 6
    assert completion.prompt_tokens == prompt_tokens(folder)


def test_stop_when_the_model_writes_its_eos(models, tmp_path):
    folder, ids, k = stop_folder(models, tmp_path)
    teacher = LocalHFTeacher(str(folder))

    async def calls(t):
        return await t.answer(PROMPT, max_tokens=12), await t.rationale(
            PROMPT, n=2, temperature=0.0, max_tokens=12
        )

    answer, greedy = run(teacher, calls)
    assert teacher.device == "cpu"
    assert answer.finish_reason == "stop"
    assert answer.text == decode(folder, ids[:k])  # the EOS itself is not text
    assert answer.completion_tokens == k + 1  # ... but it was written
    # T=0 with n=2: the one greedy continuation twice; the prompt is counted once.
    assert [c.text for c in greedy] == [answer.text] * 2
    assert [c.finish_reason for c in greedy] == ["stop", "stop"]
    assert [c.prompt_tokens for c in greedy] == [answer.prompt_tokens, 0]


def test_n_samples_at_temperature(models):
    folder = models["llama"]
    teacher = LocalHFTeacher(str(folder), batch_size=2)  # 5 samples: chunks of 2, 2, 1
    torch.manual_seed(0)
    samples = run(teacher, lambda t: t.rationale(PROMPT, n=5, temperature=1.0, max_tokens=5))
    assert len(samples) == 5
    assert len({c.text for c in samples}) > 1  # sampled, not greedy
    assert all(c.finish_reason == "length" and c.completion_tokens == 5 for c in samples)
    assert [c.prompt_tokens for c in samples] == [prompt_tokens(folder)] + [0] * 4
    assert not any(c.text.startswith("Q:") for c in samples)


@pytest.mark.parametrize("which", ["length", "stop"])
def test_stream_pieces_make_the_greedy_completion(models, tmp_path, which):
    folder = models["llama"] if which == "length" else stop_folder(models, tmp_path)[0]
    max_tokens = 24

    async def calls(t):
        pieces = [p async for p in t.stream(PROMPT, temperature=0.0, max_tokens=max_tokens)]
        return pieces, await t.answer(PROMPT, max_tokens=max_tokens)

    pieces, answer = run(LocalHFTeacher(str(folder)), calls)
    assert answer.finish_reason == which
    assert all(pieces)
    assert "".join(pieces) == answer.text
    if which == "length":
        assert len(pieces) > 1  # streamed, not one piece at the end


def test_closing_a_stream_early_frees_the_model_for_the_next_call(models):
    folder = models["llama"]

    async def calls(t):
        stream = t.stream(PROMPT, temperature=0.0, max_tokens=200)
        first = await anext(stream)
        await stream.aclose()  # stops the generation thread, releases the lock
        return first, await t.answer(PROMPT, max_tokens=4)

    first, answer = run(LocalHFTeacher(str(folder)), calls)
    assert first
    assert answer.completion_tokens == 4


def test_generation_runs_off_the_event_loop_one_at_a_time(models, monkeypatch):
    folder = models["gpt2"]
    active, most, ticks = 0, 0, 0
    generate = LocalHFTeacher._generate

    def counting_generate(model, inputs, kwargs):
        nonlocal active, most
        active += 1
        most = max(most, active)
        try:
            time.sleep(0.05)  # widen the window in which a second generate could overlap
            return generate(model, inputs, kwargs)
        finally:
            active -= 1

    monkeypatch.setattr(LocalHFTeacher, "_generate", staticmethod(counting_generate))

    async def ticker(done: asyncio.Event):
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.005)

    async def calls(t):
        done = asyncio.Event()
        tick = asyncio.create_task(ticker(done))
        results = await asyncio.gather(
            *(t.answer(PROMPT, max_tokens=8) for _ in range(3)),
            t.rationale(PROMPT, n=2, temperature=1.0, max_tokens=8),
        )
        done.set()
        await tick
        return results

    *answers, samples = run(LocalHFTeacher(str(folder)), calls)
    assert most == 1  # one generate at a time on the one model
    assert ticks >= 20  # the loop kept running through 4 x 50 ms of generation
    assert len({a.text for a in answers}) == 1 and len(samples) == 2


def test_aclose_frees_the_model_and_a_later_call_reloads(models):
    teacher = LocalHFTeacher(str(models["gpt2"]))

    async def calls(t):
        first = await t.answer(PROMPT, max_tokens=3)
        await t.aclose()
        assert t._model is None and t._tokenizer is None
        return first, await t.answer(PROMPT, max_tokens=3)

    first, again = run(teacher, calls)
    assert first == again


@pytest.mark.parametrize(
    "model", ["{tmp}/no-such-model", "./no/such/folder", "nobody/no-such-model-xyz"]
)
def test_missing_model_offline_is_a_user_error(tmp_path, model):
    teacher = LocalHFTeacher(model.format(tmp=tmp_path))  # constructing is fine
    with pytest.raises(UserError, match="needs network or a local copy"):
        run(teacher, lambda t: t.answer(PROMPT, max_tokens=2))


def test_a_folder_that_is_not_a_causal_model_is_a_user_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"no config\.json"):
        run(LocalHFTeacher(str(tmp_path / "empty")), lambda t: t.answer(PROMPT, max_tokens=2))
    t5 = build_tiny_seq2seq(tmp_path / "t5")
    with pytest.raises(UserError, match="causal"):
        run(LocalHFTeacher(str(t5)), lambda t: t.answer(PROMPT, max_tokens=2))
