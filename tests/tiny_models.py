"""Tiny models for tests: real model folders that load through `from_pretrained`, built offline.

Nothing can be downloaded from the Hub here, so tests build what they load. Every builder writes an
ordinary model folder (`config.json`, `generation_config.json`, `model.safetensors`, tokenizer
files) and returns its path; code under test then loads it exactly as it would a Hub model:
`AutoModelForCausalLM.from_pretrained(folder)`, `AutoTokenizer.from_pretrained(folder)`.

    from tests.tiny_models import build_tiny_causal_lm, build_tiny_seq2seq

    folder = build_tiny_causal_lm(tmp_path / "gpt2")                # GPT-2 architecture
    folder = build_tiny_causal_lm(tmp_path / "llama", kind="llama")  # Llama architecture
    folder = build_tiny_seq2seq(tmp_path / "t5")                     # T5 + ByT5 byte tokenizer

What you get:

- Random weights from a config (hidden size 32, 2 layers, 2 heads, 256 positions), seeded: the same
  arguments give the same weights, so greedy generation is deterministic. Building takes well under
  a second once transformers is imported (importing it takes a few seconds, once per process).
- Causal LMs: a byte-level BPE tokenizer trained with `tokenizers` on `vocab_texts` (default:
  Fine-tune-CoT-style texts, `DEFAULT_TEXTS`), wrapped in `PreTrainedTokenizerFast`. It round-trips
  any text (bytes are its base alphabet) and adds no special tokens when encoding. Special tokens:
  eos `<|endoftext|>`, pad `<|pad|>`, bos `<|bos|>` (ids 0, 1, 2, also in the model's config and
  generation config). A chat template (`CHAT_TEMPLATE`) lets chat-style servers
  (`transformers serve`) and `apply_chat_template` use the folder.
- Seq2seq: T5 with `ByT5Tokenizer()` (bytes; pad 0, eos 1, unk 2; needs no files).

Random weights almost never emit EOS. To test the "stop" path honestly, make a token the model
does emit greedily its end-of-sequence token:

    ids = greedy_token_ids(folder, "Q: hi", max_new_tokens=8)   # what the model writes
    set_eos_token_id(folder, ids[3])                            # now it stops there

STACK.md: a locally trained tokenizer saved beside a `Qwen2Config` is re-tokenized differently by
`AutoTokenizer`; GPT-2 and Llama configs round-trip, which is why those are the choices here.
Callers set `torch.set_num_threads(1)` (tests/conftest.py's habit on this 2-core machine).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

EOS, PAD, BOS = "<|endoftext|>", "<|pad|>", "<|bos|>"
SPECIAL_TOKENS = [EOS, PAD, BOS]  # ids 0, 1, 2 in every trained tokenizer

#: A minimal chat template: role tags as plain text, EOS after each message.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}{{ eos_token }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

#: Texts the default tokenizer is trained on: the shapes of Fine-tune-CoT prompts and completions.
DEFAULT_TEXTS = [
    "Q: A coin is heads up. Ada flips the coin. Bram does not flip the coin. "
    "Is the coin still heads up?\nA: Let's think step by step. The coin starts heads up. "
    "Ada flips it, so it is tails up. So the answer is no.\nTherefore, the answer is no.",
    'Q: Take the last letters of each words in "Ada Lovelace" and concatenate them.\n'
    'A: Let\'s think step by step. The last letter of "Ada" is "a". So the answer is ae.',
    "Roger has 5 tennis balls. He buys 2 more cans of 3 balls each. How many now? ### "
    "He has 5 + 2 * 3 = 11 balls. --> 11",
    "0 1 2 3 4 5 6 7 8 9 10 100 1000 yes no true false the a an is are was were",
]

CausalKind = Literal["gpt2", "llama"]


def train_byte_bpe_tokenizer(texts: Sequence[str] | None = None, vocab_size: int = 400):
    """A byte-level BPE `PreTrainedTokenizerFast` trained on `texts` (default `DEFAULT_TEXTS`).

    The vocabulary is the 256 byte symbols, `SPECIAL_TOKENS` (ids 0-2) and up to
    `vocab_size` - 259 merges. The tokenizer has `CHAT_TEMPLATE` and adds no BOS/EOS on encode.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(list(texts or DEFAULT_TEXTS), trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token=EOS, pad_token=PAD, bos_token=BOS
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def _causal_config(kind: CausalKind, vocab_size: int, tokenizer):
    from transformers import GPT2Config, LlamaConfig

    ids = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if kind == "gpt2":
        return GPT2Config(
            vocab_size=vocab_size, n_positions=256, n_embd=32, n_layer=2, n_head=2, **ids
        )
    if kind == "llama":
        return LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=256,
            **ids,
        )
    raise ValueError(f"kind must be 'gpt2' or 'llama', not {kind!r}")


def build_tiny_causal_lm(
    folder: str | Path,
    kind: CausalKind = "gpt2",
    vocab_texts: list[str] | None = None,
    *,
    seed: int = 0,
) -> Path:
    """Write a tiny decoder-only model with random (seeded) weights and a trained byte-level BPE
    tokenizer into `folder` (created if needed); return the folder.

    `kind` picks the architecture (GPT-2 or Llama); `vocab_texts` are the tokenizer's training
    texts (default `DEFAULT_TEXTS`). Load it with `AutoModelForCausalLM.from_pretrained(folder)`.
    """
    import torch
    from transformers import AutoModelForCausalLM

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = train_byte_bpe_tokenizer(vocab_texts)
    config = _causal_config(kind, len(tokenizer), tokenizer)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_tiny_seq2seq(folder: str | Path, *, seed: int = 0) -> Path:
    """Write a tiny T5 (encoder-decoder) with random (seeded) weights and a `ByT5Tokenizer` into
    `folder`; return the folder. Load it with `AutoModelForSeq2SeqLM.from_pretrained(folder)`."""
    import torch
    from transformers import AutoModelForSeq2SeqLM, ByT5Tokenizer, T5Config

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = ByT5Tokenizer()
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=32,
        d_kv=16,
        d_ff=64,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=2,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = AutoModelForSeq2SeqLM.from_config(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def greedy_token_ids(folder: str | Path, prompt: str, max_new_tokens: int = 8) -> list[int]:
    """The token ids a causal model folder writes greedily after `prompt`: up to
    `max_new_tokens`, fewer if it writes its EOS (then the EOS is the last id)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    inputs = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return out[0, inputs["input_ids"].shape[1] :].tolist()


def set_eos_token_id(folder: str | Path, token_id: int | list[int]) -> None:
    """Make `token_id` the model's end-of-sequence token(s) in `generation_config.json` (what
    `generate` stops on), so a tiny model ends where its greedy output reaches that token."""
    path = Path(folder) / "generation_config.json"
    config = json.loads(path.read_text())
    config["eos_token_id"] = token_id
    path.write_text(json.dumps(config, indent=2) + "\n")
