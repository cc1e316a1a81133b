"""Who a job counts for when visitors share the machine's one torch slot: its fairness key.

Queued torch jobs take turns by key, round-robin (`rtdemo.jobs.runner`), and an anonymous client's
jobs together are capped (`check_client_jobs`). A Hugging Face user who is logged in
(`hf:<name>`) is their own key. An anonymous visitor's owner id costs nothing to replace (a new
session gets a fresh one), so it is not their key: the *client* is, the address their requests
come from, and every id that one client mints shares its one key, its turns and its cap. The CLI,
and a call with no request behind it, key a job by its owner.

The client's address:

- by default, the peer of the connection (`gr.Request.client.host`): the one address a client
  cannot forge. Headers such as `X-Forwarded-For` are ignored: a client sends what it likes.
- behind proxies the host trusts (`RTDEMO_TRUSTED_PROXIES=N`), the Nth address from the right of
  `X-Forwarded-For`: each proxy appends the address it got the request from, so the rightmost N
  entries are written by those proxies, and whatever is left of them may be a client's
  invention. On Hugging Face Spaces (`SYSTEM=spaces`) the app sits behind the Space's proxy, the
  peer is that proxy's internal address (the same for every visitor), and the proxy appends the
  visitor's address: the default there is 1. A request with fewer entries than that did not come
  through the proxies as expected: it is keyed by its peer (all such requests share one key, so
  they gain no turns).

An IPv6 client is keyed by its /64 network (one machine easily holds many addresses of it). A key
is `client-` and a salted hash of the address, never the address itself (not in the store, not on
a page); the salt is made when the app starts, so keys change with a restart (jobs queued before
keep theirs, and count as another key).

    RTDEMO_TRUSTED_PROXIES   proxies in front of the app that append to X-Forwarded-For
                             (default: 1 on Spaces, else 0: only the connection's peer counts)
    RTDEMO_MAX_CLIENT_JOBS   jobs the anonymous visitors of one client (every owner id it has)
                             may have queued or running together (`check_client_jobs`; default
                             4 on Spaces, so two visitors behind one address can each train both
                             formats; elsewhere 0 = no limit). Beside it, each owner has
                             `RTDEMO_MAX_RUNNING_JOBS` (`rtdemo.hosting.quotas`).

The app's handlers that start jobs run inside `serving(request)`; `AppContext.start` reads the
client with `current_client()`.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from rtdemo.envvars import env_number
from rtdemo.errors import UserError
from rtdemo.hosting.quotas import on_spaces, owner_is_visitor

PROXIES_ENV = "RTDEMO_TRUSTED_PROXIES"
CLIENT_JOBS_ENV = "RTDEMO_MAX_CLIENT_JOBS"
SPACES_CLIENT_JOBS = 4
CLIENT_PREFIX = "client-"
_SALT = secrets.token_bytes(32)
_CLIENT: ContextVar[str | None] = ContextVar("rtdemo_client", default=None)


def _count(env: Mapping[str, str], name: str, default: int, meaning: str) -> int:
    return int(env_number(env, name, default, integer=True, meaning=meaning))


def trusted_proxies(env: Mapping[str, str] | None = None) -> int:
    """How many proxies in front of the app append to X-Forwarded-For (module docstring)."""
    env = os.environ if env is None else env
    meaning = "the proxies in front of the app that append to X-Forwarded-For; 0: none"
    return _count(env, PROXIES_ENV, 1 if on_spaces(env) else 0, meaning)


def max_client_jobs(env: Mapping[str, str] | None = None) -> int:
    """How many jobs one client's anonymous visitors may have queued or running; 0: no limit."""
    env = os.environ if env is None else env
    default = SPACES_CLIENT_JOBS if on_spaces(env) else 0
    return _count(env, CLIENT_JOBS_ENV, default, "0 means no limit")


def check_client_jobs(running: int, env: Mapping[str, str] | None = None) -> None:
    """Refuse a new job of an anonymous visitor whose client (every owner id it has) already has
    `running` jobs queued or running."""
    cap = max_client_jobs(env)
    if cap and running >= cap:
        raise UserError(
            f"visitors from your address already have {running} job(s) queued or running (this "
            f"app allows {cap} per address to visitors who are not logged in, however many pages "
            "or sessions they use): wait for one to finish or cancel one, log in with Hugging "
            "Face, or run the app on your own machine"
        )


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return str(value)
    return ""


def client_address(
    peer: str | None, headers: Mapping[str, str], env: Mapping[str, str] | None = None
) -> str | None:
    """The address a request came from, as far as the host's proxies vouch for it (module
    docstring); None when there is none (no peer and no usable header)."""
    hops = trusted_proxies(env)
    if hops:
        forwarded = [a.strip() for a in _header(headers, "x-forwarded-for").split(",")]
        forwarded = [a for a in forwarded if a]
        if len(forwarded) >= hops:
            return forwarded[-hops]
    return peer or None


def _network(address: str) -> str:
    """The part of `address` that names a client: an IPv4 address, an IPv6 /64 network."""
    try:
        ip = ipaddress.ip_address(address.strip().strip("[]").split("%", 1)[0])
    except ValueError:
        return address.strip().lower()  # not an IP (a test client's name): taken as it is
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def client_key(address: str) -> str:
    """The fairness key of a client address: `client-` and a salted hash, never the address."""
    digest = hmac.new(_SALT, _network(address).encode(), hashlib.sha256).hexdigest()
    return f"{CLIENT_PREFIX}{digest[:20]}"


def fair_key(owner: str, client: str | None) -> str:
    """Who a job of `owner` counts for: a logged-in user themself; an anonymous visitor their
    client's key (`client`, from `current_client`), else (no request behind it) the owner."""
    if client is None or not owner_is_visitor(owner):
        return owner
    return client


def request_client(request: Any, env: Mapping[str, str] | None = None) -> str | None:
    """The client key of a Gradio request (`gr.Request`: its `client.host` and `headers`), or
    None for no request (a handler called directly)."""
    if request is None:
        return None
    peer = getattr(getattr(request, "client", None), "host", None)
    headers = dict(getattr(request, "headers", None) or {})
    address = client_address(peer, headers, env)
    return client_key(address) if address else None


@contextmanager
def serving(request: Any) -> Iterator[str | None]:
    """Within it, the jobs this thread starts count for `request`'s client (`current_client`);
    yields the client's key."""
    token = _CLIENT.set(request_client(request))
    try:
        yield _CLIENT.get()
    finally:
        _CLIENT.reset(token)


def current_client() -> str | None:
    """The key of the client whose request this thread is serving (`serving`), else None."""
    return _CLIENT.get()
