"""The student's side of a chat: its tokens streamed as it writes them, greedily.

    model, tokenizer, kind = STUDENTS.get("runs/students/1-letters/cot/final")
    for text, finish in stream_student(model, tokenizer, kind, question, max_new_tokens=200):
        print(text)                       # the output so far; `finish` is set on the last one

The student sees the question in its training format (`rtdemo.evaluation.evaluate.student_prompt`)
and decodes greedily, with the evaluation's own generation settings and length caps (so a chat
answer is the answer evaluation scores), in a thread of its own; transformers'
`TextIteratorStreamer` (flushed at every token) hands its text over as it grows. A stop event ends
generation at the next token.

Loaded students are kept per folder or Hub id in `STUDENTS` (the two most recently used), so a
message does not reload its model. A Hub id is fetched with the Hub token the caller passes (on
a shared app the signed-in user's, else none: never the server's, `rtdemo.hosting.credentials`),
and kept per token too: a model one user's token fetched is never handed to another. One student
generates at a time in a process (a lock): on a small CPU two generations only slow each other
down. Models load one at a time in the process, students and local teachers together (`LOADING`):
transformers and PEFT build a model with `nn.Module.register_parameter` patched for the whole
process (weights on the meta device), so a model built in another thread meanwhile gets no data
("Cannot copy out of meta tensor").
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from rtdemo.chat.session import Side, split_student_output
from rtdemo.errors import UserError

# Evaluation's own greedy settings, caps and end-of-answer rule: a chat answer is the answer
# the Evaluate tab scores.
from rtdemo.evaluation.evaluate import (
    MAX_TOTAL_LENGTH,
    _eos_ids,
    _finish,
    _greedy_config,
    _token_budgets,
    student_prompt,
)
from rtdemo.students.loading import load_student

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

STUDENT_MAX_NEW_TOKENS = 256
WAIT_POLL_S = 1.0  # how often a waiting student looks whether the torch job has ended
_GENERATING = threading.Lock()
LOADING = threading.Lock()  # one model load at a time in this process (module docstring)


@dataclass(frozen=True)
class StudentSpec:
    """Which student answers: a model folder or Hub id, how it was trained ("cot" or "vanilla";
    a base model is read like a Fine-tune-CoT student), and a label for people."""

    path: str
    format: str
    label: str


class StudentCache:
    """Students loaded for inference, kept per folder or Hub id and Hub token; the least recently
    used goes."""

    def __init__(self, capacity: int = 2) -> None:
        self.capacity = capacity
        self._models: OrderedDict[tuple[str, str | bool | None], tuple[Any, Any, str]] = (
            OrderedDict()
        )
        self._lock = threading.Lock()

    def get(
        self, path: str, token: str | bool | None = None
    ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, str]:
        """The student's (model, tokenizer, kind), loaded on first use with the Hub token `token`
        (False: none; None: `load_student`'s default), `UserError` if it cannot be loaded. Loads
        run one at a time."""
        key = (path, token)
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            try:
                with LOADING:
                    loaded = load_student(path, for_training=False, token=token)
            except (OSError, ValueError, UserError) as err:
                first = (str(err).strip().splitlines() or [type(err).__name__])[0]
                if first.startswith("cannot load the student"):
                    raise UserError(first) from None
                raise UserError(f"cannot load the student {path!r}: {first}") from None
            self._models[key] = loaded
            while len(self._models) > self.capacity:
                self._models.popitem(last=False)
            return loaded

    def loaded(self, path: str, token: str | bool | None = None) -> bool:
        """Whether the student is loaded for this token already."""
        return (path, token) in self._models

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and self.loaded(path)

    def clear(self) -> None:
        """Forget every loaded student."""
        with self._lock:
            self._models.clear()


STUDENTS = StudentCache()


def stream_student(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    kind: str,
    question: str,
    *,
    max_new_tokens: int = STUDENT_MAX_NEW_TOKENS,
    stop: threading.Event | None = None,
) -> Iterator[tuple[str, str | None]]:
    """(output so far, None) as the student writes, then (its whole output, finish reason).

    The finish reason is "stop" (it wrote its end-of-sequence token), "length" (the cap: at most
    `max_new_tokens`, and prompt + answer within 1,024 tokens and the model's positions) or
    "stopped" (`stop` was set). Closing the generator stops the generation too.
    """
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

    halt = threading.Event()
    stop = stop or threading.Event()
    prompt_ids = tokenizer(student_prompt(question, kind))["input_ids"]
    [budget] = _token_budgets(model, kind, [prompt_ids], MAX_TOTAL_LENGTH, max_new_tokens)
    if budget <= 0:
        yield "", "length"
        return
    eos_ids = _eos_ids(model, tokenizer)

    class Halt(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            flag = halt.is_set() or stop.is_set()
            return torch.full(
                (input_ids.shape[0],), flag, dtype=torch.bool, device=input_ids.device
            )

    class TokenStreamer(TextIteratorStreamer):
        """Hands over text at every token (the stock one waits for a space: a student that
        writes no space for a while would look stuck), holding back a character whose bytes may
        not all be there yet (at most 3 tokens: a UTF-8 character has at most 4 bytes)."""

        held = 0

        def put(self, value: Any) -> None:
            if self.skip_prompt and self.next_tokens_are_prompt:
                self.next_tokens_are_prompt = False
                return
            self.token_cache.extend(value.reshape(-1).tolist())
            text = self.tokenizer.decode(self.token_cache, **self.decode_kwargs)
            self.held += 1
            if (not text.endswith("\ufffd") or self.held > 3) and len(text) > self.print_len:
                self.on_finalized_text(text[self.print_len :])
                self.print_len, self.held = len(text), 0

    streamer = TokenStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    result: dict[str, Any] = {}

    def generate() -> None:
        try:
            inputs = torch.tensor([prompt_ids], device=model.device)
            with _GENERATING, torch.inference_mode():
                out = model.generate(
                    input_ids=inputs,
                    attention_mask=torch.ones_like(inputs),
                    generation_config=_greedy_config(model, tokenizer, eos_ids)(budget),
                    streamer=streamer,
                    stopping_criteria=StoppingCriteriaList([Halt()]),
                )
            # Causal: the output repeats the prompt; seq2seq: it starts with the decoder start.
            new = out[0, inputs.shape[1] :] if kind == "causal" else out[0, 1:]
            result["ids"] = new[:budget].tolist()
        except BaseException as err:  # raised in the caller's thread below
            result["error"] = err
            streamer.end()

    worker = threading.Thread(target=generate, daemon=True, name="chat-student")
    worker.start()
    text = ""
    try:
        for piece in streamer:
            text += piece
            if piece:
                yield text, None
    finally:
        halt.set()  # the caller closed us early: end the generation at its next token
        worker.join()
    if "error" in result:
        raise result["error"]
    done = _finish(tokenizer, result["ids"], eos_ids)
    finish = "stopped" if stop.is_set() and done.finish_reason == "length" else done.finish_reason
    yield done.text, finish


def student_side(
    spec: StudentSpec,
    question: str,
    *,
    stop: threading.Event,
    max_new_tokens: int = STUDENT_MAX_NEW_TOKENS,
    busy: Callable[[], str | None] | None = None,
    poll: float | None = None,
    cache: StudentCache = STUDENTS,
    token: str | bool | None = None,
) -> Iterator[Side]:
    """The student's side as it streams, rationale and answer split at `-->`.

    While `busy()` gives a reason (a training job holds the CPU), the side waits with that reason
    as its note, looking again every `poll` seconds (default `WAIT_POLL_S`), and starts after.
    A Hub id is loaded with `token` (`StudentCache.get`)."""
    side = Side(spec.label)
    try:
        while busy is not None and (reason := busy()):
            yield replace(side, status="waiting", note=reason)
            if stop.wait(WAIT_POLL_S if poll is None else poll):
                return
        loaded = cache.loaded(spec.path, token)
        yield replace(side, status="running", note="" if loaded else "loading the student…")
        model, tokenizer, kind = cache.get(spec.path, token)
        side = replace(side, status="running", note="")
        for text, finish in stream_student(
            model, tokenizer, kind, question, max_new_tokens=max_new_tokens, stop=stop
        ):
            rationale, answer = split_student_output(text, spec.format)
            side = replace(side, rationale=rationale, answer=answer, output=text)
            if finish is not None:
                side = replace(side, status="done", finish_reason=finish)
                if finish == "length":
                    side = replace(side, note=f"cut at the cap ({max_new_tokens} new tokens)")
            yield side
    except UserError as err:
        yield replace(side, status="error", note=str(err))
    except (RuntimeError, OSError, ValueError) as err:  # the model failed: say so in its pane
        yield replace(side, status="error", note=f"the student failed: {type(err).__name__}: {err}")
