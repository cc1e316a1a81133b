"""A fake OpenAI-compatible HTTP server on 127.0.0.1 for tests and benchmarks.

The openai SDK (3.x) talks through httpx2, which respx cannot intercept, so teacher code is tested
against a real server on a loopback port: the SDK's own request building, SSE parsing, error
mapping and timeouts all run for real. Standard library only (`ThreadingHTTPServer`, daemon
threads, port 0).

    with FakeOpenAIServer(api_key="sk-test", responder=coin_flip_responder) as server:
        teacher = OpenAITeacher("fake-model", base_url=server.base_url, api_key="sk-test")
        ...
        assert server.requests_total == 1
        assert server.bodies("chat")[0]["n"] == 8

What it emulates, as the real API does it:

- Endpoints: `POST /v1/chat/completions` (`messages`, `n`, `temperature`, `max_tokens` or
  `max_completion_tokens`, `stream`, `stream_options.include_usage`), `POST /v1/completions`
  (`prompt`, `n`, `max_tokens`, `stream`), `GET /v1/models`.
- Checks in a real server's order: an unknown path is 404; then the API key (401
  `invalid_api_key`, echoing a masked key), before anything else, injected faults included: a
  request with a bad key never meets a rate limit or a fault and takes no place in the fault
  schedule; then the request's own checks (model, unsupported temperature, missing
  messages/prompt, `n` out of 1-128).
- Tokens, not words. `tokenize` is a deterministic stand-in for a BPE tokenizer: the text is split
  GPT-style into words with their leading space, digit groups of up to three, punctuation runs,
  contractions and whitespace runs, and any piece longer than 7 characters is cut into 7-character
  pieces. English comes out at about 3.5-4 characters a token, close to the 4 rtdemo's estimates
  assume (`rtdemo.generation.pricing.CHARS_PER_TOKEN`) and to what OpenAI's tokenizers give. Usage
  counts these tokens: `completion_tokens` is the sum over the choices, `prompt_tokens` is the
  prompt's tokens (completions) or, for chat, each message's content plus 4 tokens per message
  (role and framing) plus 3 to prime the reply, OpenAI's documented chat overhead. A reply longer
  than `max_tokens` (or `max_completion_tokens`) tokens is cut to exactly that many tokens, with
  `finish_reason` "length".
- `n` choices with distinct texts: the responder is called once per choice, and a responder that
  takes a `choice` argument gets the choice's index (both built-in responders do, and vary their
  text by it, as sampling at a temperature would). A server that does not sample
  (`no_sampling=True`) gives every choice, and every request, choice 0's text; with `max_n=1`
  as well it behaves as `transformers serve` does on a model whose generation config does not
  sample: one choice whatever `n` says, the same text whatever `temperature` says.
- Choices out of order (`shuffle_choices=True`): a non-streamed reply lists its choices, each with
  its `index`, in a permuted order (never the identity when n > 1); a streamed reply interleaves
  its choices' chunks in a seeded random order. Without it a streamed reply with n > 1 still
  interleaves its choices round-robin, as the real API does.
- Streams (SSE): a chat stream starts each choice with a role chunk
  (`delta: {"role": "assistant", "content": ""}`), sends one token per chunk, ends each choice with
  an empty delta carrying its `finish_reason`, then a usage chunk (`choices: []`) if
  `stream_options.include_usage` is set, then `data: [DONE]`.
- Faults (`server.faults = Faults(...)`), decided per request from its index since `faults` was
  last assigned (requests refused for their key are not counted): first the explicit `schedule`,
  then the fractions, drawn from a generator seeded by `(seed, index)`, so the i-th request gets
  the same fault on every run whatever the thread timing. With `by_body=True` the fractions are
  drawn from `(seed, body, k)` for the k-th arrival of the same request body instead: each
  logical call (a client retries with the same body) meets the same faults on every run, in
  whatever order concurrent calls arrive. `Faults.transient(0.2, seed=s)` is a flaky teacher: a
  fifth of the requests fail, evenly mixed between 429 (with `Retry-After`), 500 and a dropped
  connection.
- Holding requests (`hold(after=N)`, `release()`, `wait_held(k)`): requests arriving after the
  next N wait, recorded and in flight, until released or the server stops: a test can freeze a
  client mid-run at an exact point without any clock.

What it does not emulate:

- A real tokenizer: counts are close to, not equal to, any model's (no vocabulary, no merges);
  the chat overhead is the documented 4 + 3, not any model's exact framing.
- Sampling: `temperature`, `top_p`, `seed`, penalties and `logit_bias` change nothing; the text
  comes from the responder, deterministically.
- `stop` sequences, `logprobs`, tools and function calls, `response_format`, refusals, images and
  audio, reasoning tokens (`completion_tokens_details`), `system_fingerprint`, `service_tier`.
- Validation of unknown or unsupported parameters (the real API answers 400 to an unknown one)
  and of the context length (no `context_length_exceeded`); `max_tokens` is only used to cut.
- Real rate limiting: no requests or tokens per minute, no `x-ratelimit-*` headers; 429s come
  only from injected faults.
- Errors inside a stream (an `error` event after a 200), organisations and projects, request ids,
  the Responses, Embeddings and other APIs, TLS, HTTP/2 and compression.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import random
import re
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

Fault = Literal[
    "rate_limit",  # 429 with Retry-After
    "server_error",  # 500
    "slow",  # sleep `slow_seconds`, then answer normally
    "drop",  # close the socket without a response
    "malformed_json",  # 200 with a body that is not JSON
    "no_choices",  # 200 with JSON lacking `choices`
    "truncate",  # the reply cut to `truncate_tokens` tokens, finish_reason "length"
]
FAULTS: tuple[str, ...] = Fault.__args__  # type: ignore[attr-defined]
Endpoint = Literal["chat", "completions", "models"]
#: Produces one reply text from the request body and the endpoint ("chat" or "completions");
#: one that also takes a `choice` keyword gets the choice's index (0 to n-1). Called once per
#: choice, from server threads: keep it thread-safe.
Responder = Callable[..., str]

ROUTES: dict[tuple[str, str], Endpoint] = {
    ("POST", "/v1/chat/completions"): "chat",
    ("POST", "/v1/completions"): "completions",
    ("GET", "/v1/models"): "models",
}

# -- tokens ------------------------------------------------------------------------------------

_PIECES = re.compile(
    r"'(?:s|t|re|ve|m|ll|d)\b"  # contractions
    r"| ?[^\W\d_]+"  # a word with its leading space
    r"| ?\d{1,3}"  # digits, three at most
    r"| ?(?:[^\s\w]|_)+"  # punctuation and symbols
    r"|\s+(?!\S)|\s+"  # whitespace runs
)
MAX_TOKEN_CHARS = 7
#: OpenAI's documented chat overhead: tokens per message (role, framing) and to prime the reply.
CHAT_TOKENS_PER_MESSAGE = 4
CHAT_REPLY_PRIMING = 3


def tokenize(text: str) -> list[str]:
    """`text` as tokens (see the module docstring); `"".join(tokenize(t)) == t` always."""
    tokens: list[str] = []
    for piece in _PIECES.findall(text):
        tokens += [piece[i : i + MAX_TOKEN_CHARS] for i in range(0, len(piece), MAX_TOKEN_CHARS)]
    return tokens


def count_tokens(text: str) -> int:
    """How many tokens `text` is."""
    return len(tokenize(text))


def limit_tokens(text: str, limit: int | None) -> tuple[str, bool]:
    """`text` cut to `limit` tokens and whether it was cut."""
    tokens = tokenize(text)
    if limit is None or len(tokens) <= limit:
        return text, False
    return "".join(tokens[:limit]), True


def _content_text(content: Any) -> str:
    """A message's text, whether content is a string or a list of typed parts."""
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


