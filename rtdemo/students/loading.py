"""Students: load a causal or seq2seq model (Hub id or folder), and build the tiny offline student.

Any student loads through the ordinary `from_pretrained` path, so a Hub id, a downloaded copy in
the Hugging Face cache and a local folder behave the same:

    kind = student_kind("google/flan-t5-base")            # "seq2seq" (from the config alone)
    model, tokenizer, kind = load_student("gpt2", for_training=True)
    model, tokenizer, kind = load_student("runs/cot/final", for_training=False)  # to answer

This is the one loader: training, evaluation, Chat and publishing all load through it.
A registry name (`smollm2-135m`, see `rtdemo.models`) loads the folder `rtdemo models prepare`
wrote; before that it is a UserError that says how to prepare it. `student_origin(name)` says what
such a student really is (a dequantized copy of a Hub model), for the cards and results that
describe it; it also follows a LoRA adapter to the base it was trained on.

The tiny offline student needs nothing from the network: a GPT-2-architecture model with random
weights (about 0.9M parameters at the defaults) and a byte-level tokenizer (256 byte tokens plus
EOS and pad), written as an ordinary model folder:

    folder = build_tiny_student(Path("runs/demo/base"))
    model, tokenizer, kind = load_student(folder, for_training=True)

A trained student in `<run>/final/` loads with the same `load_student(...)`: a LoRA run saves only
its adapter there (`adapter_config.json` names the base model), which `load_student` applies to the
base and, for inference, merges into it.

Byte tokens, not a BPE trained on the task text: every string round-trips, there is nothing to
train or fit, and the tokenized prompt is always a prefix of the tokenized prompt+completion (the
Fine-tune-CoT loss mask relies on that, METHOD.md step 2).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rtdemo.errors import UserError
from rtdemo.hosting.credentials import ANONYMOUS_HINT, hub_token
from rtdemo.models import is_registry_name, model_spec, read_marker, resolve_model_name

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

StudentKind = Literal["causal", "seq2seq"]
STUDENT_KINDS: tuple[StudentKind, ...] = ("causal", "seq2seq")

TINY_EOS, TINY_PAD = "<|endoftext|>", "<|pad|>"  # ids 256 and 257; bytes keep ids 0-255
ADAPTER_CONFIG = "adapter_config.json"


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from the 256 byte values to printable characters (byte order)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += list(range(ord("®"), ord("ÿ") + 1))
    mapping, extra = {}, 0
    for b in range(256):
        if b in printable:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def byte_tokenizer() -> PreTrainedTokenizerBase:
    """A byte-level tokenizer needing no files: token id = byte value, then EOS (256), pad (257).

    It adds no special tokens when encoding (the trainer appends EOS to completions), and
    recognises the literal EOS and pad strings as their special tokens.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {char: b for b, char in _bytes_to_unicode().items()}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token=TINY_EOS, pad_token=TINY_PAD
    )
    return tokenizer


WORD = re.compile(r" [A-Za-z]+| [^\sA-Za-z0-9]+")
MIN_SHARE = 0.1  # a word in at least this share of the texts becomes one token
# Bounds on the word tokenizer, whatever the texts (an uploaded file, a teacher's rationales): a
# word of n bytes adds a chain of n - 1 merges whose tokens hold 2..n bytes, so the tokenizer
# grows with the square of the word's length. Longer words stay bytes; of more frequent words,
# the most frequent are kept. At these bounds tokenizer.json stays under 1 MB, about 0.6 MB at
# worst (tests check a hostile case); on the paper's twelve tasks and the demo the frequent words
# are at most 14 bytes and at most 97, so these bounds change nothing there.
MAX_WORD_BYTES = 24
MAX_WORDS = 256


