"""A local transformers model as the teacher: for users with a GPU and no API.

The model (a Hub id or a model folder) continues the raw prompt text, the paper's completion-style
prompts (METHOD.md, "The three steps", item 1); no chat template is applied, an instruct model's
included. Measured with SmolLM2-135M-Instruct (`smollm2-135m`, greedy, fp32 CPU), raw against
its chat template used as the OpenAI-compatible chat mode emulates the two calls: Coin Flip (10
questions) 1/10 against 0/10 correct at 64 tokens and 2/10 against 2/10 at 128; Last Letter
Concatenation (8 questions, 64 tokens) 0/8 either way. Through the template it wrote longer,
chattier rationales (at 64 tokens 10/10 cut at the cap against 7/10) and left the paper's
format; so raw it stays. The chat template is one `transformers serve` away:
the OpenAI-compatible teacher's chat mode applies it. Call 1 samples
`n` rationales at the temperature (`do_sample=True`, pure temperature sampling: top-k and top-p
off, as the paper's API did) in chunks of at most `batch_size` sequences, or decodes greedily at
temperature 0; call 2 is greedy.

A `Completion` holds only the continuation (new tokens decoded, special tokens skipped). Its
finish reason is "stop" when the model wrote an end-of-sequence token (its generation config's
`eos_token_id`s and the tokenizer's EOS) and "length" when it hit the cap; token counts are real
(the EOS counts as a written token; prompt tokens are reported on the first of `n` completions,
as the API teachers do).

Nothing is loaded in the constructor: the model is loaded on the first call, through
`AutoModelForCausalLM.from_pretrained` and `AutoTokenizer.from_pretrained` (no remote code); a Hub
id is fetched with the token `rtdemo.hosting.credentials.hub_token()` gives (in a shared app's
job, the user's own or none, never the host's). A model that is neither a folder nor in the
Hugging Face cache while offline is a `UserError` that says so. Generation blocks, so it runs in
a worker thread; one model on one device runs one generation at a time (a lock), however many
requests generation sends concurrently.

    teacher = LocalHFTeacher("Qwen/Qwen2.5-7B")            # cuda if available, else cpu
    teacher = LocalHFTeacher("runs/my-model", device="cpu", dtype="float32")
    teacher = LocalHFTeacher("smollm2-135m")  # its folder from `rtdemo models prepare`
"""

from __future__ import annotations

import asyncio
import functools
import gc
import threading
import weakref
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rtdemo.errors import UserError
from rtdemo.hosting.credentials import ANONYMOUS_HINT, hub_token
from rtdemo.models import resolve_model_name
from rtdemo.teachers.base import Completion, Teacher, TeacherError, TeacherInfo

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

Dtype = Literal["auto", "float32", "bfloat16", "float16"]
DTYPES: tuple[str, ...] = ("auto", "float32", "bfloat16", "float16")


def _looks_like_path(model: str) -> bool:
    """Whether `model` names a folder rather than a Hub id (`name` or `namespace/name`)."""
    return model.startswith(("/", ".", "~")) or "\\" in model or model.count("/") > 1


