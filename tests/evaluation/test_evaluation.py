"""Evaluation: batched greedy generation equals one-at-a-time, length caps, EOS, LoRA adapters,
and the paper's metrics over student outputs. Tiny models built in tmp folders, one torch thread."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rtdemo.evaluation import evaluate as evaluation
from rtdemo.evaluation.evaluate import (
    EvalResult,
    Generated,
    GenerationStopped,
    evaluate,
    generate,
    load_eval,
    predictions_failures_first,
    save_eval,
)
from rtdemo.students.loading import load_student
from rtdemo.tasks.types import AnswerFormat, Example
from tests.tiny_models import (
    build_tiny_causal_lm,
    build_tiny_seq2seq,
    greedy_token_ids,
    set_eos_token_id,
)

PROMPTS = [
    "Roger has 5 tennis balls. He buys 2 more cans of 3 balls each. How many now? ###",
    "Q: hi ###",
    "A coin is heads up. Ada flips the coin. Is the coin still heads up? ###",
    "0 1 2 ###",
    'Take the last letters of each words in "Ada Lovelace" and concatenate them. ###',
    "yes ###",
]
NUMBER = AnswerFormat("number")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def causal_folder(request, tmp_path_factory) -> Path:
    # Seed 2 gives a GPT-2 whose greedy answers differ from prompt to prompt.
    folder = tmp_path_factory.mktemp(request.param)
    return build_tiny_causal_lm(folder, kind=request.param, seed=2)


def reference(folder: Path, prompt: str, max_new_tokens: int, seq2seq: bool = False) -> list[int]:
    """Plain transformers: one unpadded prompt, greedy; the new token ids."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    auto = AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM
    model, tokenizer = auto.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    inputs = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return out[0, 1:].tolist() if seq2seq else out[0, inputs["input_ids"].shape[1] :].tolist()


# -- generation -------------------------------------------------------------------------------


def test_batched_equals_one_at_a_time_and_caps_total_length(causal_folder):
    model, tokenizer, kind = load_student(causal_folder, for_training=False)
    assert kind == "causal"
    cap = 40
    prompts = [*PROMPTS, "word " * 50 + "###"]  # the last one alone fills the cap
    batched = generate(model, tokenizer, kind, prompts, batch_size=4, max_total_length=cap)
    single = [generate(model, tokenizer, kind, [p], max_total_length=cap)[0] for p in prompts]
    assert batched == single
    assert len({g.text for g in batched}) > 2  # the model does not answer everything alike

    for prompt, got in zip(prompts, batched, strict=True):
        prompt_tokens = len(tokenizer(prompt)["input_ids"])
        if prompt_tokens >= cap:  # no room left: nothing is generated
            assert got == Generated("", "length", 0)
            continue
        # Random weights never write EOS here: every answer runs to the cap.
        assert got.finish_reason == "length"
        assert prompt_tokens + got.new_tokens == cap
        # Only the continuation, exactly what plain transformers writes for the prompt alone.
        expected = reference(causal_folder, prompt, cap - prompt_tokens)
        assert got.text == tokenizer.decode(expected, skip_special_tokens=True)
        assert not got.text.startswith(prompt)


def test_model_positions_cap_the_total_length(tmp_path):
    folder = build_tiny_causal_lm(tmp_path / "gpt2")  # 256 positions
    model, tokenizer, kind = load_student(folder, for_training=False)
    [got] = generate(model, tokenizer, kind, ["Q: hi ###"], max_total_length=1024)
    assert got.finish_reason == "length"
    assert len(tokenizer("Q: hi ###")["input_ids"]) + got.new_tokens == 256
    [short] = generate(model, tokenizer, kind, ["Q: hi ###"], max_new_tokens=5)
    assert short.new_tokens == 5 and got.text.startswith(short.text)


def test_a_batch_of_short_and_long_prompts_stays_within_the_model_positions(tmp_path):
    """Regression: a short prompt's budget once ran a padded batch past the position table."""
    folder = build_tiny_causal_lm(tmp_path / "gpt2")  # 256 positions
    model, tokenizer, kind = load_student(folder, for_training=False)
    prompts = ["Q: hi ###", "Q: " + "word " * 60 + "###"]
    batched = generate(model, tokenizer, kind, prompts, batch_size=2, max_total_length=1024)
    single = [generate(model, tokenizer, kind, [p], max_total_length=1024)[0] for p in prompts]
    assert batched == single
    for prompt, got in zip(prompts, batched, strict=True):
        assert len(tokenizer(prompt)["input_ids"]) + got.new_tokens <= 256