def frequent_words(texts: Sequence[str], min_share: float = MIN_SHARE) -> list[str]:
    """Space-led words and symbols (" the", " -->") found in at least `min_share` of `texts`.

    On a task's training text these are its template words; names, numbers and answers are
    rarer and stay bytes, so a student still sees every letter it has to reason about. Words of
    more than `MAX_WORD_BYTES` bytes (UTF-8) stay bytes too, and at most `MAX_WORDS` words are
    returned (the most frequent; ties in alphabetical order), sorted.
    """
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(
            {w for w in WORD.findall(text) if len(w) > 2 and len(w.encode()) <= MAX_WORD_BYTES}
        )
    floor = max(2, math.ceil(min_share * len(texts)))
    frequent = sorted((-c, w) for w, c in counts.items() if c >= floor)
    return sorted(w for _, w in frequent[:MAX_WORDS])


def word_tokenizer(words: Sequence[str]) -> PreTrainedTokenizerBase:
    """The byte tokenizer plus one token per word in `words` (each starting with a space).

    Each word is reached by a chain of merges anchored at its leading space (" t", " th",
    " the"), so merges never apply inside a word that does not start the same way: the byte
    sequence of any other text is unchanged, decoding is exact, and a prompt's tokens stay a
    prefix of prompt + completion's. At most `MAX_WORDS` words of at most `MAX_WORD_BYTES`
    bytes (what `frequent_words` returns); more is a `ValueError`, so the tokenizer's size is
    bounded.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    if len(words) > MAX_WORDS:
        raise ValueError(f"at most {MAX_WORDS} words become tokens, not {len(words)}")
    if too_long := [w for w in words if len(w.encode()) > MAX_WORD_BYTES]:
        raise ValueError(f"words longer than {MAX_WORD_BYTES} bytes stay bytes: {too_long[0]!r}")
    to_char = _bytes_to_unicode()
    vocab = {char: b for b, char in to_char.items()}
    merges: list[tuple[str, str]] = []
    for word in words:
        chars = [to_char[b] for b in word.encode("utf-8")]
        for i in range(1, len(chars)):
            left, right = "".join(chars[:i]), chars[i]
            if left + right not in vocab:
                vocab[left + right] = len(vocab)
                merges.append((left, right))
    # Special tokens come after every merged word: ids are stable for a given word list.
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=TINY_EOS, pad_token=TINY_PAD)


def build_tiny_student(
    folder: Path,
    *,
    layers: int = 4,
    width: int = 128,
    heads: int = 4,
    context: int = 512,
    seed: int = 0,
    texts: Sequence[str] | None = None,
    dropout: float = 0.0,
) -> Path:
    """Write the tiny offline student into `folder` (created if needed) and return the folder.

    A GPT-2-architecture causal LM with random weights (seeded: the same arguments give the same
    weights) and the byte tokenizer of `byte_tokenizer()`; about 0.9M parameters at the defaults.
    `context` is the number of positions (prompt + completion, in bytes). The folder loads back
    with `load_student(folder, ...)` or plain `AutoModelForCausalLM.from_pretrained(folder)`.
    """
    import torch
    from transformers import AutoModelForCausalLM, GPT2Config

    if width % heads:
        raise UserError(f"the tiny student's width ({width}) must be a multiple of heads ({heads})")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # With the task's training texts, its template words become single tokens (about half the
    # sequence length, a third of the training time); letters, names and answers stay bytes.
    tokenizer = word_tokenizer(frequent_words(texts)) if texts else byte_tokenizer()
    tokenizer.model_max_length = context
    ids = {"eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=context,
        n_embd=width,
        n_layer=layers,
        n_head=heads,
        bos_token_id=tokenizer.eos_token_id,  # GPT-2's convention; nothing prepends it
        # No dropout by default: a model this small learning an algorithmic task underfits, it
        # does not overfit, and dropout slowed learning (benchmarks/README.md, the demo).
        resid_pdrop=dropout,
        embd_pdrop=dropout,
        attn_pdrop=dropout,
        **ids,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config.eos_token_id = ids["eos_token_id"]
    model.generation_config.pad_token_id = ids["pad_token_id"]
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _adapter_config(folder: Path) -> dict[str, Any] | None:
    """A LoRA adapter folder's `adapter_config.json`, or None for a plain model folder."""
    path = folder / ADAPTER_CONFIG
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def _adapter_base(folder: Path) -> str | None:
    """The base model a LoRA adapter folder was trained on, or None for a plain model folder."""
    config = _adapter_config(folder)
    return None if config is None else config["base_model_name_or_path"]


