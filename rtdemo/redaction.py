"""Credentials inside URLs: shown and stored redacted, handed to a job through its environment.

A teacher's base URL may carry credentials: `http://user:secret@host/v1` (the userinfo), or a
query parameter whose name looks secret (`?api_key=...`, `token`, `sig`, `password`, ...).
`redact_url` is the URL as it may be shown, logged and stored (labels, job command lines, sample
records, votes, error messages):

    redact_url("http://user:secret@host:8000/v1?api_key=abc&api-version=2")
    == "http://***@host:8000/v1?api_key=***&api-version=2"

The host, port, path and the other query parameters stay, so the redacted URL still says which
server it is (resuming matches samples on it). A background job gets the whole URL in
`$RTDEMO_TEACHER_BASE_URL` (`URL_ENV`), never in its command line, which holds the redacted form;
`restore_url` puts the two together in the job.

Server folders: what a visitor of the app sees or downloads (job logs, command lines, previews,
exports) names the app's data folder `$RTDEMO_HOME` rather than where it is on the server
(`hide_folder`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import unquote, unquote_plus, urlsplit, urlunsplit

from rtdemo.errors import UserError

HIDDEN = "***"
#: The environment variable that carries a base URL with credentials to the job that needs it.
URL_ENV = "RTDEMO_TEACHER_BASE_URL"
_SECRET_NAME = re.compile(
    r"key|token|secret|pass|pwd|auth|sig|cred|session|code|jwt|bearer|access", re.I
)


def _secret_query(query: str) -> list[tuple[int, str]]:
    """(index, value) of the `&`-separated query items whose name looks secret."""
    found = []
    for i, item in enumerate(query.split("&")):
        name, eq, value = item.partition("=")
        if eq and value and _SECRET_NAME.search(unquote_plus(name)):
            found.append((i, value))
    return found


def _userinfo(netloc: str) -> str:
    return netloc.rpartition("@")[0]


def redact_url(url: str) -> str:
    """`url` with its credentials replaced by `***` (the same `url` when it has none)."""
    try:
        parts = urlsplit(url)
    except ValueError:  # unparseable: hide whatever precedes an "@", if any
        scheme, sep, rest = url.partition("://")
        return f"{scheme}{sep}{HIDDEN}@{rest.rpartition('@')[2]}" if "@" in rest else url
    netloc, query, fragment = parts.netloc, parts.query, parts.fragment
    secret_items = _secret_query(query)
    if not (_userinfo(netloc) or secret_items or fragment):
        return url
    if _userinfo(netloc):
        netloc = f"{HIDDEN}@{netloc.rpartition('@')[2]}"
    if secret_items:
        items = query.split("&")
        for i, _ in secret_items:
            items[i] = items[i].partition("=")[0] + "=" + HIDDEN
        query = "&".join(items)
    if fragment:  # never sent to a server, but may hold a token (#access_token=...)
        fragment = HIDDEN
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def url_secrets(url: str | None) -> list[str]:
    """The credentials in `url` (userinfo, its password, secret query values; as written and
    decoded), longest first, for scrubbing them out of a text; [] when it has none."""
    if not url:
        return []
    try:
        parts = urlsplit(url)
    except ValueError:
        rest = url.partition("://")[2]
        found = [rest.rpartition("@")[0]] if "@" in rest else []
    else:
        userinfo = _userinfo(parts.netloc)
        found = [userinfo, userinfo.partition(":")[2]]
        found += [v for _, v in _secret_query(parts.query)] + [parts.fragment]
    found += [unquote(s) for s in found]
    return sorted({s for s in found if s and s != HIDDEN}, key=len, reverse=True)


def has_hidden_parts(url: str) -> bool:
    """Whether `url` is a redacted URL: credentials replaced by `***`."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    hidden_query = any(v == HIDDEN for _, v in _secret_query(parts.query))
    return _userinfo(parts.netloc) == HIDDEN or hidden_query


def restore_url(url: str | None, env: Mapping[str, str] | None = None) -> str | None:
    """The base URL a job is to use: `url` itself, unless it is redacted; then the whole URL from
    `$RTDEMO_TEACHER_BASE_URL` (whose redacted form must be `url`), else a `UserError`."""
    if not url or not has_hidden_parts(url):
        return url
    full = (os.environ if env is None else env).get(URL_ENV, "").strip()
    if full and redact_url(full) == redact_url(url):
        return full
    raise UserError(
        f"the base URL {url} has its credentials hidden (***): the whole URL comes from "
        f"${URL_ENV}, which {'holds another URL' if full else 'is not set'}. From the app, "
        "type the base URL again and start (or resume) the generation again"
    )


def hide_folder(text: str, folder: str | Path, name: str = "$RTDEMO_HOME") -> str:
    """`text` with the server folder `folder` (as given, and resolved) written as `name`."""
    spellings = {str(folder), str(Path(folder).resolve())} - {"", ".", "/"}
    for spelling in sorted(spellings, key=len, reverse=True):
        # Only the whole folder: "/data/ws" is not hidden inside "/data/ws2".
        text = re.sub(re.escape(spelling.rstrip("/")) + r"(?![^/\s'\"`),;:\]])", name, text)
    return text
