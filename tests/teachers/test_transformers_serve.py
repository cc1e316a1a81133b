"""OpenAITeacher against a real third-party OpenAI-compatible server: `transformers serve`.

The fake server (tests/fakes) checks our side of the protocol; this checks that a server someone
else wrote agrees with it. A tiny model folder (tests/tiny_models.py) is served offline with

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 transformers serve FOLDER --host 127.0.0.1 --port P

in a subprocess (tests/teachers/serve.py), and the teacher is pointed at it with
`model=str(FOLDER)`: a server started with a model argument is pinned to it and answers 400 to
any other name. Random weights write nonsense, so only the protocol is asserted: texts are
strings, `finish_reason` is "stop" or "length", usage is counted, streaming yields pieces, and a
small generation run stores its samples. The same server on the real SmolLM2:
tests/teachers/test_smollm2_teacher.py.

Needs `transformers[serving]` (requirements-test.txt). Its `/v1/models` fails (500) without a Hub
cache folder, so nothing here depends on `/v1/models`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rtdemo.generation.run import GenerationSettings, run_generation
from rtdemo.generation.samples import load_samples
from rtdemo.tasks.registry import TASKS
from rtdemo.tasks.synthetic import SyntheticSettings, generate
from rtdemo.teachers.base import Completion, TeacherError, answer_prompt, rationale_prompt
from rtdemo.teachers.openai_compat import OpenAITeacher
from rtdemo.workspace.store import Store
from tests.helpers import run_teacher
from tests.teachers.serve import Served, log_tail, serve

pytestmark = pytest.mark.slow

PROMPT = rationale_prompt("A coin is heads up. Ada flips the coin. Is the coin still heads up?")
FINISH_REASONS = {"stop", "length"}


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[Served]:
    """`transformers serve` on a tiny GPT-2 folder, for the whole module; killed at teardown."""
    import torch

    from tests.tiny_models import build_tiny_causal_lm

    root = tmp_path_factory.mktemp("serve")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        folder = build_tiny_causal_lm(root / "tiny-gpt2")
    finally:
        torch.set_num_threads(threads)
    with serve(folder, root) as server:
        yield server


def _teacher(served: Served, **kwargs) -> OpenAITeacher:
    kwargs = {"model": served.model, "base_url": served.base_url, "api_key": "anything"} | kwargs
    return OpenAITeacher(timeout=60.0, **kwargs)


def _check(completion: Completion, max_tokens: int) -> None:
    assert isinstance(completion, Completion)
    assert isinstance(completion.text, str)
    assert completion.finish_reason in FINISH_REASONS
    # transformers serve reports usage: the prompt was read, at most the cap was written.
    assert completion.prompt_tokens > 0
    assert 0 < completion.completion_tokens <= max_tokens
    if completion.finish_reason == "length":
        assert completion.completion_tokens == max_tokens


@pytest.mark.parametrize("mode", ["chat", "completions"])
def test_rationale_then_answer(served, mode):
    async def calls(teacher: OpenAITeacher):
        [rationale] = await teacher.rationale(PROMPT, n=1, temperature=0.0, max_tokens=8)
        answer = await teacher.answer(answer_prompt(PROMPT, rationale.text), max_tokens=4)
        return rationale, answer

    rationale, answer = run_teacher(_teacher(served, mode=mode), calls)
    _check(rationale, 8)
    _check(answer, 4)


def test_diverse_samples_from_a_server_that_ignores_n(served):
    # transformers serve ignores `n` (it warns and answers once): the teacher asks again for the
    # rest, so D samples still arrive.
    completions = run_teacher(
        _teacher(served),
        lambda t: t.rationale(PROMPT, n=2, temperature=0.7, max_tokens=6),
    )
    assert len(completions) == 2
    for completion in completions:
        _check(completion, 6)


@pytest.mark.parametrize("mode", ["chat", "completions"])
def test_streaming_yields_the_greedy_text_in_pieces(served, mode):
    async def calls(teacher: OpenAITeacher):
        pieces = [p async for p in teacher.stream(PROMPT, temperature=0.0, max_tokens=8)]
        [whole] = await teacher.rationale(PROMPT, n=1, temperature=0.0, max_tokens=8)
        return pieces, whole

    pieces, whole = run_teacher(_teacher(served, mode=mode), calls)
    assert pieces and all(isinstance(p, str) and p for p in pieces)
    assert "".join(pieces) == whole.text  # same prompt, greedy: the same continuation


def test_a_model_name_the_server_does_not_serve_is_a_clear_error(served):
    with pytest.raises(TeacherError) as caught:
        run_teacher(
            _teacher(served, model="not-the-served-model"),
            lambda t: t.answer(PROMPT, max_tokens=2),
        )
    assert caught.value.kind == "bad_request" and not caught.value.retryable
    assert "not-the-served-model" in str(caught.value)


def test_generation_run_stores_every_sample(served, tmp_path):
    questions = generate("coin_flip", SyntheticSettings(size=20), "train")[:3]
    settings = GenerationSettings(samples=1, max_tokens=12, max_attempts=2, backoff=0.1)
    with Store(tmp_path / "ws") as store:
        exp = store.create_experiment("serve", "coin_flip")
        store.add_questions(exp.id, questions)
        stats = run_generation(
            store, exp, _teacher(served), settings, questions, TASKS["coin_flip"].answer, None
        )
        samples = load_samples(store, exp.id)
    assert (stats.done, stats.failed, stats.requests) == (3, 0, 6), log_tail(served.log)
    assert len(samples) == 3 and all(s.status == "done" for s in samples)
    assert {s.idx for s in samples} == {q.index for q in questions}
    for sample in samples:
        assert sample.model == served.model and sample.base_url == served.base_url
        assert isinstance(sample.rationale, str) and isinstance(sample.answer_text, str)
        assert sample.rationale_finish in FINISH_REASONS
        assert sample.answer_finish in FINISH_REASONS
        assert sample.prompt_tokens > 0 and sample.completion_tokens > 0