def student_origin(name_or_path: str | Path) -> dict[str, str] | None:
    """What a student made by `rtdemo models prepare` really is, or None for any other student.

    For a registry name (`smollm2-135m`), its prepared folder (read from its marker) or a LoRA
    adapter trained on either: `{"name", "base_model", "description", "conversion"}`, e.g.
    base_model "HuggingFaceTB/SmolLM2-135M-Instruct", conversion "dequantized from 4-bit (Q4_1) to
    float32". Cards, results and evaluations use it to say that the weights trained and evaluated
    were a dequantized copy, not the original. Reads no weights; a registry name needs no
    prepared folder."""
    text = str(name_or_path)
    if is_registry_name(text):
        spec = model_spec(text)
        return {
            "name": spec.name,
            "base_model": spec.base_model,
            "description": spec.description,
            "conversion": f"dequantized from {spec.quantization} to {spec.dtype}",
        }
    if not _looks_like_path(text):
        return None
    folder = Path(text).expanduser()
    config = _adapter_config(folder) if folder.is_dir() else None
    if config is not None:  # an adapter: what its base is
        base = config.get("base_model_name_or_path")
        base_folder = Path(str(base)).expanduser()
        if not base or (base_folder / ADAPTER_CONFIG).is_file():
            return None
        return student_origin(base) if is_registry_name(base) else _marker_origin(base_folder)
    return _marker_origin(folder)


def _marker_origin(folder: Path) -> dict[str, str] | None:
    marker = read_marker(folder) if folder.is_dir() else None
    if not marker or not isinstance(marker.get("base_model"), str):
        return None
    keys = ("name", "base_model", "description", "conversion")
    return {k: str(marker.get(k) or "") for k in keys}


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or Path(name).exists() or name.count("/") > 1


def _load_error(name: str, err: Exception, token: str | bool | None = None) -> UserError:
    """A message for a student that could not be found or fetched (`token` False: fetched
    without a token, which the message says)."""
    from huggingface_hub import constants

    text = str(err)
    if constants.HF_HUB_OFFLINE or "connect" in text.lower() or "offline" in text.lower():
        why = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "the Hub is unreachable"
        return UserError(
            f"the student {name!r} needs network or a local copy: it is not in the Hugging Face "
            f"cache and {why}. Download it where there is network (`hf download {name}`), give "
            "the path of a model folder, or use the tiny offline student ('tiny')."
        )
    first = text.strip().splitlines()[0] if text.strip() else type(err).__name__
    hint = ANONYMOUS_HINT if token is False else ""
    return UserError(f"cannot load the student {name!r}: {first}{hint}")


def _check_folder(name: str) -> None:
    if not _looks_like_path(name):
        return
    folder = Path(name).expanduser()
    if not folder.is_dir():
        raise UserError(
            f"there is no student folder {folder}: give an existing model folder, a Hugging Face "
            "Hub id (e.g. 'gpt2', 'google/flan-t5-base') or 'tiny'"
        )
    if not (folder / "config.json").is_file() and not (folder / ADAPTER_CONFIG).is_file():
        raise UserError(f"{folder} is not a transformers model folder (it has no config.json)")


def _resolve(name_or_path: str | Path) -> tuple[str, str | None]:
    """(model to load the config from, adapter folder or None)."""
    name = str(name_or_path)
    _check_folder(name)
    if not _looks_like_path(name):
        return name, None
    # Absolute, so that an adapter trained on it names a base that loads from anywhere.
    name = str(Path(name).expanduser().resolve())
    base = _adapter_base(Path(name))
    if base is None:
        return name, None
    _check_folder(base)
    return base, name


