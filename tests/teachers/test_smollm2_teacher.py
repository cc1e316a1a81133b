"""SmolLM2-135M-Instruct, a real pretrained model, as the teacher: in-process (`--teacher hf`),
and behind a real third-party server (`transformers serve` on the prepared folder) driven by the
project's OpenAI-compatible teacher in chat and completions modes.

Short on purpose (the issue's budget for every real-model test is about 4 minutes on 2 cores):
2 coin-flip questions, at most 32 tokens a call, D = 2. What a real model changes:

- its rationales are real text, mostly wrong on Coin Flip, often cut at the token cap and
  sometimes rambling; every sample is stored with both finish reasons, answers are parsed by the
  paper's rules (tests/tasks check the rules themselves), and filtering, review, the
  per-question yield and the export take what it wrote;
- diversity: the local teacher samples for real at T > 0 (distinct rationales); `transformers
  serve` does not (SmolLM2's generation config does not set `do_sample`, so the server decodes
  greedily whatever `temperature` says, and it answers one choice whatever `n` says): the
  teacher asks again for the missing sample, gets the same text, and generation warns.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from rtdemo.curation.curate import (
    ReviewFilter,
    bulk_review,
    curate,
    export_jsonl,
    question_yield,
    review_queue,
    training_records,
)
from rtdemo.generation.run import GenerationSettings, run_generation
from rtdemo.generation.samples import Sample, load_samples
from rtdemo.tasks.registry import TASKS
from rtdemo.tasks.synthetic import SyntheticSettings, generate
from rtdemo.tasks.types import Example
from rtdemo.teachers.base import answer_prompt, rationale_prompt
from rtdemo.teachers.local_hf import LocalHFTeacher
from rtdemo.teachers.openai_compat import OpenAITeacher
from rtdemo.workspace.store import Experiment, Store
from tests.helpers import run_teacher
from tests.teachers.serve import Served, log_tail

pytestmark = pytest.mark.slow

COIN = TASKS["coin_flip"].answer
FINISH_REASONS = {"stop", "length"}
CAP = 32
IDENTICAL = "all 2 samples of 2 questions at temperature 0.7 are identical"


def _questions() -> list[Example]:
    return generate("coin_flip", SyntheticSettings(size=40), "train")[:2]


def _check_stored(samples: list[Sample], questions: list[Example], model: str) -> None:
    """Every sample done, with both finish reasons, real usage and an answer read by the
    paper's rule (Coin Flip: the first yes/no word of the answer text, or none)."""
    gold = {q.index: q.answer for q in questions}
    assert len(samples) == 2 * len(questions)
    assert {(s.idx, s.sample_index) for s in samples} == {(i, k) for i in gold for k in (0, 1)}
    for s in samples:
        assert s.status == "done" and s.model == model and s.error is None, s
        assert s.rationale_finish in FINISH_REASONS and s.answer_finish in FINISH_REASONS
        assert isinstance(s.rationale, str) and isinstance(s.answer_text, str)
        assert s.prompt_tokens > 0 and 0 < s.completion_tokens <= 2 * CAP
        words = re.findall(r"[a-z]+", s.answer_text.lower())
        first = next((w for w in words if w in ("yes", "no")), None)
        assert s.prediction == first, (s.answer_text, s.prediction)
        assert s.correct == (first == gold[s.idx])
        assert s.truncated == ("length" in (s.rationale_finish, s.answer_finish))


def _check_curation(store: Store, exp: Experiment, questions: list[Example], tmp: Path) -> None:
    """Filtering, review, yield and export over what the real model wrote."""
    samples = load_samples(store, exp.id)
    right = [s for s in samples if s.correct]
    curated = curate(store, exp)
    assert len(curated) == len(samples)
    assert all(c.kept == bool(c.sample.correct) for c in curated)  # answer filtering
    run = SimpleNamespace(format="cot", filter_answers=True, diverse_samples=2)
    records = training_records(store, exp, run, questions, "causal")
    assert len(records) == len(right)
    gold = {f"{q.question.strip()} ###": q.answer for q in questions}
    assert all(r["completion"].endswith(f" --> {gold[r['prompt']]}") for r in records)
    y = question_yield(store, exp)
    assert y["done"] == len(samples) and y["correct"] == len(right)
    assert sorted(q["index"] for q in y["questions"]) == sorted(q.index for q in questions)
    assert all(1 <= q["distinct"] <= 2 for q in y["questions"])
    wrong = review_queue(store, exp, ReviewFilter(verdict="wrong"))
    assert len(wrong) == len(samples) - len(right)
    changed, _ = bulk_review(store, exp, ReviewFilter(), "reject_wrong_or_truncated")
    assert changed == sum(not s.correct or s.truncated for s in samples)
    path = tmp / "export.jsonl"
    assert export_jsonl(store, exp, path, include_all=True) == len(samples)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert {line["rationale_finish"] for line in lines} <= FINISH_REASONS


