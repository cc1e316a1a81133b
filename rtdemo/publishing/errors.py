"""What went wrong with a push, in one line that says what to do (`hub_error`).

huggingface_hub already retries the upload calls (preupload, commit) on 5xx and dropped
connections with a backoff; what reaches here has failed for good: a wrong token (401), no rights
(403), a server that keeps failing, a connection that cannot be made, offline mode.
"""

from __future__ import annotations

from rtdemo.errors import UserError

AGAIN = "try again later: files that already arrived are not uploaded twice"


def _server_text(err: Exception) -> str:
    text = (getattr(err, "server_message", None) or "").strip()
    return f": {text.splitlines()[0][:200]}" if text else ""


def _http(status: int, reason: str, server: str, endpoint: str, doing: str) -> str:
    if status == 401:
        return (
            f"{doing}: {endpoint} refused the token (401 Unauthorized{server}): it is wrong, "
            f"expired or not allowed to write. Make a token with write access at "
            f"{endpoint}/settings/tokens and set HF_TOKEN (on Spaces, sign in again)"
        )
    if status == 403:
        return (
            f"{doing}: the token may not write there (403 Forbidden{server}): use your own user "
            "name or an organisation you can write to as OWNER, and a token with write access"
        )
    if status == 404:
        return f"{doing}: {endpoint} answered 404 Not Found{server}: is it a Hugging Face Hub?"
    if status == 429:
        return f"{doing}: {endpoint} is rate limiting (429{server}): wait, then {AGAIN}"
    if status >= 500:
        return f"{doing}: the Hub at {endpoint} failed ({status} {reason}{server}): {AGAIN}"
    return f"{doing}: {endpoint} answered {status} {reason}{server}"


def hub_message(err: Exception, endpoint: str, doing: str) -> str:
    """The one-line message for `err`, raised while `doing` (e.g. "publishing you/x")."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if isinstance(err, OfflineModeIsEnabled):
        return (
            f"{doing}: HF_HUB_OFFLINE is set, which forbids every request to the Hub: unset it "
            "(or set HF_HUB_OFFLINE=0) to publish"
        )
    if isinstance(err, HfHubHTTPError) and err.response is not None:
        response = err.response
        return _http(
            response.status_code, response.reason_phrase, _server_text(err), endpoint, doing
        )
    if isinstance(err, (httpx2.TransportError, ConnectionError, TimeoutError)):
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return (
            f"{doing}: lost the connection to {endpoint} ({detail}): check the address and the "
            f"network, then {AGAIN}"
        )
    if isinstance(err, ValueError) and "metadata" in str(err).lower():
        first = " ".join(str(err).split())
        return f"{doing}: the Hub refused the card's metadata ({first})"
    return f"{doing}: {type(err).__name__}: {err}"


def hub_error(err: Exception, endpoint: str, doing: str, token: str | None = None) -> UserError:
    """`hub_message` as a `UserError`, with the token (should any message echo it) masked."""
    message = hub_message(err, endpoint, doing)
    if token:
        message = message.replace(token, "***")
    return UserError(message)