def test_position_ids_follow_the_attention_mask(causal_folder):
    """With left padding, each row counts its positions from its first real token."""
    import torch

    model, tokenizer, kind = load_student(causal_folder, for_training=False)
    seen: list[torch.Tensor] = []

    def capture(_module, args, kwargs):
        if kwargs.get("position_ids") is not None:
            seen.append(kwargs["position_ids"].clone())

    handle = model.register_forward_pre_hook(capture, with_kwargs=True)
    try:
        generate(model, tokenizer, kind, ["Q: hi ###", PROMPTS[0]], max_new_tokens=2)
    finally:
        handle.remove()
    first = seen[0].cpu()  # the prompt pass (the model may be on a GPU)
    mask = tokenizer.pad({"input_ids": tokenizer(["Q: hi ###", PROMPTS[0]])["input_ids"]})
    mask = torch.tensor(mask["attention_mask"])
    real = mask.bool()
    assert torch.equal(first[real], (mask.cumsum(-1) - 1)[real])
    assert first[1].tolist() == list(range(mask.shape[1]))  # the longest row is not padded
    assert seen[1][:, -1].tolist() == (mask.sum(-1)).tolist()  # the next token's position


def test_eos_ends_an_answer_with_stop(tmp_path):
    folder = build_tiny_causal_lm(tmp_path / "gpt2", seed=2)
    prompt = PROMPTS[2]
    ids = greedy_token_ids(folder, prompt, max_new_tokens=12)
    end = next(k for k in range(2, len(ids)) if ids[k] not in ids[:k])  # its first new token
    set_eos_token_id(folder, ids[end])  # now the model stops there
    model, tokenizer, kind = load_student(folder, for_training=False)
    batched = generate(model, tokenizer, kind, PROMPTS, batch_size=4, max_total_length=48)
    single = [generate(model, tokenizer, kind, [p], max_total_length=48)[0] for p in PROMPTS]
    assert batched == single
    stopped = batched[2]
    assert stopped.finish_reason == "stop"
    assert stopped.new_tokens == end + 1  # the EOS counts as a written token
    assert stopped.text == tokenizer.decode(ids[:end], skip_special_tokens=True)


def test_seq2seq_batched_equals_one_at_a_time(tmp_path):
    folder = build_tiny_seq2seq(tmp_path / "t5", seed=1)
    questions = [p.removesuffix(" ###") for p in PROMPTS]
    first = reference(folder, questions[0], 4, seq2seq=True)
    set_eos_token_id(folder, first[0])  # one question now stops at once, others may not
    model, tokenizer, kind = load_student(folder, for_training=False)
    assert kind == "seq2seq" and tokenizer.padding_side == "right"
    batched = generate(model, tokenizer, kind, questions, batch_size=4, max_total_length=12)
    single = [generate(model, tokenizer, kind, [q], max_total_length=12)[0] for q in questions]
    assert batched == single
    assert batched[0] == Generated("", "stop", 1)
    assert {g.finish_reason for g in batched} == {"stop", "length"}
    for question, got in zip(questions, batched, strict=True):
        assert got.new_tokens <= 11  # the decoder start token counts toward the cap
        if got.finish_reason == "length":
            expected = reference(folder, question, 11, seq2seq=True)
            assert got.text == tokenizer.decode(expected, skip_special_tokens=True)


def test_progress_and_stop_between_batches(tmp_path):
    folder = build_tiny_causal_lm(tmp_path / "gpt2")
    model, tokenizer, kind = load_student(folder, for_training=False)
    calls: list[tuple[int, int]] = []
    settings = {"batch_size": 4, "max_new_tokens": 2, "on_batch": lambda *a: calls.append(a)}
    generate(model, tokenizer, kind, PROMPTS, **settings)
    assert calls == [(4, 6), (6, 6)]
    calls.clear()
    with pytest.raises(GenerationStopped) as stopped:
        generate(model, tokenizer, kind, PROMPTS, **settings, should_stop=lambda: bool(calls))
    assert calls == [(4, 6)]
    lengths = [len(tokenizer(p)["input_ids"]) for p in PROMPTS]
    shortest = sorted(range(len(PROMPTS)), key=lambda i: lengths[i])[:4]
    assert sorted(stopped.value.done) == sorted(shortest)  # shortest prompts run first


