"""Whose Hugging Face Hub token a download uses: the host's token never serves the app's users.

Whoever hosts a shared app may have a Hub token where it runs (`HF_TOKEN`, or the file `hf auth
login` wrote). The app's users name models (a student, a local teacher, a chat student) that the
server then fetches; with the host's token those requests would reach the host's private and gated
models, which users could then load, train on and publish. So, when the app is shared (on Spaces,
or wherever the host refuses local access: `users_share_server_token()` is False):

- `protect_server_token()` (app.py calls it first) captures the host's token once
  (`space_owner_token()`), removes `HF_TOKEN` (and the legacy `HUGGING_FACE_HUB_TOKEN`) from the
  app process's environment and turns off huggingface_hub's implicit token lookup
  (`HF_HUB_DISABLE_IMPLICIT_TOKEN=1`, which also stops it reading the token file): a Hub request
  that names no token is anonymous, in the app and in every job it starts (that setting is on the
  jobs' environment allow-list, `rtdemo.jobs.processes.child_env`).
- A user's Hub access names its token explicitly: the signed-in user's OAuth token, else none
  (anonymous: public models only). In a handler, `hub_access(token)` scopes it for the loaders,
  which pass `hub_token()` to `from_pretrained(token=...)`; `for_user(plan, token)` plans a job in
  that scope and gives the job `HF_TOKEN=<the user's token>` (environment only, never its command
  line or the store) and `HF_HUB_DISABLE_IMPLICIT_TOKEN=1`. In a job, `hub_token()` is the
  `HF_TOKEN` it was given, if any.
- Jobs never inherit a secret (`HF_TOKEN`, `OPENAI_API_KEY`, any `*_TOKEN`/`*_KEY`/`*_SECRET`...):
  their environment is an allow-list (`child_env`) plus what each job was given.

What the host's token is still used for: nothing a user asks for. `space_owner_token()` keeps it
for the host's own code (e.g. a backup of the workspace to a repo of the host's); no Hub request
made for a user carries it.

On one person's own machine (not on Spaces, local access allowed) the user *is* the host: the app
and the CLI use `HF_TOKEN` / the token file as huggingface_hub always does, and the CLI hands its
`HF_TOKEN` to the jobs it starts explicitly (`with_own_hub_token`, `own_hub_env`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import replace
from typing import TYPE_CHECKING

from rtdemo.hosting.quotas import local_access_allowed, on_spaces

if TYPE_CHECKING:
    from rtdemo.jobs.plan import JobPlan
    from rtdemo.workspace.store import Store

TOKEN_ENV = "HF_TOKEN"
LEGACY_TOKEN_ENV = "HUGGING_FACE_HUB_TOKEN"  # huggingface_hub still reads it after HF_TOKEN
NO_IMPLICIT_ENV = "HF_HUB_DISABLE_IMPLICIT_TOKEN"

# Said after a model that could not be fetched without a token (a user who is not signed in).
ANONYMOUS_HINT = (
    " (fetched without a Hugging Face token: if it is private or gated, sign in with Hugging "
    "Face to use your own access; this app never uses its server's token for you)"
)

_UNSET = object()
_USER_TOKEN: ContextVar[object] = ContextVar("rtdemo_user_hub_token", default=_UNSET)
_CAPTURE_LOCK = threading.Lock()
_captured: list[str | None] = []  # [the host's token] once captured


def users_share_server_token(env: Mapping[str, str] | None = None) -> bool:
    """Whether the app's users may use the server's own Hub token: only on one person's own
    machine (not on Spaces, and local access allowed, `rtdemo.hosting.access`)."""
    return not on_spaces(env) and local_access_allowed(env)


def _token_at_start() -> str | None:
    from huggingface_hub import get_token

    return get_token() or None


def space_owner_token() -> str | None:
    """The Hub token the app process had when it started (`HF_TOKEN`, else the token file), or
    None. Captured once (by `protect_server_token`, else by the first call): never for a user's
    Hub request (module docstring)."""
    with _CAPTURE_LOCK:
        if not _captured:
            _captured.append(_token_at_start())
        return _captured[0]


def protect_server_token(environ: MutableMapping[str, str] | None = None) -> bool:
    """Keep the server's Hub token from serving the app's users; True if it did anything.

    Captures the token (`space_owner_token`), then, when the app is shared, removes it from the
    environment and turns off huggingface_hub's implicit token lookup in this process and in
    every job it starts. Call it before the app serves anyone."""
    environ = os.environ if environ is None else environ
    space_owner_token()
    if users_share_server_token(environ):
        return False
    from huggingface_hub import constants

    environ.pop(TOKEN_ENV, None)
    environ.pop(LEGACY_TOKEN_ENV, None)
    environ[NO_IMPLICIT_ENV] = "1"
    constants.HF_HUB_DISABLE_IMPLICIT_TOKEN = True  # read once at import: set it here too
    return True


def user_token(token: str | None) -> str | bool | None:
    """The `token=` for a Hub request on behalf of an app user whose own token is `token` (the
    signed-in user's, or None): that token; else, when the server's token is not shared, False
    (anonymous); else None (this machine's token, as huggingface_hub finds it)."""
    if token:
        return token
    return None if users_share_server_token() else False


@contextmanager
def hub_access(token: str | None) -> Iterator[None]:
    """Hub requests made by the loaders in this block are on behalf of an app user whose own
    token is `token` (`user_token`). Scoped to this thread's context: a generator run step by
    step in other threads must pass its token explicitly instead."""
    reset = _USER_TOKEN.set(user_token(token))
    try:
        yield
    finally:
        _USER_TOKEN.reset(reset)


def hub_token(token: str | bool | None = None) -> str | bool | None:
    """The `token=` for a Hub request now: `token` if given; inside `hub_access`, that user's
    (False: none); else this process's `HF_TOKEN` (a job's: the one it was given); else None,
    which leaves the choice to huggingface_hub (the token file, unless a shared app turned that
    off)."""
    if token is not None:
        return token
    scoped = _USER_TOKEN.get()
    if scoped is not _UNSET:
        return scoped  # type: ignore[return-value]
    return os.environ.get(TOKEN_ENV) or None


def user_job_env(token: str | None) -> dict[str, str]:
    """The Hub part of a user's job environment: their own token if any (on one person's own
    machine, else this machine's `HF_TOKEN`, `own_hub_env`); when the server's token is not
    shared, no implicit token lookup either (the token file on the server is the host's)."""
    shared = users_share_server_token()
    env = {TOKEN_ENV: token} if token else own_hub_env() if shared else {}
    if not shared:
        env[NO_IMPLICIT_ENV] = "1"
    return env


def for_user(plan: Callable[[Store], JobPlan], token: str | None) -> Callable[[Store], JobPlan]:
    """`plan` made in `hub_access(token)` (its checks read a model's config with the user's
    token), its job given `user_job_env(token)`. The token is optional to the job (not in its
    `env_names`): a job that waited in the queue and was started by another job has none, and
    reads public models only."""

    def planned(store: Store) -> JobPlan:
        with hub_access(token):
            made = plan(store)
        return replace(made, env={**made.env, **user_job_env(token)})

    return planned


def with_own_hub_token(plan: JobPlan) -> JobPlan:
    """`plan` with the CLI user's own `HF_TOKEN` in its job's environment (`own_hub_env`): the
    CLI is the host's own tool, never an app user's."""
    return replace(plan, env={**own_hub_env(), **plan.env})


def own_hub_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """What the CLI hands the jobs it starts on its user's behalf: its own `HF_TOKEN`, if set
    (jobs inherit no secret; the token file needs nothing, jobs keep `HOME` and `HF_HOME`)."""
    environ = os.environ if environ is None else environ
    token = environ.get(TOKEN_ENV) or environ.get(LEGACY_TOKEN_ENV)
    return {TOKEN_ENV: token} if token else {}