def student_kind(name_or_path: str | Path, *, token: str | bool | None = None) -> StudentKind:
    """ "causal" (decoder-only) or "seq2seq" (encoder-decoder), read from the student's config.

    Reads only `config.json` (of the base model, for a LoRA adapter folder whose
    `adapter_config.json` does not name its task type): no weights. A Hub id is fetched with
    `token` (False: none), else `rtdemo.hosting.credentials.hub_token()`'s.
    Raises UserError for a missing folder or a Hub id that cannot be loaded here.
    """
    from transformers import AutoConfig

    given = resolve_model_name(name_or_path)  # smollm2-135m: its prepared folder
    _check_folder(given)
    if _looks_like_path(given):  # an adapter that names its task needs no base model here
        task_type = (_adapter_config(Path(given).expanduser()) or {}).get("task_type")
        if task_type in ("CAUSAL_LM", "SEQ_2_SEQ_LM"):
            return "seq2seq" if task_type == "SEQ_2_SEQ_LM" else "causal"
    name, _ = _resolve(given)
    token = hub_token(token)
    try:
        config = AutoConfig.from_pretrained(name, token=token)
    except (OSError, ValueError) as err:
        raise _load_error(name, err, token) from None
    return "seq2seq" if getattr(config, "is_encoder_decoder", False) else "causal"


def load_student(
    name_or_path: str | Path,
    *,
    for_training: bool,
    kind: StudentKind | None = None,
    dtype: str | None = None,
    device: str | None = None,
    token: str | bool | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, StudentKind]:
    """The student's model, tokenizer and kind, through `from_pretrained`: for training, or
    (`for_training=False`) ready to answer.

    - `kind` is read from the config (`student_kind`) when not given.
    - A tokenizer without a pad token gets pad = EOS (the trainer still trains the final EOS: its
      labels come from the completion mask, not from the padding).
    - Decoder-only tokenizers pad on the left, as batched generation needs (training pads on
      its own, on the right); seq2seq ones on the right.
    - A LoRA adapter folder (a LoRA run's `final/`) loads its base model with the adapter applied
      (the adapter folder's tokenizer, else the base's); for inference the adapter is merged into
      the base weights (merged weights generate faster).
    - For inference the model is in eval mode with the generation cache on (the trainer switches
      it off), in fp32 unless `dtype` says otherwise (greedy answers are then reproducible), on
      `device` (default: CUDA when there is one, else the CPU). For training, `dtype` and
      `device` default to `from_pretrained`'s own (the checkpoint's dtype, the CPU).
    - A Hub id is fetched with `token` (False: none), else with `hub_token()`'s: on a shared app
      the user's own token or none, never the server's (`rtdemo.hosting.credentials`).
    """
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    name_or_path = resolve_model_name(name_or_path)  # smollm2-135m: its prepared folder
    base, adapter = _resolve(name_or_path)
    token = hub_token(token)
    kind = kind or student_kind(name_or_path, token=token)
    if kind not in STUDENT_KINDS:
        raise ValueError(f"unknown student kind {kind!r}; use one of {STUDENT_KINDS}")
    auto = AutoModelForSeq2SeqLM if kind == "seq2seq" else AutoModelForCausalLM
    if dtype is None and not for_training:
        dtype = "float32"
    has_tokenizer = adapter is not None and (Path(adapter) / "tokenizer_config.json").is_file()
    try:
        tokenizer = AutoTokenizer.from_pretrained(adapter if has_tokenizer else base, token=token)
        model: Any = auto.from_pretrained(base, token=token, **({"dtype": dtype} if dtype else {}))
    except (OSError, ValueError) as err:
        raise _load_error(base, err, token) from None
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter, is_trainable=for_training)
        if not for_training:
            model = model.merge_and_unload()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left" if kind == "causal" else "right"
    if kind == "causal" and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    if not for_training:
        import torch

        model.config.use_cache = True
        model.generation_config.use_cache = True
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device is not None:
        model.to(device)
    if not for_training:
        model.eval()
    return model, tokenizer, kind
