"""Evaluation: a student's batched greedy answers, read with the paper's answer cleansing.

    result = evaluate("runs/cot/final", examples, task.answer, "cot")  # a model or LoRA folder
    save_eval(result, "runs/cot/eval")           # metrics.json + predictions.jsonl
    print(result.metrics.accuracy)

The student sees each test question in its training format (`"{q} ###"` for a causal student,
`"{q}"` for a seq2seq one: `rtdemo.curation.curate.format_pair`) and answers greedily, as in the
paper (METHOD.md, step 3): a causal student's prompt and answer together stay within 1,024 tokens
(and within the model's positions); a seq2seq student's decoder output stays within that many
tokens. Its output is judged by `rtdemo.tasks.cleansing.judge` ("cot" for Fine-tune-CoT students,
"vanilla" for the vanilla baseline) and summed up in the four metrics.

Generation is batched: prompts sorted by length (least padding), left-padded for decoder-only
models, with an attention mask from which transformers derives the position ids, so a batched
answer is token for token the answer the student gives to the question alone (fp32; tested).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rtdemo.curation.curate import format_pair
from rtdemo.students.loading import STUDENT_KINDS, StudentKind, load_student, student_origin
from rtdemo.tasks.cleansing import Metrics, Verdict, judge, metrics
from rtdemo.tasks.types import AnswerFormat, Example

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

StudentFormat = Literal["cot", "vanilla"]
FinishReason = Literal["stop", "length"]
MAX_TOTAL_LENGTH = 1024  # the paper's test-time cap: prompt + answer tokens (GPT-2's positions)


@dataclass(frozen=True)
class Generated:
    """One greedy answer: the new text only (special tokens skipped), why it ended ("stop": the
    model wrote its end-of-sequence token; "length": the cap), and how many tokens it wrote
    (the end-of-sequence token included)."""

    text: str
    finish_reason: FinishReason
    new_tokens: int


class GenerationStopped(Exception):
    """`should_stop()` said stop between two batches; `done` maps prompt positions to the answers
    written so far."""

    def __init__(self, done: dict[int, Generated], total: int) -> None:
        super().__init__(f"generation stopped after {len(done)} of {total} prompts")
        self.done = done
        self.total = total


# -- generation -------------------------------------------------------------------------------


def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    kind: StudentKind,
    prompts: Sequence[str],
    *,
    batch_size: int = 16,
    max_total_length: int = MAX_TOTAL_LENGTH,
    max_new_tokens: int | None = None,
    on_batch: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[Generated]:
    """Greedy answers to `prompts`, in their order, `batch_size` at a time.

    Length caps: a causal student's prompt plus answer stay within `max_total_length` tokens and
    the model's positions (a prompt that already fills them gets an empty "length" answer); a
    seq2seq student's decoder output (start token included, as transformers counts it) stays
    within `max_total_length`. `max_new_tokens`, if given, caps every answer further.

    `on_batch(done, total)` is called after each batch. `should_stop()` is asked before each
    batch; if it says stop, `GenerationStopped` is raised carrying the answers written so far
    (prompts run shortest first, so those are the shortest prompts).
    """
    import torch

    if kind not in STUDENT_KINDS:
        raise ValueError(f"unknown student kind {kind!r}; use one of {STUDENT_KINDS}")
    if batch_size < 1 or max_total_length < 1:
        raise ValueError("batch_size and max_total_length must be at least 1")
    if not prompts:
        return []
    encoded = tokenizer(list(prompts))["input_ids"]
    budgets = _token_budgets(model, kind, encoded, max_total_length, max_new_tokens)
    eos_ids = _eos_ids(model, tokenizer)
    greedy = _greedy_config(model, tokenizer, eos_ids)
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))  # least padding
    done: dict[int, Generated] = {}
    for start in range(0, len(order), batch_size):
        if should_stop is not None and should_stop():
            raise GenerationStopped(done, len(order))
        batch = order[start : start + batch_size]
        live = [i for i in batch if budgets[i] > 0]
        done |= {i: Generated("", "length", 0) for i in batch if budgets[i] <= 0}
        if live:
            inputs = tokenizer.pad(
                {"input_ids": [encoded[i] for i in live]}, padding=True, return_tensors="pt"
            ).to(model.device)
            with torch.inference_mode():
                # Causal: every row's positions must stay under the cap, and the padded batch is
                # as long as its longest prompt, so the batch gets that prompt's budget (rows are
                # sorted by length, so a shorter one loses at most the length difference, and only
                # when it runs into the cap anyway). Seq2seq budgets are all equal.
                steps = (
                    min(budgets[i] for i in live)
                    if kind == "causal"
                    else max(budgets[i] for i in live)
                )
                out = model.generate(**inputs, generation_config=greedy(steps))
            # Causal: the output repeats the (padded) prompt; seq2seq: it starts with one
            # decoder start token.
            new = out[:, inputs["input_ids"].shape[1] :] if kind == "causal" else out[:, 1:]
            for row, i in enumerate(live):
                ids = new[row, : budgets[i]].tolist()
                done[i] = _finish(tokenizer, ids, eos_ids)
                if kind == "causal" and done[i].finish_reason == "length" and budgets[i] > steps:
                    # Cut short by the batch's shared limit: answer it alone, as one at a time
                    # would (rare: only outputs that run into the cap).
                    single = torch.tensor([encoded[i]], device=model.device)
                    with torch.inference_mode():
                        alone = model.generate(
                            input_ids=single,
                            attention_mask=torch.ones_like(single),
                            generation_config=greedy(budgets[i]),
                        )
                    done[i] = _finish(tokenizer, alone[0, single.shape[1] :].tolist(), eos_ids)
        if on_batch is not None:
            on_batch(len(done), len(order))
    return [done[i] for i in range(len(order))]


def _token_budgets(
    model: PreTrainedModel,
    kind: StudentKind,
    encoded: list[list[int]],
    max_total_length: int,
    max_new_tokens: int | None,
) -> list[int]:
    """How many new tokens each prompt may get (0 or less: none)."""
    if kind == "seq2seq":
        budgets = [max_total_length - 1] * len(encoded)
    else:
        positions = getattr(model.config, "max_position_embeddings", None)
        cap = min(max_total_length, positions) if positions else max_total_length
        budgets = [cap - len(ids) for ids in encoded]
    if max_new_tokens is not None:
        budgets = [min(b, max_new_tokens) for b in budgets]
    return budgets


def _eos_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """The tokens that end an answer: the generation config's EOS (what `generate` stops on)."""
    eos = model.generation_config.eos_token_id
    if eos is None:
        eos = tokenizer.eos_token_id
    if eos is None:
        return set()
    return {eos} if isinstance(eos, int) else set(eos)