def test_local_hf_teacher_samples_for_real_and_stores_finish_reasons(
    smollm2_folder, tmp_path, one_torch_thread
):
    import torch

    torch.manual_seed(0)
    questions = _questions()
    teacher = LocalHFTeacher("smollm2-135m", device="cpu")  # the name: its prepared folder
    assert teacher.model_name == str(smollm2_folder)
    settings = GenerationSettings(samples=2, temperature=0.7, max_tokens=CAP)
    with Store(tmp_path / "ws") as store:
        exp = store.create_experiment("hf", "coin_flip")
        store.add_questions(exp.id, questions)
        stats = run_generation(store, exp, teacher, settings, questions, COIN, None)
        samples = load_samples(store, exp.id)
        _check_stored(samples, questions, str(smollm2_folder))
        # Pure temperature sampling: D = 2 rationales, two different texts per question.
        progress = stats.progress()
        assert progress["distinct_per_question"] == 2.0 and progress["identical_questions"] == 0
        assert stats.diversity.result().warning() is None
        _check_curation(store, exp, questions, tmp_path)


def _posts(log: Path, endpoint: str) -> int:
    """Requests to `endpoint` in the server's access log."""
    return log.read_text(errors="replace").count(f'"POST /v1/{endpoint} HTTP/1.1" 200')


def test_served_smollm2_does_not_sample_and_rtdemo_generate_says_so(
    smollm2_served: Served, tmp_path, run_cli
):
    served, ws = smollm2_served, tmp_path / "ws"
    before = _posts(served.log, "chat/completions")
    out = run_cli(
        "generate", "--task", "coin_flip", "--limit", "2", "--teacher", "openai",
        "--base-url", served.base_url, "--model", served.model, "--samples", "2",
        "--temperature", "0.7", "--max-tokens", str(CAP), "--experiment", "served",
        "--workspace", ws, env={"OPENAI_API_KEY": "none"}, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr + log_tail(served.log)
    # One choice for n=2: each question's call 1 is asked again; then one call 2 per sample.
    assert _posts(served.log, "chat/completions") - before == 2 * 2 + 4, log_tail(served.log)
    assert f"warning: {IDENTICAL}" in out.stdout
    assert "diversity (D=2): 1.00 distinct rationales per question (1) over 2" in out.stdout
    with Store(ws) as store:
        exp = store.get_experiment("served")
        questions = store.questions(exp.id, "train")
        samples = load_samples(store, exp.id)
        _check_stored(samples, questions, served.model)
        for q in questions:
            pair = [s.rationale for s in samples if s.idx == q.index]
            assert pair[0] == pair[1]  # the server ignored the temperature
        _check_curation(store, exp, questions, tmp_path)


def _teacher(served: Served, mode: str) -> OpenAITeacher:
    return OpenAITeacher(
        served.model, base_url=served.base_url, api_key="none", mode=mode, timeout=120
    )


@pytest.mark.parametrize("mode", ["chat", "completions"])
def test_served_smollm2_truncation_is_recorded_and_streaming_matches(smollm2_served, mode):
    prompt = rationale_prompt(_questions()[0].question)

    async def calls(t: OpenAITeacher):
        [cut] = await t.rationale(prompt, n=1, temperature=0.0, max_tokens=8)
        pieces = [p async for p in t.stream(prompt, temperature=0.0, max_tokens=8)]
        answer = await t.answer(answer_prompt(prompt, cut.text), max_tokens=8)
        return cut, pieces, answer

    cut, pieces, answer = run_teacher(_teacher(smollm2_served, mode), calls)
    # Truncation at the token cap is recorded as such, with the real token counts.
    assert cut.finish_reason == "length" and cut.completion_tokens == 8 and cut.text.strip()
    assert cut.prompt_tokens > 0
    assert "".join(pieces) == cut.text  # greedy: the stream writes the same continuation
    assert answer.finish_reason in FINISH_REASONS and answer.completion_tokens <= 8


def test_served_smollm2_in_completions_mode_stores_a_run(smollm2_served, tmp_path):
    # Chat mode's stored run: the rtdemo generate test above.
    served, questions = smollm2_served, _questions()
    settings = GenerationSettings(samples=1, max_tokens=16)
    with Store(tmp_path / "ws") as store:
        exp = store.create_experiment("served-completions", "coin_flip")
        store.add_questions(exp.id, questions)
        teacher = _teacher(served, "completions")
        stats = run_generation(store, exp, teacher, settings, questions, COIN, None)
        samples = load_samples(store, exp.id)
    assert (stats.done, stats.failed, stats.requests) == (2, 0, 4), log_tail(served.log)
    for s in samples:
        assert s.rationale_finish in FINISH_REASONS and s.answer_finish in FINISH_REASONS
        assert s.prompt_tokens > 0 and 0 < s.completion_tokens <= 32
        assert s.model == served.model and s.base_url == served.base_url
        assert s.rationale_prompt.endswith("A: Let's think step by step.")  # the paper's prompt
