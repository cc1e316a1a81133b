"""What the app's users may reach on the server itself: its network, its disk, and the size of the
models it loads for them.

A user of a shared app types base URLs and model names that the *server* then opens. On a public
Space that must not reach the server's own network (an OpenAI-compatible "teacher" at
`http://127.0.0.1:…`, `http://169.254.169.254/…` or `http://10.…` would make the app a proxy into
it) nor load models from folders on its disk. The host decides:

    RTDEMO_ALLOW_LOCAL_ACCESS   1: allowed (default on your own machine)
                                0: refused (default on Spaces, where SYSTEM=spaces)

When refused: a teacher's base URL must name an http(s) host whose every address is public (DNS is
resolved when the work starts; the job resolves it again, so a host that changes its answer in
between is not stopped), and a teacher model or a student must be a Hub id, not a folder. The CLI
is the host's own tool and is never limited.

A registry name (`smollm2-135m`) is not a folder a user chose: users may name it when the host has
prepared it (`rtdemo models prepare smollm2-135m`); otherwise it is refused with that command,
which names no folder of the server (`rtdemo.models.resolve_model_name`).

The size of what the server loads. A Hub id a user names (a student, a local teacher, a chat
student) is downloaded and loaded by the server: on a shared app its weights must fit the host's

    RTDEMO_MAX_MODEL_MB         MB (2^20 bytes) of weights one model may have: 2,000 by default on
                                Spaces, elsewhere no limit; 0 = no limit (`rtdemo.hosting.quotas`)

`check_model_size` measures it before any of its weights are downloaded: the sizes of its weight
files as the Hub lists them (`HfApi.model_info(files_metadata=True)`, with the user's own token,
never the server's), the files a PyTorch load reads at the repo's root: its `*.safetensors` if it
has any, else every weight file (`WEIGHT_SUFFIXES`). A repo with `adapter_config.json` (a PEFT
adapter) is loaded on top of the base model it names, so that base counts too. With
`HF_HUB_OFFLINE` set, or the Hub unreachable, a model in the server's Hugging Face cache is
measured there (the files of its cached snapshot). A model that cannot be measured (no such model,
private or gated for this user, no weight files, offline and not cached) is refused with why: it
is never loaded unmeasured. Exempt: `tiny` and the registry names (the host prepared them); a
trained run is the app's own. The app checks when a job starts (`check_model_sizes` on its
command, `AppContext.start`) and when the chat loads a model in its own process; on one's own
machine (local access allowed) nothing is measured, and the CLI never is.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from rtdemo.errors import UserError
from rtdemo.hosting.quotas import LOCAL_ACCESS_ENV as ENV
from rtdemo.hosting.quotas import (
    MAX_MODEL_ENV,
    MB,
    Quotas,
    local_access_allowed,
    size_text,
)
from rtdemo.jobs.records import flag_value
from rtdemo.models import is_registry_name, resolve_model_name
from rtdemo.redaction import redact_url

OFFLINE_STUDENTS = frozenset({"tiny"})
# Files that hold a model's weights (a PyTorch load reads the *.safetensors when there are any).
WEIGHT_SUFFIXES = (
    ".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".h5", ".msgpack", ".onnx", ".ot",
)  # fmt: skip
ADAPTER_CONFIG = "adapter_config.json"  # a PEFT adapter: transformers loads the base it names
HUB_TIMEOUT_S = 10.0  # one listing request


def looks_like_path(name: str) -> bool:
    """Whether a model name is a folder on this machine rather than a Hub id ("org/name")."""
    name = name.strip()
    if name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1:
        return True
    return bool(name) and Path(name).expanduser().exists()


def _addresses(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except OSError as err:
        raise UserError(f"cannot resolve the teacher's host {host!r}: {err}") from None
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


def check_public_url(url: str, env: Mapping[str, str] | None = None) -> None:
    """Refuse, when local access is not allowed, a base URL that reaches the server's network."""
    if local_access_allowed(env):
        return
    parts = urlsplit(url.strip())
    shown = redact_url(url.strip())  # a message never repeats the URL's credentials
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"the base URL {shown!r} must look like https://host/v1")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UserError(f"the base URL {shown!r} has a bad port") from None
    private = [a for a in _addresses(parts.hostname, port) if not a.is_global or a.is_multicast]
    if private:
        raise UserError(
            f"this app does not reach its own network: {parts.hostname} is {private[0]}, not a "
            "public address. Use a public server, or run the app on your own machine "
            f"(the host may allow it with {ENV}=1)"
        )