def _greedy_config(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, eos_ids: set[int]
) -> Callable[[int], Any]:
    """Plain greedy decoding up to n new tokens.

    `generate` fills every setting left unset (None) from the model's own `generation_config.json`,
    where an instruction-tuned model may keep sampling settings or a repetition penalty: every
    setting that changes a greedy choice is set here to its neutral value.
    """
    from transformers import GenerationConfig

    own = model.generation_config

    def config(max_new_tokens: int) -> GenerationConfig:
        return GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            temperature=1.0,
            top_k=50,
            top_p=1.0,
            repetition_penalty=1.0,
            encoder_repetition_penalty=1.0,
            no_repeat_ngram_size=0,
            encoder_no_repeat_ngram_size=0,
            min_new_tokens=0,
            use_cache=True,
            eos_token_id=sorted(eos_ids) or None,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=own.bos_token_id,
            decoder_start_token_id=own.decoder_start_token_id,
        )

    return config


def _finish(tokenizer: PreTrainedTokenizerBase, ids: list[int], eos_ids: set[int]) -> Generated:
    """The answer in `ids`: up to its first EOS ("stop"), else all of it ("length")."""
    end = next((k for k, token in enumerate(ids) if token in eos_ids), None)
    if end is None:
        return Generated(tokenizer.decode(ids, skip_special_tokens=True), "length", len(ids))
    return Generated(tokenizer.decode(ids[:end], skip_special_tokens=True), "stop", end + 1)


# -- evaluation -------------------------------------------------------------------------------


@dataclass
class EvalResult:
    """A student's test results.

    `predictions` (input order) hold per question: index, question, answer (gold), output,
    prediction, correct, contains_answer, correct_format, complete, finish_reason, new_tokens.
    `complete` is False when the run was stopped early: then `metrics` and `predictions` cover
    only the `len(predictions)` of `total` questions answered (the shortest ones).
    `seconds` is generation and judging time (not loading); `settings` records how it was run,
    and (`base_description`) what a student `rtdemo models prepare` made really is: a dequantized
    copy of its Hub model (`rtdemo.students.loading.student_origin`), else None.
    """

    metrics: Metrics
    predictions: list[dict[str, Any]]
    seconds: float
    examples_per_second: float
    complete: bool = True
    total: int = 0
    settings: dict[str, Any] = field(default_factory=dict)