class LocalHFTeacher(Teacher):
    """A causal language model run in-process with transformers (raw continuation of prompts)."""

    supports_n = True

    def __init__(
        self,
        model: str,
        device: str | None = None,
        dtype: Dtype = "auto",
        batch_size: int = 8,
        token: str | bool | None = None,
    ) -> None:
        """Remember the model and settings (no loading). `model` is a Hub id or a model folder;
        `device` None is "cuda" if available, else "cpu"; `dtype` "auto" is the checkpoint's own
        on a GPU and float32 on the CPU (where half precision is slow or unsupported);
        `batch_size` caps the sequences one `generate` call draws (call 1's n samples are drawn
        in chunks of this size); `token` is the Hub token a Hub id is fetched with (False: none;
        None: `rtdemo.hosting.credentials.hub_token()` when loading, in a job the `HF_TOKEN` it
        was given)."""
        if dtype not in DTYPES:
            raise UserError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
        if batch_size < 1:
            raise UserError(f"batch_size must be at least 1, not {batch_size}")
        model = resolve_model_name(model)  # smollm2-135m: its prepared folder
        folder = Path(model).expanduser()
        self.is_folder = folder.is_dir() or _looks_like_path(model)
        self.model_name = str(folder.resolve()) if self.is_folder else model
        self.requested_device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self._token = token  # never in repr or info
        label = f"{folder.name} (local transformers, model folder)" if self.is_folder else None
        self.info = TeacherInfo(
            kind="hf", model=self.model_name, label=label or f"{model} (local transformers)"
        )
        self._model: PreTrainedModel | None = None
        self._tokenizer: PreTrainedTokenizerBase | None = None
        self.device: str | None = None  # known once loaded
        # One generation at a time: a thread lock guards the model itself; per event loop, an
        # asyncio lock queues waiting requests without tying up worker threads.
        self._model_lock = threading.Lock()
        self._loop_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    def __repr__(self) -> str:
        return (
            f"LocalHFTeacher(model={self.model_name!r}, device={self.requested_device!r}, "
            f"dtype={self.dtype!r}, batch_size={self.batch_size})"
        )

    # -- the Teacher interface ------------------------------------------------------------------

    async def rationale(
        self, prompt: str, *, n: int, temperature: float, max_tokens: int
    ) -> list[Completion]:
        """Call 1: `n` continuations, sampled at `temperature` (greedy, and identical, at 0)."""
        async with self._lock():
            return await asyncio.to_thread(self._complete, prompt, n, temperature, max_tokens)

    async def answer(self, prompt: str, *, max_tokens: int) -> Completion:
        """Call 2: the greedy continuation of the answer prompt."""
        async with self._lock():
            [completion] = await asyncio.to_thread(self._complete, prompt, 1, 0.0, max_tokens)
        return completion

    async def stream(
        self, prompt: str, *, temperature: float, max_tokens: int
    ) -> AsyncIterator[str]:
        """A continuation of `prompt` as text pieces, as `generate` writes them.

        Closing the iterator early stops the generation at its next token.
        """
        async with self._lock():
            await asyncio.to_thread(self._load_locked)
            from transformers import StoppingCriteriaList  # imported by the load: no wait here

            streamer_class, stop_when_class = _stream_classes()
            tokenizer = self._tokenizer
            inputs, max_new = self._encode(prompt, max_tokens)
            eos = self._eos_ids()
            streamer = streamer_class(tokenizer, eos, skip_prompt=True, skip_special_tokens=True)
            cancelled = threading.Event()
            kwargs = self._generate_kwargs(1, temperature, max_new, eos)
            kwargs |= {
                "streamer": streamer,
                "stopping_criteria": StoppingCriteriaList([stop_when_class(cancelled)]),
            }
            failure: list[BaseException] = []

            def run() -> None:
                try:
                    with self._model_lock:
                        model, _ = self._load()
                        self._generate(model, inputs, kwargs)
                except BaseException as err:  # handed to the reader below
                    failure.append(err)
                    streamer.end()  # unblock the reader

            worker = threading.Thread(target=run, name="local-hf-stream", daemon=True)
            worker.start()
            pieces = iter(streamer)
            try:
                while (piece := await asyncio.to_thread(next, pieces, None)) is not None:
                    if piece:
                        yield piece
            finally:
                cancelled.set()
                await asyncio.to_thread(worker.join)
            if failure:
                raise _generation_error(failure[0]) from None

    def load(self) -> None:
        """Load the model and tokenizer now if they are not loaded yet (the first call would);
        blocking, `UserError` when the model cannot be loaded."""
        self._load_locked()

    async def aclose(self) -> None:
        """Free the model (and the GPU memory it held) once the running call is done; a later
        call loads it again."""
        async with self._lock():
            with self._model_lock:
                self._model = self._tokenizer = None
        gc.collect()
        if self.device and self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    # -- loading --------------------------------------------------------------------------------

    def _lock(self) -> asyncio.Lock:
        """This event loop's request queue (an asyncio lock belongs to one loop)."""
        loop = asyncio.get_running_loop()
        lock = self._loop_locks.get(loop)
        if lock is None:
            lock = self._loop_locks[loop] = asyncio.Lock()
        return lock

    def _load_locked(self) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        with self._model_lock:
            return self._load()

    def _load(self) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        """The model and tokenizer, loaded on first use (call with `_model_lock` held)."""
        if self._model is not None and self._tokenizer is not None:
            return self._model, self._tokenizer
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self._check_folder()
        device = self.requested_device or ("cuda" if torch.cuda.is_available() else "cpu")
        if self.dtype != "auto":
            dtype: Any = getattr(torch, self.dtype)
        else:
            dtype = "auto" if device.startswith("cuda") else torch.float32
        token = hub_token(self._token)
        try:
            tokenizer = AutoTokenizer.from_pretrained(self.model_name, token=token)
            # Straight onto the device: a large model never sits whole in CPU memory first.
            model = AutoModelForCausalLM.from_pretrained(
                self.model_name, dtype=dtype, device_map=device, token=token
            )
        except OSError as err:
            raise self._not_found(err, token) from None
        except ValueError as err:  # a config transformers cannot use as a causal LM
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UserError(
                f"cannot use {self.model_name!r} as a local teacher: it must be a causal "
                f"(decoder-only) language model transformers can load ({first})"
            ) from None
        model.eval()
        self._model, self._tokenizer, self.device = model, tokenizer, device
        return model, tokenizer

    def _check_folder(self) -> None:
        if not self.is_folder:
            return
        folder = Path(self.model_name)
        if not folder.is_dir():
            raise UserError(
                f"the local teacher model needs network or a local copy: there is no folder "
                f"{folder}; give a model folder or a Hugging Face Hub id"
            )
        if not (folder / "config.json").is_file():
            raise UserError(f"{folder} is not a transformers model folder (it has no config.json)")

    def _not_found(self, err: OSError, token: str | bool | None = None) -> UserError:
        """The message for a model that could not be found or fetched (`token` False: fetched
        without a token, which the message says)."""
        from huggingface_hub import constants

        text = str(err)
        if constants.HF_HUB_OFFLINE or "connect" in text.lower():
            why = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "the Hub is unreachable"
            return UserError(
                f"the local teacher model {self.model_name!r} needs network or a local copy: "
                f"it is not in the Hugging Face cache and {why}. Download it where there is "
                f"network (`hf download {self.model_name}`) or give the path of a model folder."
            )
        first = text.strip().splitlines()[0] if text.strip() else type(err).__name__
        hint = ANONYMOUS_HINT if token is False else ""
        return UserError(f"cannot load the local teacher model {self.model_name!r}: {first}{hint}")

    # -- generation -----------------------------------------------------------------------------

    def _complete(
        self, prompt: str, n: int, temperature: float, max_tokens: int
    ) -> list[Completion]:
        """`n` continuations of `prompt` (blocking; run in a worker thread)."""
        with self._model_lock:
            model, tokenizer = self._load()
            inputs, max_new = self._encode(prompt, max_tokens)
            eos = self._eos_ids()
            prompt_len = inputs["input_ids"].shape[1]
            sampling = temperature > 0
            chunks = _chunks(n, self.batch_size) if sampling else [1]
            rows: list[list[int]] = []
            for size in chunks:
                kwargs = self._generate_kwargs(size, temperature, max_new, eos)
                out = self._generate(model, inputs, kwargs)
                rows += out[:, prompt_len:].tolist()
        completions = [_completion(tokenizer, row, eos, prompt_len) for row in rows]
        if not sampling:  # greedy decoding gives one answer: the same one n times
            completions *= n
        return [
            c if i == 0 else Completion(c.text, c.finish_reason, 0, c.completion_tokens)
            for i, c in enumerate(completions)
        ]

    def _encode(self, prompt: str, max_tokens: int) -> tuple[dict[str, Any], int]:
        """The prompt's tensors on the model's device, and the new-token cap that fits the
        model's context (so a long prompt ends in "length" rather than an index error)."""
        assert self._model is not None and self._tokenizer is not None
        inputs = self._tokenizer(prompt, return_tensors="pt").to(self._model.device)
        prompt_len = inputs["input_ids"].shape[1]
        context = getattr(self._model.config.get_text_config(), "max_position_embeddings", None)
        max_new = max_tokens
        if context:
            if prompt_len >= context:
                raise TeacherError(
                    "bad_request",
                    f"the prompt is {prompt_len} tokens; {self.model_name} reads at most {context}",
                )
            max_new = min(max_tokens, context - prompt_len)
        return dict(inputs), max_new

    def _eos_ids(self) -> list[int]:
        """The tokens that end a continuation: the generation config's and the tokenizer's EOS."""
        assert self._model is not None and self._tokenizer is not None
        configured = self._model.generation_config.eos_token_id
        ids = [configured] if isinstance(configured, int) else list(configured or [])
        if self._tokenizer.eos_token_id is not None and self._tokenizer.eos_token_id not in ids:
            ids.append(self._tokenizer.eos_token_id)
        return ids

    def _generate_kwargs(
        self, n: int, temperature: float, max_new: int, eos: list[int]
    ) -> dict[str, Any]:
        assert self._model is not None and self._tokenizer is not None
        pad = self._model.generation_config.pad_token_id
        if pad is None:
            pad = self._tokenizer.pad_token_id
        if pad is None and eos:
            pad = eos[0]
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_new,
            "eos_token_id": eos or None,
            "pad_token_id": pad,
        }
        if temperature > 0:
            # Pure temperature sampling, whatever top-k/top-p the checkpoint suggests.
            kwargs |= {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0}
            kwargs["num_return_sequences"] = n
        else:
            kwargs["do_sample"] = False
        return kwargs

    @staticmethod
    def _generate(model: PreTrainedModel, inputs: dict[str, Any], kwargs: dict[str, Any]) -> Any:
        """One `generate` call (call with `_model_lock` held); out of memory is a `TeacherError`."""
        import torch

        with torch.inference_mode():
            try:
                return model.generate(**inputs, **kwargs)
            except torch.OutOfMemoryError as err:
                raise _generation_error(err) from None


