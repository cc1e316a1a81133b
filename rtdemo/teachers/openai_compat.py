"""A teacher behind any OpenAI-compatible API: OpenAI itself, vLLM, llama.cpp, `transformers serve`.

Two ways to run the paper's two Zero-shot-CoT calls (METHOD.md, "The three steps", item 1):

- `mode="chat"` (default; most current APIs are chat-only): call 1 sends one user message with the
  rationale prompt; call 2 sends a system message asking to continue the text with the final answer
  only, and one user message with the whole answer prompt. Call 2 is greedy (temperature 0).
- `mode="completions"`: `/v1/completions` with the raw prompt, the paper's way, for servers that
  still offer it.

`rationale(n=D)` makes one request with the OpenAI `n` parameter. Retries belong to generation,
which knows the budget, the cancel and the retry deadline (`rtdemo.teachers.base.RetryPolicy`):
the SDK is built with `max_retries=0`, so one call is one HTTP request, and every failure comes
back at once as a `TeacherError` with a `kind` (and a 429's `Retry-After` as `retry_after`).

The API key lives only in the SDK client, in memory: not in `info`, `repr()` or error messages;
so do credentials in the base URL (`info.base_url` is redacted: `rtdemo.redaction`).

    teacher = OpenAITeacher("gpt-4o-mini")                     # key from OPENAI_API_KEY
    teacher = OpenAITeacher("qwen", base_url="http://127.0.0.1:8000/v1", api_key="none")
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator, Mapping
from email.utils import parsedate_to_datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx2
import openai

from rtdemo.errors import UserError
from rtdemo.redaction import redact_url, url_secrets
from rtdemo.teachers.base import Completion, Teacher, TeacherError, TeacherInfo

OPENAI_BASE_URL = "https://api.openai.com/v1"
#: Call 2's system message in chat mode: the user message is the answer prompt to continue.
ANSWER_SYSTEM_MESSAGE = "Continue the text with the final answer only, without explanation."

# What a failed call can raise: SDK errors, unreadable JSON, and (Attribute/TypeError) a reply
# whose JSON has the wrong shape, which the SDK's lenient parsing lets through.
_FAILURES = (openai.OpenAIError, json.JSONDecodeError, AttributeError, TypeError)

Mode = Literal["chat", "completions"]
TokenField = Literal["auto", "max_tokens", "max_completion_tokens"]


class OpenAITeacher(Teacher):
    """A teacher served over the OpenAI API (chat emulation or raw completions)."""

    supports_n = True

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        mode: Mode = "chat",
        timeout: float = 60.0,
        http_client: httpx2.AsyncClient | None = None,
        token_field: TokenField = "auto",
    ) -> None:
        """Build the client (no network). `base_url` None is OpenAI; `api_key` None reads
        OPENAI_API_KEY. `token_field` names the length limit in chat requests: "auto" sends
        `max_completion_tokens` to OpenAI (its reasoning models reject `max_tokens`) and
        `max_tokens` elsewhere (what most compatible servers understand)."""
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key:
            raise UserError(
                "no API key for the OpenAI-compatible teacher: set OPENAI_API_KEY or type the key "
                "(a local server without authentication accepts any non-empty value)"
            )
        if mode not in ("chat", "completions"):
            raise UserError(f"teacher mode must be 'chat' or 'completions', not {mode!r}")
        url = (base_url or OPENAI_BASE_URL).rstrip("/")
        # Credentials in the URL stay in the client: `info` (labels, sample records, messages)
        # has the redacted URL, and `_redact` scrubs them from what a server echoes.
        shown = redact_url(url)
        self._url_secrets = url_secrets(url)
        host = urlsplit(shown).netloc.rpartition("@")[2]
        label = f"{model} (OpenAI)" if host == "api.openai.com" else f"{model} @ {host or shown}"
        self.info = TeacherInfo(
            kind="openai",
            model=model,
            base_url=shown,
            label=label + (", raw completions" if mode == "completions" else ""),
        )
        self.mode: Mode = mode
        self.timeout = timeout
        if token_field == "auto":
            token_field = "max_completion_tokens" if host == "api.openai.com" else "max_tokens"
        self.token_field = token_field
        if http_client is None:
            # Redirects are not followed: a server must not send the request (and the key) on to
            # an address the base URL check never saw (rtdemo.hosting.access).
            http_client = openai.DefaultAsyncHttpxClient(follow_redirects=False)
        self._client = openai.AsyncOpenAI(
            api_key=key, base_url=url, max_retries=0, timeout=timeout, http_client=http_client
        )

    def __repr__(self) -> str:
        info = self.info
        return (
            f"OpenAITeacher(model={info.model!r}, base_url={info.base_url!r}, mode={self.mode!r})"
        )

    # -- the Teacher interface ------------------------------------------------------------------

    async def rationale(
        self, prompt: str, *, n: int, temperature: float, max_tokens: int
    ) -> list[Completion]:
        """Call 1: `n` rationales in one request (more only if a server returns fewer than `n`)."""
        completions: list[Completion] = []
        # Some servers ignore `n` and answer once: ask again for the rest rather than return
        # fewer diverse samples than requested.
        while len(completions) < n:
            completions += await self._create(
                prompt, n=n - len(completions), temperature=temperature, max_tokens=max_tokens
            )
        return completions[:n]

    async def answer(self, prompt: str, *, max_tokens: int) -> Completion:
        """Call 2: the greedy answer text (chat mode: under the answer-only system message)."""
        payload: str | list[dict[str, str]] = prompt
        if self.mode == "chat":
            payload = [{"role": "system", "content": ANSWER_SYSTEM_MESSAGE}, *_user(prompt)]
        [completion] = await self._create(payload, n=1, temperature=0.0, max_tokens=max_tokens)
        return completion

    async def stream(
        self, prompt: str, *, temperature: float, max_tokens: int
    ) -> AsyncIterator[str]:
        """A continuation of `prompt` as text pieces, as the server streams them (SSE)."""
        # Errors are raised outside the `except` blocks: no chained SDK exception (whose text may
        # hold the server's echo of a key) travels with the TeacherError.
        failure: TeacherError | None = None
        try:
            stream = await self._send(
                prompt, n=1, temperature=temperature, max_tokens=max_tokens, stream=True
            )
            async with stream:
                async for chunk in stream:
                    for choice in getattr(chunk, "choices", None) or []:
                        delta = getattr(choice, "delta", None)
                        piece = delta.content if delta is not None else getattr(choice, "text", "")
                        if piece:
                            yield piece
        except _FAILURES as err:
            failure = self._error(err)
        if failure is not None:
            raise failure

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._client.close()

    async def list_models(self) -> list[str]:
        """The model ids the server offers (`GET /v1/models`), sorted."""
        try:
            return sorted([model.id async for model in self._client.models.list()])
        except _FAILURES as err:
            failure = self._error(err)
        raise failure

    # -- requests -------------------------------------------------------------------------------

    async def _send(
        self,
        payload: str | list[dict[str, str]],
        *,
        n: int,
        temperature: float,
        max_tokens: int,
        stream: bool = False,
    ) -> Any:
        """One request. `payload`: a prompt (sent as one user message in chat mode) or, in chat
        mode, the messages themselves."""
        params: dict[str, Any] = {"model": self.info.model, "temperature": temperature}
        if n != 1:  # leave the default out: some compatible servers reject `n` altogether
            params["n"] = n
        if stream:
            params["stream"] = True
        if self.mode == "chat":
            params[self.token_field] = max_tokens
            messages = _user(payload) if isinstance(payload, str) else payload
            return await self._client.chat.completions.create(messages=messages, **params)
        return await self._client.completions.create(
            prompt=payload, max_tokens=max_tokens, **params
        )

    async def _create(
        self, payload: str | list[dict[str, str]], *, n: int, temperature: float, max_tokens: int
    ) -> list[Completion]:
        try:
            response = await self._send(
                payload, n=n, temperature=temperature, max_tokens=max_tokens
            )
            return self._completions(response)
        except _FAILURES as err:
            failure = self._error(err)
        raise failure

    def _completions(self, response: Any) -> list[Completion]:
        """The reply's choices as Completions, with the request's usage spread over them.

        Usage is reported per request. The prompt was read once, so its tokens go to the first
        completion only; the completion tokens are split evenly, the remainder going to the first
        ones, so that the sums over completions equal the request's usage.
        """
        choices = getattr(response, "choices", None)
        if not isinstance(choices, list) or not choices:
            raise TeacherError(
                "malformed",
                f"the teacher server at {self.info.base_url} sent a reply without choices",
            )
        usage = getattr(response, "usage", None)
        prompt_tokens = getattr(usage, "prompt_tokens", None) or 0
        share, extra = divmod(getattr(usage, "completion_tokens", None) or 0, len(choices))
        completions = []
        for i, choice in enumerate(sorted(choices, key=lambda c: getattr(c, "index", 0) or 0)):
            message = getattr(choice, "message", None)
            text = message.content if message is not None else getattr(choice, "text", None)
            if text is None and message is None:
                raise TeacherError("malformed", f"a choice from {self.info.base_url} has no text")
            completions.append(
                Completion(
                    text=text or "",
                    # Some servers leave finish_reason null on a normal end.
                    finish_reason=getattr(choice, "finish_reason", None) or "stop",
                    prompt_tokens=prompt_tokens if i == 0 else 0,
                    completion_tokens=share + (1 if i < extra else 0),
                )
            )
        return completions

    # -- errors ---------------------------------------------------------------------------------

    def _error(self, err: Exception) -> TeacherError:
        """Map an SDK failure to a TeacherError whose message says what to do."""
        model, url = self.info.model, self.info.base_url
        detail = self._redact(_server_message(err))
        if isinstance(err, openai.APITimeoutError):
            return TeacherError(
                "timeout", f"the teacher server at {url} did not answer within {self.timeout:g} s"
            )
        if isinstance(err, openai.APIConnectionError):
            cause = err.__cause__
            reason = f": {type(cause).__name__}: {self._redact(str(cause))}" if cause else ""
            return TeacherError(
                "connection", f"the connection to the teacher server at {url} failed{reason}"
            )
        if isinstance(err, openai.AuthenticationError | openai.PermissionDeniedError):
            return TeacherError(
                "auth",
                f"the teacher server rejected the API key ({err.status_code}): "
                "check OPENAI_API_KEY / the key you typed",
            )
        if isinstance(err, openai.NotFoundError):
            where = (
                ", and that the server offers /v1/completions" if self.mode == "completions" else ""
            )
            return TeacherError(
                "not_found",
                f"model {model!r} was not found at {url} (404): check the model name (and that the "
                f"base URL ends in /v1{where}){_said(detail)}",
            )
        if isinstance(err, openai.BadRequestError | openai.UnprocessableEntityError):
            if "temperature" in detail.lower() or getattr(err, "param", None) == "temperature":
                return TeacherError(
                    "bad_request",
                    f"model {model!r} does not accept a temperature; Fine-tune-CoT needs one "
                    "(greedy answers, sampled diverse rationales): choose a model that accepts it "
                    f"(many reasoning models do not){_said(detail)}",
                )
            return TeacherError(
                "bad_request",
                f"the teacher server rejected the request for {model!r} "
                f"({err.status_code}){_said(detail)}",
            )
        if isinstance(err, openai.RateLimitError):
            return TeacherError(
                "rate_limit",
                f"the teacher server at {url} is rate-limiting requests (429){_said(detail)}",
                retry_after=parse_retry_after(err.response.headers),
            )
        if isinstance(err, openai.APIStatusError) and 300 <= err.status_code < 400:
            where = self._redact(err.response.headers.get("location", "elsewhere"))
            return TeacherError(
                "bad_request",
                f"the teacher server at {url} redirects ({err.status_code}) to {where}: "
                "redirects are not followed, use the final address as the base URL",
            )
        if isinstance(err, openai.APIStatusError):
            status = err.status_code
            kind = "timeout" if status == 408 else "server" if status >= 500 else "bad_request"
            return TeacherError(
                kind, f"the teacher server at {url} failed ({err.status_code}){_said(detail)}"
            )
        if isinstance(
            err,
            openai.APIResponseValidationError | json.JSONDecodeError | AttributeError | TypeError,
        ):
            return TeacherError(
                "malformed", f"the teacher server at {url} sent an unreadable reply"
            )
        # A plain APIError: the server reported an error in the middle of a stream.
        return TeacherError("server", f"the teacher server at {url} failed{_said(detail)}")

    def _redact(self, text: str) -> str:
        """`text` without the API key or the URL's credentials, should a server or library
        ever echo them."""
        for secret in [self._client.api_key, *self._url_secrets]:
            text = text.replace(secret, "***") if secret else text
        return text


def _user(prompt: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}]


def _server_message(err: Exception) -> str:
    """The server's own error message if it sent one, else the exception text."""
    body = getattr(err, "body", None)
    if isinstance(body, Mapping) and isinstance(body.get("message"), str):
        return body["message"]
    return str(getattr(err, "message", None) or err)


def _said(detail: str) -> str:
    return f"; the server said: {detail}" if detail else ""


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms` or `Retry-After` (seconds or an HTTP date)."""
    try:
        if headers.get("retry-after-ms") is not None:
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
    except ValueError:
        pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))