def student_prompt(question: str, kind: StudentKind) -> str:
    """The prompt a student was trained on for `question` (the training format's own code)."""
    return format_pair(question, "", "", "vanilla", kind)["prompt"]


def evaluate(
    model_path: str | Path,
    examples: Sequence[Example],
    answer: AnswerFormat,
    fmt: StudentFormat,
    *,
    kind: StudentKind | None = None,
    batch_size: int = 16,
    max_total_length: int = MAX_TOTAL_LENGTH,
    on_progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> EvalResult:
    """Answer every example with the student in `model_path` and judge it by the paper's rules.

    `fmt` is how the student was trained: "cot" (Fine-tune-CoT: the answer follows `-->`) or
    "vanilla" (the answer alone). `on_progress(done, total)` follows each batch; when
    `should_stop()` says stop between batches, the result covers the questions answered so far
    and has `complete=False`.
    """
    if fmt not in ("cot", "vanilla"):
        raise ValueError(f"a student's format is 'cot' or 'vanilla', not {fmt!r}")
    import transformers

    transformers.utils.logging.disable_progress_bar()  # no bar per weight file in our logs
    began = time.perf_counter()
    model, tokenizer, kind = load_student(model_path, for_training=False, kind=kind)
    load_seconds = time.perf_counter() - began
    began = time.perf_counter()
    prompts = [student_prompt(e.question, kind) for e in examples]
    complete = True
    try:
        answers = dict(
            enumerate(
                generate(
                    model,
                    tokenizer,
                    kind,
                    prompts,
                    batch_size=batch_size,
                    max_total_length=max_total_length,
                    on_batch=on_progress,
                    should_stop=should_stop,
                )
            )
        )
    except GenerationStopped as stopped:
        answers, complete = stopped.done, False
    origin = student_origin(model_path)
    verdicts = {
        i: judge(answers[i].text, examples[i].answer, answer, fmt, answers[i].finish_reason)
        for i in sorted(answers)
    }
    predictions = [_prediction(examples[i], answers[i], v) for i, v in verdicts.items()]
    seconds = time.perf_counter() - began
    return EvalResult(
        metrics=metrics(verdicts.values()),
        predictions=predictions,
        seconds=seconds,
        examples_per_second=len(predictions) / seconds if seconds > 0 else 0.0,
        complete=complete,
        total=len(examples),
        settings={
            "model": str(model_path),
            "kind": kind,
            "format": fmt,
            "batch_size": batch_size,
            "max_total_length": max_total_length,
            "decoding": "greedy",
            "load_seconds": load_seconds,
            "base_description": origin["description"] if origin else None,
        },
    )


def _prediction(example: Example, generated: Generated, verdict: Verdict) -> dict[str, Any]:
    return {
        "index": example.index,
        "question": example.question,
        "answer": example.answer,
        "output": generated.text,
        **verdict.to_dict(),
        "finish_reason": generated.finish_reason,
        "new_tokens": generated.new_tokens,
    }


def predictions_failures_first(result: EvalResult) -> list[dict[str, Any]]:
    """The predictions with the wrong answers first (each group keeps the input order)."""
    return sorted(result.predictions, key=lambda p: bool(p["correct"]))


# -- files ------------------------------------------------------------------------------------


def save_eval(result: EvalResult, folder: str | Path) -> Path:
    """Write `metrics.json` (metrics, timing, completeness, settings) and `predictions.jsonl`
    (one prediction a line, input order) into `folder`; return the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    summary = {k: v for k, v in asdict(result).items() if k != "predictions"}
    summary["evaluated"] = len(result.predictions)
    (folder / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = (json.dumps(p, ensure_ascii=False) + "\n" for p in result.predictions)
    (folder / "predictions.jsonl").write_text("".join(lines))
    return folder


def load_eval(folder: str | Path) -> EvalResult:
    """An `EvalResult` read back from a folder written by `save_eval`."""
    folder = Path(folder)
    summary = json.loads((folder / "metrics.json").read_text())
    summary.pop("evaluated", None)
    summary["metrics"] = Metrics(**summary["metrics"])
    text = (folder / "predictions.jsonl").read_text()
    predictions = [json.loads(line) for line in text.splitlines() if line.strip()]
    return EvalResult(predictions=predictions, **summary)