def check_model_name(name: str, what: str, env: Mapping[str, str] | None = None) -> None:
    """Refuse, when local access is not allowed, a model given as a folder on the server."""
    if local_access_allowed(env) or name.strip() in OFFLINE_STUDENTS:
        return
    if is_registry_name(name):  # a model the host prepared (smollm2-135m), not a path
        resolve_model_name(name, shared=True)  # not prepared here: a UserError that says so
        return
    if looks_like_path(name):
        raise UserError(
            f"this app does not load models from its own disk: give the {what} as a Hugging Face "
            f"Hub id (org/name), or run the app on your own machine (the host may allow it with "
            f"{ENV}=1)"
        )


def check_command(argv: Sequence[str], env: Mapping[str, str] | None = None) -> None:
    """Refuse, when local access is not allowed, a command that a user of the app started and
    that would reach the server's network (a teacher's base URL) or disk (a model folder)."""
    if local_access_allowed(env):
        return
    url = flag_value(argv, "--base-url")
    if url is not None:
        check_public_url(url, env)
    model = flag_value(argv, "--model")
    if model is not None and flag_value(argv, "--teacher") == "hf":
        check_model_name(model, "local teacher model", env)
    student = flag_value(argv, "--student")
    if student is not None:
        check_model_name(student, "student", env)


def check_model_sizes(
    argv: Sequence[str], token: str | bool | None = None, env: Mapping[str, str] | None = None
) -> None:
    """Refuse, on a shared app, a command that a user of the app started whose student or local
    teacher (`--student`, `--teacher hf --model`) has more weights than the host allows, or
    cannot be measured (`check_model_size`; `token`: the user's, `credentials.user_token`)."""
    if local_access_allowed(env):
        return
    model = flag_value(argv, "--model")
    if model is not None and flag_value(argv, "--teacher") == "hf":
        check_model_size(model, token, "local teacher model", env)
    student = flag_value(argv, "--student")
    if student is not None:
        check_model_size(student, token, "student", env)


def check_model_size(
    name: str,
    token: str | bool | None = None,
    what: str = "model",
    env: Mapping[str, str] | None = None,
) -> None:
    """Refuse, on a shared app whose host limits model sizes (`RTDEMO_MAX_MODEL_MB`), the Hub
    model `name` when its weights are larger or cannot be measured; no weights are downloaded
    (an adapter's small `adapter_config.json` is, to find its base model).

    `token` is the user's Hub token as the loaders get it (`credentials.user_token`: a string,
    False for none; None: `credentials.hub_token()`'s). `tiny`, registry names and, where local
    access is allowed, anything else pass unmeasured (module docstring)."""
    if local_access_allowed(env):
        return
    name = name.strip()
    check_model_name(name, what, env)  # no folder of the server; a registry name prepared
    limit = Quotas.from_env(env).max_model_mb * MB
    if not limit or name in OFFLINE_STUDENTS or is_registry_name(name):
        return
    from rtdemo.hosting.credentials import hub_token  # it imports this module

    token = hub_token(token)
    try:
        size, base = model_weight_bytes(name, False if token is None else token)
    except CannotMeasure as err:
        raise UserError(
            f"cannot check the size of {name}: {err}. This app loads only models whose size it "
            f"can check, of at most {size_text(limit)} of weights ({MAX_MODEL_ENV})"
        ) from None
    if size > limit:
        on = f" (an adapter, with its base model {base})" if base else ""
        raise UserError(
            f"{name}{on} has {size_text(size)} of weights; this app loads models up to "
            f"{size_text(limit)}: choose a smaller {what}, or run the app on your own machine "
            f"(its host sets this limit with {MAX_MODEL_ENV})"
        )


class CannotMeasure(Exception):
    """Why a model's weights cannot be measured (said after "cannot check the size of X: ")."""


@dataclass(frozen=True)
class RepoFiles:
    """A model repo's files and their sizes (None: not reported), from the Hub's listing or from
    its cached snapshot `folder` on this server."""

    sizes: dict[str, int | None]
    folder: Path | None = None


def model_weight_bytes(repo_id: str, token: str | bool | None = False) -> tuple[int, str | None]:
    """The bytes of weights loading the Hub model `repo_id` reads, and the base model it names
    when it is an adapter (whose weights are counted too); `CannotMeasure` says why not."""
    files = repo_files(repo_id, token)
    size = weight_bytes(repo_id, files)
    if ADAPTER_CONFIG not in files.sizes:
        return size, None
    base = adapter_base(repo_id, files, token)
    return size + weight_bytes(base, repo_files(base, token)), base


