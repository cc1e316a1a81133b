"""Students: the tiny offline student, the byte tokenizer, kinds and loading (all offline)."""

from __future__ import annotations

import json

import pytest
import torch

from rtdemo.curation.curate import format_pair
from rtdemo.errors import UserError
from rtdemo.students.loading import (
    TINY_EOS,
    build_tiny_student,
    byte_tokenizer,
    load_student,
    student_kind,
)
from tests.tiny_models import build_tiny_seq2seq

torch.set_num_threads(1)

TEXTS = [
    "",
    "plain ascii ###",
    ' Ada\'s "last" letters --> ae',
    "Umlaute äöü, CJK 漢字, emoji 🙂🚀, tab\tand\nnew line  double  space",
    "bytes like \x00\x7f and ~`{}[]|\\",
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_student(tmp_path_factory.mktemp("tiny") / "student")


def test_tiny_student_builds_with_about_0_9m_parameters_and_loads_back(tiny):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    files = {p.name for p in tiny.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors"} <= files
    model = AutoModelForCausalLM.from_pretrained(tiny)
    assert type(model).__name__ == "GPT2LMHeadModel"
    n_params = sum(p.numel() for p in model.parameters())
    assert 850_000 < n_params < 950_000
    saved = load_file(tiny / "model.safetensors")
    state = model.state_dict()
    for name, tensor in saved.items():
        assert torch.equal(state[name], tensor), name
    config = model.config
    assert (config.n_layer, config.n_embd, config.n_head, config.n_positions) == (4, 128, 4, 512)
    assert model.generation_config.eos_token_id == 256
    assert model.generation_config.pad_token_id == 257


def test_tiny_student_is_seeded(tmp_path):
    from safetensors.torch import load_file

    a = build_tiny_student(tmp_path / "a", layers=1, width=16, heads=2, seed=3)
    b = build_tiny_student(tmp_path / "b", layers=1, width=16, heads=2, seed=3)
    c = build_tiny_student(tmp_path / "c", layers=1, width=16, heads=2, seed=4)
    wa, wb, wc = (load_file(f / "model.safetensors") for f in (a, b, c))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


def test_tiny_student_rejects_width_not_divisible_by_heads(tmp_path):
    with pytest.raises(UserError, match="multiple of heads"):
        build_tiny_student(tmp_path / "x", width=30, heads=4)


@pytest.mark.parametrize("text", TEXTS)
def test_byte_tokenizer_round_trips_any_text_from_the_saved_folder(tiny, text):
    from transformers import AutoTokenizer

    saved = AutoTokenizer.from_pretrained(tiny)
    for tokenizer in (byte_tokenizer(), saved):
        ids = tokenizer(text)["input_ids"]
        assert ids == list(text.encode("utf-8"))  # one token per byte, no special tokens added
        assert tokenizer.decode(ids) == text


def test_byte_tokenizer_special_tokens(tiny):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    assert len(tokenizer) == 258
    assert (tokenizer.eos_token_id, tokenizer.pad_token_id) == (256, 257)  # pad != eos
    # The trainer appends the EOS *text* to completions: it must become the one EOS token.
    assert tokenizer(f" r --> a{TINY_EOS}")["input_ids"][-1] == 256
    assert tokenizer.model_max_length == 512


def test_tokenized_prompt_is_a_prefix_of_prompt_plus_completion(tiny):
    tokenizer = byte_tokenizer()
    pair = format_pair('Take the last letters of "Ada Lovelace".', "a and e.", "ae", "cot")
    prompt = tokenizer(pair["prompt"])["input_ids"]
    full = tokenizer(pair["prompt"] + pair["completion"])["input_ids"]
    assert full[: len(prompt)] == prompt


def test_student_kind_reads_the_config(tiny, tmp_path):
    assert student_kind(tiny) == "causal"
    assert student_kind(str(tiny)) == "causal"
    assert student_kind(build_tiny_seq2seq(tmp_path / "t5")) == "seq2seq"


def test_student_kind_errors_say_what_to_change(tmp_path):
    with pytest.raises(UserError, match="there is no student folder"):
        student_kind(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"no config\.json"):
        student_kind(tmp_path / "empty")
    # conftest sets HF_HUB_OFFLINE=1: a Hub id that is not cached cannot be loaded here.
    with pytest.raises(UserError, match="needs network or a local copy"):
        student_kind("rtdemo-tests/no-such-student")


def test_load_student_causal_for_generation(tiny):
    model, tokenizer, kind = load_student(tiny, for_training=False)
    assert kind == "causal"
    assert tokenizer.padding_side == "left"  # batched generation of a decoder-only model
    assert not model.training and model.config.use_cache


def test_load_student_gives_pad_eos_when_the_tokenizer_has_none(tiny, tmp_path):
    import shutil

    folder = tmp_path / "no-pad"
    shutil.copytree(tiny, folder)
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config.pop("pad_token", None)
    config_path.write_text(json.dumps(config))
    _, tokenizer, _ = load_student(folder, for_training=True)
    assert tokenizer.pad_token_id == tokenizer.eos_token_id == 256


def test_load_student_seq2seq(tmp_path):
    model, tokenizer, kind = load_student(build_tiny_seq2seq(tmp_path / "t5"), for_training=True)
    assert kind == "seq2seq"
    assert model.config.is_encoder_decoder
    assert tokenizer("ab")["input_ids"][-1] == tokenizer.eos_token_id  # T5 appends EOS


def test_word_tokenizer_keeps_names_as_letters_and_shortens_the_template():
    from rtdemo.curation.curate import format_pair
    from rtdemo.students.loading import frequent_words, word_tokenizer
    from rtdemo.tasks.synthetic import SyntheticSettings, generate

    examples = generate("last_letter_concatenation", SyntheticSettings(size=200))
    records = [
        format_pair(
            e.question,
            f'The last letter of "{e.question.split(chr(34))[1].split()[0]}" is "{e.answer[0]}".',
            e.answer,
            "cot",
        )
        for e in examples
    ]
    texts = [r["prompt"] + r["completion"] for r in records]
    words = frequent_words(texts)
    assert {" the", " last", " letter", " ###", " -->"} <= set(words)
    assert not any(w.strip()[:1].isupper() and w.strip() not in ("The", "Take") for w in words)
    tok = word_tokenizer(words)
    for r, text in zip(records, texts, strict=True):
        ids = tok(text)["input_ids"]
        assert tok.decode(ids) == text
        prompt_ids = tok(r["prompt"])["input_ids"]
        assert ids[: len(prompt_ids)] == prompt_ids  # the prompt is a prefix
        assert len(ids) < 0.7 * len(text.encode())
    pieces = [tok.decode([i]) for i in tok(' "Rosalind Otto"')["input_ids"]]
    assert pieces[-3:] == ["t", "o", '"'] and "d" in pieces  # every letter of a name is its own
    assert tok.eos_token_id != tok.pad_token_id


def _hostile_texts() -> list[str]:
    """Texts built to blow the word tokenizer up: a 20,000-character word in every text, 400
    distinct 24-byte words of 2-byte symbols (more than MAX_WORDS, each at the byte limit, little
    shared prefix) in half of them, and 25-byte words in every text; plus a template word
    (" answer") in every text."""
    import random

    from rtdemo.students.loading import MAX_WORD_BYTES

    rng = random.Random(0)
    symbols = [chr(c) for c in range(0xA1, 0x250)]
    many = [" " + "".join(rng.choices(symbols, k=11)) + "!" for _ in range(400)]
    too_long = [" " + "x" * (MAX_WORD_BYTES - 1) + c for c in "abc"]
    assert {len(w.encode()) for w in many} == {MAX_WORD_BYTES}
    assert {len(w.encode()) for w in too_long} == {MAX_WORD_BYTES + 1}
    huge = " " + "z" * 20_000
    return [
        "Q ###" + huge + "".join(too_long) + ("".join(many) if i % 2 else "") + " the answer is"
        for i in range(20)
    ]


def test_hostile_texts_leave_the_word_tokenizer_under_a_fixed_size(tmp_path):
    """Issue 12: a 20,000-character word made tokenizer.json 401 MB (its size grows with the
    square of the word's length). Now long words stay bytes and the words are capped."""
    from rtdemo.students.loading import MAX_WORD_BYTES, MAX_WORDS, frequent_words

    texts = _hostile_texts()
    words = frequent_words(texts)
    assert len(words) == MAX_WORDS
    assert {" answer", " the", " is"} <= set(words)  # the most frequent are kept
    assert max(len(w.encode()) for w in words) == MAX_WORD_BYTES
    assert not any(w.startswith((" z", " xxx")) for w in words)
    folder = build_tiny_student(tmp_path / "tiny", layers=1, width=8, heads=1, texts=texts)
    assert (folder / "tokenizer.json").stat().st_size < 1_000_000
    _, tok, _ = load_student(folder, for_training=True)
    huge = " " + "z" * 20_000
    assert len(tok(huge)["input_ids"]) == 20_001  # bytes
    assert tok.decode(tok(texts[1])["input_ids"]) == texts[1]


def test_word_tokenizer_refuses_words_beyond_its_bounds():
    from rtdemo.students.loading import MAX_WORD_BYTES, MAX_WORDS, word_tokenizer

    with pytest.raises(ValueError, match="stay bytes"):
        word_tokenizer([" " + "a" * MAX_WORD_BYTES])
    with pytest.raises(ValueError, match=f"at most {MAX_WORDS} words"):
        word_tokenizer([f" w{i:04d}" for i in range(MAX_WORDS + 1)])
    assert len(word_tokenizer([" " + "a" * (MAX_WORD_BYTES - 1)])) > 258