def prompt_tokens(request_json: dict[str, Any]) -> int:
    """The `prompt_tokens` the fake reports for a request (chat overhead included)."""
    if "messages" in request_json:
        messages = request_json.get("messages") or []
        return CHAT_REPLY_PRIMING + sum(
            CHAT_TOKENS_PER_MESSAGE + count_tokens(_content_text(m.get("content")))
            for m in messages
            if isinstance(m, dict)
        )
    prompt = request_json.get("prompt", "")
    return count_tokens("".join(prompt) if isinstance(prompt, list) else str(prompt))


def prompt_text(request_json: dict[str, Any]) -> str:
    """The text a reply continues: `prompt` (completions) or the last user message (chat)."""
    if "prompt" in request_json:
        prompt = request_json["prompt"]
        return "".join(prompt) if isinstance(prompt, list) else str(prompt)
    users = [m for m in request_json.get("messages", []) if m.get("role") == "user"]
    return _content_text(users[-1].get("content")) if users else ""


def system_text(request_json: dict[str, Any]) -> str:
    """The system (or developer) messages of a chat request, joined; "" for completions."""
    return "\n".join(
        _content_text(m.get("content"))
        for m in request_json.get("messages", [])
        if m.get("role") in ("system", "developer")
    )


# -- responders --------------------------------------------------------------------------------