def _chunks(n: int, size: int) -> list[int]:
    """`n` split into chunk sizes of at most `size`."""
    return [min(size, n - start) for start in range(0, n, size)]


def _completion(
    tokenizer: PreTrainedTokenizerBase, row: list[int], eos: list[int], prompt_len: int
) -> Completion:
    """One generated row (new tokens, padded after an EOS) as a `Completion`."""
    stop = next((i for i, token in enumerate(row) if token in eos), None)
    written = row if stop is None else row[:stop]
    text = tokenizer.decode(written, skip_special_tokens=True)
    if stop is None:
        return Completion(text, "length", prompt_len, len(row))
    return Completion(text, "stop", prompt_len, stop + 1)


def _generation_error(err: BaseException) -> BaseException:
    """Out of memory as a `TeacherError` that says what to change; anything else unchanged."""
    import torch

    if isinstance(err, torch.OutOfMemoryError):
        return TeacherError(
            "bad_request",
            "the local teacher ran out of memory: lower batch_size or the token limit, "
            "or choose a smaller model",
        )
    return err


@functools.cache
def _stream_classes() -> tuple[type, type]:
    """The streamer and the cancel criterion (defined on first use: transformers loads lazily)."""
    import torch
    from transformers import StoppingCriteria, TextIteratorStreamer

    class Streamer(TextIteratorStreamer):
        """A `TextIteratorStreamer` that leaves out EOS tokens (not always special tokens)."""

        def __init__(self, tokenizer: Any, eos: list[int], **kwargs: Any) -> None:
            super().__init__(tokenizer, **kwargs)
            self.eos = set(eos)

        def put(self, value: torch.Tensor) -> None:
            if self.skip_prompt and self.next_tokens_are_prompt:
                super().put(value)  # the prompt: skipped by the parent
                return
            kept = [token for token in value.reshape(-1).tolist() if token not in self.eos]
            if kept:
                super().put(value.new_tensor(kept))

    class StopWhen(StoppingCriteria):
        """Stops generation once `event` is set (the stream's reader went away)."""

        def __init__(self, event: threading.Event) -> None:
            self.event = event

        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any):
            stop = self.event.is_set()
            return torch.full(
                (input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device
            )

    return Streamer, StopWhen