# -- loading ----------------------------------------------------------------------------------


def test_load_student_for_inference_readies_a_trained_folder(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = build_tiny_causal_lm(tmp_path / "gpt2")
    model = AutoModelForCausalLM.from_pretrained(folder)
    model.config.use_cache = False  # as the trainer leaves it
    model.save_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.pad_token = None
    tokenizer.save_pretrained(folder)

    model, tokenizer, kind = load_student(folder, for_training=False)
    assert kind == "causal" and not model.training
    assert model.config.use_cache and model.generation_config.use_cache
    assert tokenizer.padding_side == "left"
    assert tokenizer.pad_token == tokenizer.eos_token


@pytest.mark.parametrize("arch", ["gpt2", "t5"])
def test_lora_adapter_generates_like_the_merged_model(tmp_path, arch):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    seq2seq = arch == "t5"
    base = (
        build_tiny_seq2seq(tmp_path / "base")
        if seq2seq
        else build_tiny_causal_lm(tmp_path / "base")
    )
    auto = AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM
    task_type = "SEQ_2_SEQ_LM" if seq2seq else None  # with and without a task type
    peft_model = get_peft_model(
        auto.from_pretrained(base), LoraConfig(target_modules="all-linear", task_type=task_type)
    )
    torch.manual_seed(0)
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:  # LoRA starts as a no-op: make it change the model
            torch.nn.init.normal_(param, std=0.5)
    peft_model.save_pretrained(tmp_path / "adapter")  # no tokenizer: the base's is used
    merged = peft_model.merge_and_unload()
    merged.save_pretrained(tmp_path / "merged")
    AutoTokenizer.from_pretrained(base).save_pretrained(tmp_path / "merged")

    prompts = [p.removesuffix(" ###") for p in PROMPTS[:3]] if seq2seq else PROMPTS[:3]
    outputs = {}
    for name in ("adapter", "merged", "base"):
        path = base if name == "base" else tmp_path / name
        model, tokenizer, kind = load_student(path, for_training=False)
        assert kind == ("seq2seq" if seq2seq else "causal")
        outputs[name] = generate(model, tokenizer, kind, prompts, max_new_tokens=12)
    assert outputs["adapter"] == outputs["merged"]
    assert outputs["adapter"] != outputs["base"]


# -- evaluation -------------------------------------------------------------------------------

EXAMPLES = [
    Example("q10", "7", "test", 10),
    Example("q3", "7", "test", 3),
    Example("q7", "7", "test", 7),
    Example("q1", "9", "test", 1),
    Example("q5", "4", "test", 5),
]
OUTPUTS = [
    Generated(" r --> 7", "stop", 4),  # right, after the delimiter
    Generated(" 7", "length", 2),  # right (last number, no delimiter), wrong format, truncated
    Generated("", "length", 0),  # nothing
    Generated(" 5 --> 8 or 9", "stop", 6),  # wrong: the first number after -->; contains 9
    Generated(" 2 --> 4", "length", 4),  # right, truncated
]


@pytest.fixture
def fake_student(monkeypatch):
    """evaluate() without a model: generation returns OUTPUTS and records its prompts."""
    seen: dict = {}

    def fake_load(path, *, for_training, kind=None):
        return "model", "tokenizer", kind or "causal"

    def fake_generate(model, tokenizer, kind, prompts, **kwargs):
        seen.update(prompts=prompts, **kwargs)
        if kwargs["on_batch"]:
            kwargs["on_batch"](len(prompts), len(prompts))
        return OUTPUTS[: len(prompts)]

    monkeypatch.setattr(evaluation, "load_student", fake_load)
    monkeypatch.setattr(evaluation, "generate", fake_generate)
    return seen


def test_evaluate_applies_the_papers_rules(fake_student, tmp_path):
    progress: list = []
    result = evaluate(
        "student", EXAMPLES, NUMBER, "cot", batch_size=8, on_progress=lambda *a: progress.append(a)
    )
    assert fake_student["prompts"] == ["q10 ###", "q3 ###", "q7 ###", "q1 ###", "q5 ###"]
    assert fake_student["batch_size"] == 8 and fake_student["max_total_length"] == 1024
    assert progress == [(5, 5)]
    m = result.metrics
    assert (m.count, m.accuracy, m.contains_answer, m.correct_format, m.complete) == (
        5,
        0.6,
        0.8,
        0.6,
        0.4,
    )
    assert result.complete and result.total == 5
    assert [p["index"] for p in result.predictions] == [10, 3, 7, 1, 5]  # input order
    first = result.predictions[0]
    assert first == {
        "index": 10,
        "question": "q10",
        "answer": "7",
        "output": " r --> 7",
        "prediction": "7",
        "correct": True,
        "contains_answer": True,
        "correct_format": True,
        "complete": True,
        "finish_reason": "stop",
        "new_tokens": 4,
    }
    assert result.predictions[3]["prediction"] == "8"
    assert [p["index"] for p in predictions_failures_first(result)] == [7, 1, 10, 3, 5]

    folder = save_eval(result, tmp_path / "eval")
    summary = json.loads((folder / "metrics.json").read_text())
    assert summary["metrics"]["accuracy"] == 0.6 and summary["evaluated"] == 5
    lines = (folder / "predictions.jsonl").read_text().splitlines()
    assert [json.loads(line)["index"] for line in lines] == [10, 3, 7, 1, 5]
    assert load_eval(folder) == result


def test_evaluate_vanilla_and_seq2seq_prompts(fake_student):
    result = evaluate("student", EXAMPLES, NUMBER, "vanilla", kind="seq2seq")
    assert fake_student["prompts"] == ["q10", "q3", "q7", "q1", "q5"]
    # Vanilla reads the first number anywhere (" 2 --> 4" answers 2); the format is always right.
    m = result.metrics
    assert (m.accuracy, m.contains_answer, m.correct_format) == (0.4, 0.8, 1.0)
    assert result.settings["kind"] == "seq2seq" and result.settings["format"] == "vanilla"


def test_evaluate_stopped_returns_a_partial_result(monkeypatch):
    monkeypatch.setattr(evaluation, "load_student", lambda p, **kw: (0, 0, "causal"))

    def stopped(*args, **kwargs):
        raise GenerationStopped({3: OUTPUTS[3], 0: OUTPUTS[0]}, 5)

    monkeypatch.setattr(evaluation, "generate", stopped)
    result = evaluate("student", EXAMPLES, NUMBER, "cot")
    assert not result.complete and result.total == 5
    assert [p["index"] for p in result.predictions] == [10, 1]
    assert result.metrics.count == 2 and result.metrics.accuracy == 0.5


def test_evaluate_a_real_tiny_student(tmp_path):
    folder = build_tiny_causal_lm(tmp_path / "gpt2")
    examples = [Example(f"What is {i} plus {i}?", str(2 * i), "test", i) for i in range(3)]
    progress: list = []
    result = evaluate(
        folder,
        examples,
        NUMBER,
        "cot",
        batch_size=2,
        max_total_length=24,
        on_progress=lambda *a: progress.append(a),
    )
    assert progress == [(2, 3), (3, 3)]
    assert result.complete and result.metrics.count == 3
    assert [p["index"] for p in result.predictions] == [0, 1, 2]
    model, tokenizer, kind = load_student(folder, for_training=False)
    [alone] = generate(model, tokenizer, kind, ["What is 1 plus 1? ###"], max_total_length=24)
    assert result.predictions[1]["output"] == alone.text
    assert result.examples_per_second > 0

    batches: list = []
    partial = evaluate(
        folder,
        examples,
        NUMBER,
        "cot",
        batch_size=2,
        max_total_length=24,
        on_progress=lambda *a: batches.append(a),
        should_stop=lambda: len(batches) == 1,  # stop after the first batch
    )
    assert not partial.complete and len(partial.predictions) == 2 and partial.total == 3

    empty = evaluate(folder, [], NUMBER, "cot")
    assert empty.complete and empty.metrics.count == 0 and empty.predictions == []


def test_evaluate_rejects_an_unknown_format():
    with pytest.raises(ValueError, match="cot"):
        evaluate("student", EXAMPLES, NUMBER, "teacher")  # type: ignore[arg-type]


def test_eval_result_is_plain_data():
    assert EvalResult.__dataclass_fields__.keys() >= {
        "metrics",
        "predictions",
        "seconds",
        "examples_per_second",
        "complete",
    }
