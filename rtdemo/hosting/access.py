"""What the app's users may reach on the server itself: its network and its disk.

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
prepared it (`rtdemo models prepare smollm2-135m`); otherwise it is refused with that command.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from rtdemo.errors import UserError
from rtdemo.hosting.quotas import on_spaces
from rtdemo.jobs.records import flag_value
from rtdemo.models import is_registry_name, resolve_model_name
from rtdemo.redaction import redact_url

ENV = "RTDEMO_ALLOW_LOCAL_ACCESS"
OFFLINE_STUDENTS = frozenset({"tiny"})


def local_access_allowed(env: Mapping[str, str] | None = None) -> bool:
    """Whether users may reach the server's own network and disk (module docstring)."""
    env = os.environ if env is None else env
    raw = env.get(ENV, "").strip().lower()
    if not raw:
        return not on_spaces(env)
    if raw in ("1", "true", "yes"):
        return True
    if raw in ("0", "false", "no"):
        return False
    raise UserError(f"{ENV}={raw!r}: use 1 (allowed) or 0 (refused)")


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
        resolve_model_name(name)  # not prepared here: a UserError that says so
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