def default_responder(request_json: dict[str, Any], endpoint: str, choice: int = 0) -> str:
    """Deterministic: " 42." to an answer prompt, a short word-counting rationale otherwise
    (worded differently for each choice after the first)."""
    text = prompt_text(request_json)
    if "Therefore, the answer is" in text:
        return " 42."
    again = f" Counting again (take {choice + 1}), the" if choice else " The"
    return f"{again} question has {len(text.split())} words. So the answer is 42."


_COIN_WORDINGS = (
    " The coin was flipped {flips} times. An {parity} number of flips leaves it {side} up.",
    " Count the flips: {flips}. After {flips} flips, an {parity} count, the coin is {side} up.",
    " {flips} people flip the coin. {flips} is {parity}, so it ends {side} up.",
)


def coin_flip_responder(request_json: dict[str, Any], endpoint: str, choice: int = 0) -> str:
    """A teacher that gets Coin Flip right: reasons about the flips (in one of three wordings, by
    choice index), then answers " yes."/" no."."""
    text = prompt_text(request_json)
    question = text.split("Q:", 1)[-1].split("\nA:", 1)[0]
    flips = question.count(" flips the coin.")
    heads = flips % 2 == 0
    if "Therefore, the answer is" in text:
        return " yes." if heads else " no."
    parity, side = ("even", "heads") if heads else ("odd", "tails")
    wording = _COIN_WORDINGS[choice % len(_COIN_WORDINGS)]
    return wording.format(flips=flips, parity=parity, side=side)


def _signature_takes_choice(responder: Responder) -> bool:
    try:
        params = inspect.signature(responder).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "choice" or p.kind is p.VAR_KEYWORD for p in params)


_cached_takes_choice = functools.lru_cache(maxsize=64)(_signature_takes_choice)


def _takes_choice(responder: Responder) -> bool:
    try:
        return _cached_takes_choice(responder)
    except TypeError:  # an unhashable callable
        return _signature_takes_choice(responder)


def respond(responder: Responder, body: dict[str, Any], endpoint: str, choice: int) -> str:
    """The responder's text for one choice (its index passed when it takes one)."""
    if _takes_choice(responder):
        return responder(body, endpoint, choice=choice)
    return responder(body, endpoint)


