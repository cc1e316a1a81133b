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

Endpoints: `POST /v1/chat/completions` (`n`, `temperature`, `max_tokens` or
`max_completion_tokens`, `stream`), `POST /v1/completions` (`prompt`, `n`, `stream`),
`GET /v1/models`. Tokens are words: usage counts words, and a reply longer than the token limit is
cut to that many words with `finish_reason` "length".

Faults (`server.faults = Faults(...)`) are decided per request from its index since `faults` was
last assigned: first the explicit `schedule`, then the fractions, drawn from a generator seeded by
`(seed, index)`, so the i-th request gets the same fault on every run whatever the thread timing.
"""

from __future__ import annotations

import contextlib
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
    "truncate",  # the reply cut to `truncate_words` words, finish_reason "length"
]
FAULTS: tuple[str, ...] = Fault.__args__  # type: ignore[attr-defined]
Endpoint = Literal["chat", "completions", "models"]
#: Produces one reply text from the request body and the endpoint ("chat" or "completions").
#: Called once per choice (n times for `n`), from server threads: keep it thread-safe.
Responder = Callable[[dict[str, Any], str], str]

ROUTES: dict[tuple[str, str], Endpoint] = {
    ("POST", "/v1/chat/completions"): "chat",
    ("POST", "/v1/completions"): "completions",
    ("GET", "/v1/models"): "models",
}


def _content_text(content: Any) -> str:
    """A message's text, whether content is a string or a list of typed parts."""
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


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


def default_responder(request_json: dict[str, Any], endpoint: str) -> str:
    """Deterministic: " 42." to an answer prompt, a short word-counting rationale otherwise."""
    text = prompt_text(request_json)
    if "Therefore, the answer is" in text:
        return " 42."
    return f" The question has {len(text.split())} words. So the answer is 42."


def coin_flip_responder(request_json: dict[str, Any], endpoint: str) -> str:
    """A teacher that gets Coin Flip right: reasons about the flips, then answers " yes."/" no."."""
    text = prompt_text(request_json)
    question = text.split("Q:", 1)[-1].split("\nA:", 1)[0]
    flips = question.count(" flips the coin.")
    heads = flips % 2 == 0
    if "Therefore, the answer is" in text:
        return " yes." if heads else " no."
    parity, side = ("even", "heads") if heads else ("odd", "tails")
    return f" The coin was flipped {flips} times. An {parity} number of flips leaves it {side} up."


def limit_words(text: str, limit: int | None) -> tuple[str, bool]:
    """`text` cut to `limit` words (spacing kept) and whether it was cut."""
    pieces = re.findall(r"\s*\S+", text)
    if limit is None or len(pieces) <= limit:
        return text, False
    return "".join(pieces[:limit]), True


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
    slow_seconds: float = 2.0
    truncate_words: int = 3
    retry_after: str | None = "1"  # Retry-After header on 429 (seconds or an HTTP date)
    retry_after_ms: str | None = None  # retry-after-ms header on 429

    def __post_init__(self) -> None:
        fractions = [getattr(self, name) for name in FAULTS]
        if any(not 0 <= f <= 1 for f in fractions) or sum(fractions) > 1 + 1e-9:
            raise ValueError(f"fault fractions must be in [0, 1] and sum to ≤ 1: {fractions}")
        unknown = [f for f in self.schedule if f is not None and f not in FAULTS]
        if unknown:
            raise ValueError(f"unknown faults in schedule: {unknown}; known: {FAULTS}")

    def pick(self, index: int) -> Fault | None:
        """The fault for the `index`-th request (0-based) since these faults were set."""
        if index < len(self.schedule):
            return self.schedule[index]
        # A generator per (seed, index): the same request index gets the same fault on every
        # run, however threads interleave.
        draw = random.Random(f"{self.seed}:{index}").random()
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