def weight_bytes(repo_id: str, files: RepoFiles) -> int:
    """The sum of the weight files at the repo's root that a PyTorch load reads: its
    `*.safetensors` if it has any, else all of them; `CannotMeasure` when there are none or a
    size is unknown."""
    root = {
        name: size
        for name, size in files.sizes.items()
        if "/" not in name and name.lower().endswith(WEIGHT_SUFFIXES)
    }
    safetensors = {n: s for n, s in root.items() if n.lower().endswith(".safetensors")}
    weights = safetensors or root
    where = "in the server's cache" if files.folder is not None else "on the Hub"
    if not weights:
        raise CannotMeasure(f"{repo_id} lists no weight files {where}")
    unknown = sorted(n for n, s in weights.items() if s is None)
    if unknown:
        raise CannotMeasure(f"the Hub does not say how large {repo_id}'s {unknown[0]} is")
    return sum(s for s in weights.values() if s is not None)


def repo_files(repo_id: str, token: str | bool | None = False) -> RepoFiles:
    """The Hub model's files with their sizes (one listing request, `token`'s); offline or with the
    Hub unreachable, those of its snapshot in this server's Hugging Face cache."""
    import httpx2  # huggingface_hub's HTTP client: its connection errors
    from huggingface_hub import HfApi
    from huggingface_hub.errors import (
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
    )

    try:
        info = HfApi().model_info(repo_id, files_metadata=True, token=token, timeout=HUB_TIMEOUT_S)
    except (OfflineModeIsEnabled, httpx2.TransportError) as err:
        cached = cached_repo_files(repo_id)
        if cached is not None:
            return cached
        why = f"the Hub is unreachable ({type(err).__name__})"
        if isinstance(err, OfflineModeIsEnabled):
            why = "HF_HUB_OFFLINE is set"
        raise CannotMeasure(f"{why} and it is not in this server's Hugging Face cache") from None
    except RepositoryNotFoundError:  # 401, 404, gated
        from rtdemo.hosting.credentials import ANONYMOUS_HINT

        why = ANONYMOUS_HINT if token is False else " (it does not exist, or is private or gated)"
        raise CannotMeasure(f"the Hub has no model {repo_id} that this app may read{why}") from None
    except (HfHubHTTPError, ValueError) as err:  # ValueError: not a valid Hub id
        raise CannotMeasure(_first_line(err)) from None
    sizes: dict[str, int | None] = {}
    for sibling in info.siblings or []:
        sizes[sibling.rfilename] = sibling.lfs.size if sibling.lfs else sibling.size
    return RepoFiles(sizes)


def cached_repo_files(repo_id: str) -> RepoFiles | None:
    """The files of the Hub model's snapshot in this server's Hugging Face cache (the one its
    `config.json` or `adapter_config.json` was last fetched with), or None when not cached."""
    from huggingface_hub import try_to_load_from_cache

    for anchor in ("config.json", ADAPTER_CONFIG):
        try:
            found = try_to_load_from_cache(repo_id, anchor)
        except ValueError:  # not a valid Hub id
            return None
        if isinstance(found, str):
            folder = Path(found).parent
            sizes: dict[str, int | None] = {
                p.relative_to(folder).as_posix(): p.stat().st_size
                for p in folder.rglob("*")
                if p.is_file()  # follows the cache's links to its blobs
            }
            return RepoFiles(sizes, folder)
    return None


def adapter_base(repo_id: str, files: RepoFiles, token: str | bool | None = False) -> str:
    """The Hub id of the base model the adapter `repo_id` names (its `adapter_config.json`, read
    from the cache or fetched: a small file, no weights); `CannotMeasure` when it names none, or a
    folder."""
    try:
        if files.folder is not None:
            text = (files.folder / ADAPTER_CONFIG).read_text()
        else:
            from huggingface_hub import hf_hub_download

            text = Path(hf_hub_download(repo_id, ADAPTER_CONFIG, token=token)).read_text()
        base = json.loads(text).get("base_model_name_or_path")
    except Exception as err:  # any failure: unmeasured, so refused, with why
        raise CannotMeasure(f"cannot read its {ADAPTER_CONFIG}: {_first_line(err)}") from None
    if not isinstance(base, str) or not base.strip() or looks_like_path(base):
        raise CannotMeasure(
            f"it is an adapter whose {ADAPTER_CONFIG} names no Hub model as its base ({base!r})"
        )
    return base.strip()


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