# -- faults ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Faults:
    """Which requests fail and how. Fractions are probabilities per request (sum ≤ 1)."""

    rate_limit: float = 0.0
    server_error: float = 0.0
    slow: float = 0.0
    drop: float = 0.0
    malformed_json: float = 0.0
    no_choices: float = 0.0
    truncate: float = 0.0
    #: explicit faults for requests 0, 1, 2, ... (None = answer normally); fractions apply after it
    schedule: Sequence[Fault | None] = ()
    seed: int = 0
    #: draw the fractions per (request body, its repeat count) rather than per arrival index
    by_body: bool = False
    slow_seconds: float = 2.0
    truncate_tokens: int = 3
    retry_after: str | None = "1"  # Retry-After header on 429 (seconds or an HTTP date)
    retry_after_ms: str | None = None  # retry-after-ms header on 429

    def __post_init__(self) -> None:
        fractions = [getattr(self, name) for name in FAULTS]
        if any(not 0 <= f <= 1 for f in fractions) or sum(fractions) > 1 + 1e-9:
            raise ValueError(f"fault fractions must be in [0, 1] and sum to ≤ 1: {fractions}")
        unknown = [f for f in self.schedule if f is not None and f not in FAULTS]
        if unknown:
            raise ValueError(f"unknown faults in schedule: {unknown}; known: {FAULTS}")

    @classmethod
    def transient(cls, rate: float, *, seed: int = 0, **options: Any) -> Faults:
        """`rate` of the requests fail transiently, in equal shares: 429 (with the `Retry-After`
        of `retry_after`/`retry_after_ms`), 500 and a dropped connection; `options` are other
        fields (`retry_after`, `schedule`...)."""
        third = rate / 3
        return cls(
            rate_limit=third, server_error=third, drop=rate - 2 * third, seed=seed, **options
        )

    def pick(self, index: int, body_key: str | None = None) -> Fault | None:
        """The fault for the `index`-th request (0-based) since these faults were set; with
        `by_body`, `body_key` is the request's body and how many times it came before."""
        if index < len(self.schedule):
            return self.schedule[index]
        # A generator per (seed, index) or (seed, body, repeat): the same request gets the same
        # fault on every run, however threads interleave.
        where = body_key if self.by_body and body_key is not None else index
        draw = random.Random(f"{self.seed}:{where}").random()
        total = 0.0
        for name in FAULTS:
            total += getattr(self, name)
            if draw < total:
                return name  # type: ignore[return-value]
        return None


@dataclass
class RecordedRequest:
    """One request as the server saw it, and what it did with it."""

    method: str
    path: str
    endpoint: str | None
    body: dict[str, Any] | None
    headers: dict[str, str]  # names lower-cased
    fault: Fault | None = None
    status: int | None = None  # None: no response was sent (dropped, or the client left)
    outcome: str = "pending"
    seq: int = 0  # arrival number since the server was made (never reset)
    authorized: bool = True  # False: refused for its key (401), whatever else it asked
    held: bool = False  # whether it waited for `release()`
    usage: dict[str, int] | None = None  # the usage of a reply with choices


#: An error reply: status, outcome (for counters), message, OpenAI error code, param.
Refusal = tuple[int, str, str, str | None, str | None]