#: An error reply: status, outcome (for counters), message, OpenAI error code, param.
Refusal = tuple[int, str, str, str | None, str | None]


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
        faults, fault = fake.faults, record.fault
        if fault == "drop":
            record.outcome, self.close_connection = "dropped", True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        fake._sleep(fake.latency + (faults.slow_seconds if fault == "slow" else 0.0))
        if fault == "rate_limit":
            hdrs = {"Retry-After": faults.retry_after, "retry-after-ms": faults.retry_after_ms}
            refusal = (429, "rate_limit", "Rate limit reached", "rate_limit_exceeded", None)
            return self._send_error(record, refusal, **{k: v for k, v in hdrs.items() if v})
        if fault == "server_error":
            return self._send_error(record, (500, "server_error", "Server error", None, None))
        refusal = fake._refusal(record, self.headers.get("Authorization"))
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
        for _ in range(min(int(body.get("n") or 1), fake.max_n or 128)):
            text, cut = limit_words(fake.responder(body, endpoint), limit)
            if fault == "truncate":
                text, cut = limit_words(text, fake.faults.truncate_words)[0], True
            choices.append((text, None if fake.null_finish_reason else "length" if cut else "stop"))
        usage = {
            "prompt_tokens": len((prompt_text(body) + " " + system_text(body)).split()),
            "completion_tokens": sum(len(text.split()) for text, _ in choices),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if body.get("stream"):
            return self._stream(fake, record, choices, usage)
        if fault == "malformed_json":
            return self._send_json(record, 200, b'{"id": "broken", "choices": [', "malformed_json")
        base = fake._envelope(body, endpoint, stream=False)
        if fault == "no_choices":
            return self._send_json(record, 200, base, "no_choices")
        base["choices"] = [
            fake._choice(endpoint, i, t, f, stream=False) for i, (t, f) in enumerate(choices)
        ]
        if fake.usage:
            base["usage"] = usage
        self._send_json(record, 200, base, "ok")

    def _stream(
        self, fake: FakeOpenAIServer, record: RecordedRequest, choices: list, usage: dict
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

        def chunk(index: int, text: str | None, finish: str | None) -> dict:
            return {
                **fake._envelope(body, endpoint, stream=True),
                "choices": [fake._choice(endpoint, index, text, finish, stream=True)],
            }

        for index, (text, finish) in enumerate(choices):
            for piece in re.findall(r"\s*\S+\s*$|\s*\S+", text):
                event(chunk(index, piece, None))
                if record.fault == "malformed_json":
                    event("{broken")
                fake._sleep(fake.chunk_delay)
            event(chunk(index, None, finish))
        if record.fault == "no_choices":
            event(fake._envelope(body, endpoint, stream=True))
        if fake.usage and (body.get("stream_options") or {}).get("include_usage"):
            event({**fake._envelope(body, endpoint, stream=True), "choices": [], "usage": usage})
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
    ) -> None:
        self.api_key = api_key
        self.models = list(models) if models is not None else None
        self.responder = responder
        self.latency = latency  # seconds added to every request (benchmarks)
        self.chunk_delay = chunk_delay  # seconds between streamed pieces
        self.reject_temperature = reject_temperature  # 400 like some reasoning models
        self.null_finish_reason = null_finish_reason  # finish_reason null, like some servers
        self.usage = usage  # False: replies carry no `usage`
        self.max_n = max_n  # answer at most this many choices, like servers that ignore `n`
        self.handler_errors: list[str] = []
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
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
        still sleeping (slow faults, latency) wake up at once."""
        self._stopping.set()
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

    # -- faults and counters ---------------------------------------------------------------

    @property
    def faults(self) -> Faults:
        """The fault settings; assigning new ones restarts the schedule at request 0."""
        return self._faults

    @faults.setter
    def faults(self, value: Faults) -> None:
        with self._lock:
            self._faults, self._fault_index = value, 0

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

    def _begin(self, method: str, path: str, endpoint: str | None, body: Any, headers: dict):
        with self._lock:
            fault = self._faults.pick(self._fault_index)
            self._fault_index += 1
            record = RecordedRequest(method, path, endpoint, body, headers, fault)
            self._records.append(record)
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        return record

    def _end(self, record: RecordedRequest) -> None:
        with self._lock:
            self._in_flight -= 1

    def _track(self, connection: socket.socket, *, opened: bool) -> None:
        with self._lock:
            (self._connections.add if opened else self._connections.discard)(connection)

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    def _refusal(self, record: RecordedRequest, authorization: str | None) -> Refusal | None:
        """Why a request is refused, checked in a real server's order, or None."""
        body, endpoint = record.body or {}, record.endpoint
        if endpoint is None:
            return 404, "unknown_url", f"Unknown request URL: {record.path}", "unknown_url", None
        if self.api_key is not None and authorization != f"Bearer {self.api_key}":
            # Like OpenAI, echo a masked version of the key that was sent.
            sent = (authorization or "").removeprefix("Bearer ")
            message = f"Incorrect API key provided: {sent[:3]}***{sent[-4:]}."
            return 401, "auth", message, "invalid_api_key", None
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