# -- the handler -------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keep-alive, like real servers: the SDK reuses pooled connections.
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without TCP_NODELAY the body waits ~40 ms
        # for the client's delayed ACK on every kept-alive request (real servers set it too).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.fake._track(self.connection, opened=True)

    def finish(self) -> None:
        self.server.fake._track(self.connection, opened=False)
        super().finish()

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet test output

    def _serve(self, method: str) -> None:
        fake = self.server.fake
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        path = self.path.split("?", 1)[0]
        headers = {name.lower(): value for name, value in self.headers.items()}
        record = fake._begin(method, path, ROUTES.get((method, path)), body, headers)
        try:
            self._respond(fake, record)
        except ConnectionError:  # broken pipe, reset: the client left (e.g. timed out)
            record.outcome = "client_disconnected"
            self.close_connection = True
        finally:
            fake._end(record)

    def _send_json(
        self, record: RecordedRequest, status: int, obj: Any, outcome: str, **hdrs
    ) -> None:
        data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in hdrs.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        # Recorded before the last write: a client that has its reply sees it counted.
        record.status, record.outcome = status, outcome
        self.wfile.write(data)

    def _send_error(self, record: RecordedRequest, refusal: Refusal, **hdrs: str) -> None:
        status, outcome, message, code, param = refusal
        type_ = {429: "requests", 500: "server_error"}.get(status, "invalid_request_error")
        body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
        self._send_json(record, status, body, outcome, **hdrs)

    def _respond(self, fake: FakeOpenAIServer, record: RecordedRequest) -> None:
        fake._wait_if_held(record)
        fake._sleep(fake.latency)
        if record.endpoint is None:
            refusal = (404, "unknown_url", f"Unknown request URL: {record.path}", "unknown_url")
            return self._send_error(record, (*refusal, None))
        if not record.authorized:
            # Like OpenAI, echo a masked version of the key that was sent.
            sent = (record.headers.get("authorization") or "").removeprefix("Bearer ")
            message = f"Incorrect API key provided: {sent[:3]}***{sent[-4:]}."
            return self._send_error(record, (401, "auth", message, "invalid_api_key", None))
        faults, fault = fake.faults, record.fault
        if fault == "drop":
            record.outcome, self.close_connection = "dropped", True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault == "slow":
            fake._sleep(faults.slow_seconds)
        if fault == "rate_limit":
            hdrs = {"Retry-After": faults.retry_after, "retry-after-ms": faults.retry_after_ms}
            refusal = (429, "rate_limit", "Rate limit reached", "rate_limit_exceeded", None)
            return self._send_error(record, refusal, **{k: v for k, v in hdrs.items() if v})
        if fault == "server_error":
            return self._send_error(record, (500, "server_error", "Server error", None, None))
        refusal = fake._refusal(record)
        if refusal:
            return self._send_error(record, refusal)
        if record.endpoint == "models":
            data = [{"id": m, "object": "model", "owned_by": "fake"} for m in fake.model_ids]
            return self._send_json(record, 200, {"object": "list", "data": data}, "ok")
        self._complete(fake, record)

    def _complete(self, fake: FakeOpenAIServer, record: RecordedRequest) -> None:
        body, endpoint, fault = record.body or {}, record.endpoint or "", record.fault
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        choices = []
        for index in range(min(int(body.get("n") or 1), fake.max_n or 128)):
            choice = 0 if fake.no_sampling else index
            text, cut = limit_tokens(respond(fake.responder, body, endpoint, choice), limit)
            if fault == "truncate":
                text, cut = limit_tokens(text, fake.faults.truncate_tokens)[0], True
            choices.append((text, None if fake.null_finish_reason else "length" if cut else "stop"))
        usage = {
            "prompt_tokens": prompt_tokens(body),
            "completion_tokens": sum(count_tokens(text) for text, _ in choices),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        rng = random.Random(f"shuffle:{record.seq}")
        if body.get("stream"):
            return self._stream(fake, record, choices, usage, rng)
        if fault == "malformed_json":
            return self._send_json(record, 200, b'{"id": "broken", "choices": [', "malformed_json")
        base = fake._envelope(body, endpoint, stream=False)
        if fault == "no_choices":
            return self._send_json(record, 200, base, "no_choices")
        order = list(range(len(choices)))
        if fake.shuffle_choices and len(order) > 1:
            while order == sorted(order):
                rng.shuffle(order)
        base["choices"] = [
            fake._choice(endpoint, i, choices[i][0], choices[i][1], stream=False) for i in order
        ]
        if fake.usage:
            base["usage"] = usage
            record.usage = usage
        self._send_json(record, 200, base, "ok")

    def _stream(
        self,
        fake: FakeOpenAIServer,
        record: RecordedRequest,
        choices: list,
        usage: dict,
        rng: random.Random,
    ) -> None:
        body, endpoint = record.body or {}, record.endpoint or ""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        malformed = record.fault in ("malformed_json", "no_choices")
        record.status, record.outcome = 200, record.fault if malformed else "ok"
        self.end_headers()

        def event(payload: Any) -> None:
            line = payload if isinstance(payload, str) else json.dumps(payload)
            data = f"data: {line}\n\n".encode()
            self.wfile.write(b"%X\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        def chunk(index: int, text: str | None, finish: str | None, role: bool = False) -> dict:
            choice = fake._choice(endpoint, index, text, finish, stream=True)
            if role:
                choice["delta"] = {"role": "assistant", "content": ""}
            return {**fake._envelope(body, endpoint, stream=True), "choices": [choice]}

        # Each choice's chunks in order: its role chunk (chat), one token each, its finish.
        queues: list[list[dict]] = []
        for index, (text, finish) in enumerate(choices):
            queue = [chunk(index, None, None, role=True)] if endpoint == "chat" else []
            queue += [chunk(index, piece, None) for piece in tokenize(text)]
            queues.append([*queue, chunk(index, None, finish)])
        # Interleaved across choices: round-robin, or at random with `shuffle_choices`.
        turn = list(range(len(queues)))
        if fake.shuffle_choices:
            rng.shuffle(turn)
        while turn:
            index = rng.choice(turn) if fake.shuffle_choices else turn[0]
            payload = queues[index].pop(0)
            event(payload)
            if record.fault == "malformed_json" and not payload["choices"][0]["finish_reason"]:
                event("{broken")
            if not queues[index]:
                turn.remove(index)
            elif not fake.shuffle_choices:
                turn.append(turn.pop(0))
            fake._sleep(fake.chunk_delay)
        if record.fault == "no_choices":
            event(fake._envelope(body, endpoint, stream=True))
        if fake.usage and (body.get("stream_options") or {}).get("include_usage"):
            event({**fake._envelope(body, endpoint, stream=True), "choices": [], "usage": usage})
            record.usage = usage
        event("[DONE]")
        self.wfile.write(b"0\r\n\r\n")


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the standard library's 5 drops SYNs when many clients connect
    block_on_close = False
    fake: FakeOpenAIServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A bug in the fake must fail tests, not scroll by on stderr: keep it for `handler_errors`.
        # A client hanging up on a kept-alive connection is normal, not a bug.
        error = sys.exc_info()[1]
        if not isinstance(error, ConnectionError):
            self.fake.handler_errors.append(repr(error))


API_KEY = "sk-test"


class FakeOpenAIServer:
    """An OpenAI-compatible server on 127.0.0.1:<free port>; use as a context manager.

    `api_key` None accepts any key; `models` None accepts any model (and `/v1/models` lists
    "fake-model"). All attributes can be changed while the server runs.
    """

    def __init__(
        self,
        *,
        api_key: str | None = API_KEY,
        models: Sequence[str] | None = None,
        responder: Responder = default_responder,
        faults: Faults | None = None,
        latency: float = 0.0,
        chunk_delay: float = 0.0,
        reject_temperature: bool = False,
        null_finish_reason: bool = False,
        usage: bool = True,
        max_n: int | None = None,
        shuffle_choices: bool = False,
        no_sampling: bool = False,
    ) -> None:
        self.api_key = api_key
        self.models = list(models) if models is not None else None
        self.responder = responder
        self.latency = latency  # seconds added to every request (benchmarks)
        self.chunk_delay = chunk_delay  # seconds between streamed chunks
        self.reject_temperature = reject_temperature  # 400 like some reasoning models
        self.null_finish_reason = null_finish_reason  # finish_reason null, like some servers
        self.usage = usage  # False: replies carry no `usage`
        self.max_n = max_n  # answer at most this many choices, like servers that ignore `n`
        self.shuffle_choices = shuffle_choices  # choices out of order, streams at random
        self.no_sampling = no_sampling  # every choice is choice 0's text (greedy whatever T)
        self.handler_errors: list[str] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # held requests, in-flight counts
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._seq = 0
        self._hold_from: int | None = None
        self._held = 0
        self.faults = faults or Faults()
        self.reset_counters()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeOpenAIServer:
        """Bind a free loopback port and serve from a daemon thread."""
        self._stopping.clear()
        self._httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.fake = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close kept-alive connections, like a server going down; requests
        still sleeping (slow faults, latency) or held wake up at once."""
        self._stopping.set()
        with self._changed:
            self._changed.notify_all()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        with self._lock:
            connections, self._connections = set(self._connections), set()
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                connection.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (after `start`)."""
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        """What an OpenAI client takes as `base_url`: "http://127.0.0.1:PORT/v1"."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def model_ids(self) -> list[str]:
        """The models `/v1/models` lists."""
        return list(self.models) if self.models else ["fake-model"]

    # -- holding requests ------------------------------------------------------------------

    def hold(self, after: int = 0) -> None:
        """Hold every request that arrives after the next `after` ones until `release()` (or
        `stop()`): it is recorded and in flight, but gets no reply."""
        with self._changed:
            self._hold_from = self._seq + after

    def release(self) -> None:
        """Let held requests go on, and hold no more."""
        with self._changed:
            self._hold_from = None
            self._changed.notify_all()

    @property
    def held(self) -> int:
        """Requests waiting for `release()` right now."""
        with self._lock:
            return self._held

    def wait_held(self, count: int, timeout: float = 30.0) -> bool:
        """Wait until `count` requests are held at once; False if `timeout` seconds pass first
        (a guard against a hung test, not a measurement)."""
        with self._changed:
            return self._changed.wait_for(lambda: self._held >= count, timeout)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until no request is in flight; False if `timeout` seconds pass first."""
        with self._changed:
            return self._changed.wait_for(lambda: self._in_flight == 0, timeout)

    # -- faults and counters ---------------------------------------------------------------

    @property
    def faults(self) -> Faults:
        """The fault settings; assigning new ones restarts the schedule at request 0."""
        return self._faults

    @faults.setter
    def faults(self, value: Faults) -> None:
        with self._lock:
            self._faults, self._fault_index = value, 0
            self._body_repeats: Counter[str] = Counter()

    def reset_counters(self) -> None:
        """Forget recorded requests and counts (the fault schedule position is kept)."""
        with self._lock:
            self._records: list[RecordedRequest] = []
            self._in_flight = 0
            self._max_in_flight = 0

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received since the last reset, in arrival order."""
        with self._lock:
            return list(self._records)

    @property
    def requests_total(self) -> int:
        """How many requests arrived since the last reset (all endpoints, all outcomes)."""
        with self._lock:
            return len(self._records)

    @property
    def by_endpoint(self) -> Counter[str]:
        """Requests per endpoint: "chat", "completions", "models" (None for unknown paths)."""
        return Counter(r.endpoint for r in self.requests)  # type: ignore[misc]

    @property
    def by_outcome(self) -> Counter[str]:
        """Requests per outcome: "ok", "auth", "model_not_found", "bad_request", "rate_limit",
        "server_error", "dropped", "malformed_json", "no_choices", "client_disconnected", ...;
        a truncated or slow reply counts as "ok" (see `faults_injected`)."""
        return Counter(r.outcome for r in self.requests)

    @property
    def faults_injected(self) -> Counter[str]:
        """Requests per injected fault (requests without a fault are not counted)."""
        return Counter(r.fault for r in self.requests if r.fault)

    def bodies(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        """The JSON bodies received, optionally for one endpoint ("chat" or "completions")."""
        return [
            r.body for r in self.requests if r.body is not None and endpoint in (None, r.endpoint)
        ]

    def usage_total(self) -> dict[str, int]:
        """The usage the server reported, summed over the replies since the last reset."""
        total: Counter[str] = Counter()
        for r in self.requests:
            total.update(r.usage or {})
        return {k: total[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")}

    @property
    def in_flight(self) -> int:
        """Requests being handled right now."""
        with self._lock:
            return self._in_flight

    @property
    def max_in_flight(self) -> int:
        """The most requests handled at the same time since the last reset."""
        with self._lock:
            return self._max_in_flight

    # -- used by the handler ---------------------------------------------------------------

    def _authorized(self, authorization: str | None) -> bool:
        return self.api_key is None or authorization == f"Bearer {self.api_key}"

    def _begin(self, method: str, path: str, endpoint: str | None, body: Any, headers: dict):
        authorized = self._authorized(headers.get("authorization"))
        with self._lock:
            record = RecordedRequest(method, path, endpoint, body, headers, seq=self._seq)
            record.authorized = authorized
            self._seq += 1
            if endpoint is not None and authorized:  # refused requests meet no fault
                body_key = None
                if self._faults.by_body:
                    text = f"{endpoint}:{json.dumps(body, sort_keys=True)}"
                    body_key = f"{text}:{self._body_repeats[text]}"
                    self._body_repeats[text] += 1
                record.fault = self._faults.pick(self._fault_index, body_key)
                self._fault_index += 1
            self._records.append(record)
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        return record

    def _end(self, record: RecordedRequest) -> None:
        with self._changed:
            self._in_flight -= 1
            self._changed.notify_all()

    def _wait_if_held(self, record: RecordedRequest) -> None:
        with self._changed:
            if self._hold_from is None or record.seq < self._hold_from:
                return
            record.held = True
            self._held += 1
            self._changed.notify_all()
            self._changed.wait_for(lambda: self._hold_from is None or self._stopping.is_set())
            self._held -= 1
            self._changed.notify_all()

    def _track(self, connection: socket.socket, *, opened: bool) -> None:
        with self._lock:
            (self._connections.add if opened else self._connections.discard)(connection)

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    def _refusal(self, record: RecordedRequest) -> Refusal | None:
        """Why an authorized request is refused, checked in a real server's order, or None."""
        body, endpoint = record.body or {}, record.endpoint
        if endpoint == "models":
            return None
        model, needed, n = (
            body.get("model"),
            "messages" if endpoint == "chat" else "prompt",
            body.get("n") or 1,
        )
        if not model:
            return 400, "bad_request", "you must provide a model parameter", None, "model"
        if self.models is not None and model not in self.models:
            message = f"The model `{model}` does not exist or you do not have access to it."
            return 404, "model_not_found", message, "model_not_found", "model"
        if self.reject_temperature and "temperature" in body:
            message = "Unsupported parameter: 'temperature' is not supported with this model."
            return 400, "bad_request", message, "unsupported_parameter", "temperature"
        if not body.get(needed):
            return 400, "bad_request", f"Missing required parameter: '{needed}'.", None, needed
        if not isinstance(n, int) or not 1 <= n <= 128:
            return 400, "bad_request", f"Invalid 'n': {n!r}; expected 1 to 128.", None, "n"
        return None

    def _envelope(self, body: dict[str, Any], endpoint: str, *, stream: bool) -> dict[str, Any]:
        kind = {"chat": "chat.completion", "completions": "text_completion"}[endpoint]
        return {
            "id": "chatcmpl-fake" if endpoint == "chat" else "cmpl-fake",
            "object": f"{kind}.chunk" if stream and endpoint == "chat" else kind,
            "created": int(time.time()),
            "model": body.get("model"),
        }

    def _choice(
        self, endpoint: str, index: int, text: str | None, finish: str | None, *, stream: bool
    ) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": index, "finish_reason": finish, "logprobs": None}
        if endpoint == "completions":
            choice["text"] = text or ""
        elif stream:
            choice["delta"] = {"content": text} if text is not None else {}
        else:
            choice["message"] = {"role": "assistant", "content": text}
        return choice
