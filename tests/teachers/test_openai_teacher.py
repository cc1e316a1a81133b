"""OpenAITeacher against a real OpenAI-compatible HTTP server on 127.0.0.1 (tests/fakes).

Everything goes over HTTP through the real SDK: what the server received is asserted field by
field, every failure maps to its `TeacherError` kind, and each call is exactly one HTTP request
(the SDK must not retry on its own: generation does).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from email.utils import formatdate

import pytest

from rtdemo.errors import UserError
from rtdemo.teachers.base import TeacherError, answer_prompt, rationale_prompt
from rtdemo.teachers.openai_compat import ANSWER_SYSTEM_MESSAGE, OpenAITeacher, parse_retry_after
from tests.fakes.openai_server import (
    FakeOpenAIServer,
    Faults,
    coin_flip_responder,
    count_tokens,
    default_responder,
    limit_tokens,
    prompt_tokens,
    tokenize,
)

KEY = "sk-test-0123456789"
MODEL = "teacher-1"
QUESTION = (
    "A coin is heads up. Ada flips the coin. Bram does not flip the coin. Cedric flips the coin. "
    'Dagny flips the coin. Is the coin still heads up? Note that "flip" here means "reverse".'
)


@pytest.fixture
def server():
    with FakeOpenAIServer(api_key=KEY, models=[MODEL, "other-model"]) as s:
        yield s
    assert not s.handler_errors


def make_teacher(server: FakeOpenAIServer, **kwargs) -> OpenAITeacher:
    kwargs = {"model": MODEL, "base_url": server.base_url, "api_key": KEY, "timeout": 5.0} | kwargs
    return OpenAITeacher(**kwargs)


def run(teacher: OpenAITeacher, call):
    """Run `call(teacher)` in a fresh event loop, then close the teacher's connections."""

    async def main():
        try:
            return await call(teacher)
        finally:
            await teacher.aclose()

    return asyncio.run(main())


def collect(teacher: OpenAITeacher, prompt: str = "Tell me", **kwargs) -> list[str]:
    async def call(t):
        return [piece async for piece in t.stream(prompt, temperature=0.5, max_tokens=64, **kwargs)]

    return run(teacher, call)


def failure(teacher: OpenAITeacher, call) -> TeacherError:
    with pytest.raises(TeacherError) as info:
        run(teacher, call)
    return info.value


def rationale(
    n: int = 1, temperature: float = 0.7, max_tokens: int = 128, prompt: str = "Q: x\nA:"
):
    return lambda t: t.rationale(prompt, n=n, temperature=temperature, max_tokens=max_tokens)


# -- what is sent ------------------------------------------------------------------------------


def test_chat_rationale_is_one_user_message_and_one_request_for_n(server):
    prompt = rationale_prompt(QUESTION)
    completions = run(make_teacher(server), rationale(n=4, prompt=prompt))
    assert len(completions) == 4
    assert server.requests_total == 1 and server.by_endpoint == {"chat": 1}
    assert server.bodies("chat") == [
        {
            "model": MODEL,
            "messages": [{"role": "user", "content": prompt}],
            "n": 4,
            "temperature": 0.7,
            "max_tokens": 128,
        }
    ]
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"


def test_chat_answer_has_the_system_message_and_is_greedy(server):
    prompt = answer_prompt(rationale_prompt(QUESTION), " Three flips.")
    completion = run(make_teacher(server), lambda t: t.answer(prompt, max_tokens=32))
    assert completion.text == " 42." and completion.finish_reason == "stop"
    [body] = server.bodies()
    assert body == {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": ANSWER_SYSTEM_MESSAGE},
            {"role": "user", "content": prompt},
        ],
        "temperature": 0.0,
        "max_tokens": 32,
    }


def test_completions_mode_sends_the_raw_prompt(server):
    teacher = make_teacher(server, mode="completions")
    assert "raw completions" in teacher.info.label

    async def both(t):
        rationales = await t.rationale("Q: x\nA: Let's think", n=2, temperature=0.7, max_tokens=50)
        answer = await t.answer("Q: x\nA: ...\nTherefore, the answer is", max_tokens=8)
        return rationales, answer

    rationales, answer = run(teacher, both)
    assert len(rationales) == 2 and answer.text == " 42."
    assert server.by_endpoint == {"completions": 2}
    first, second = server.bodies("completions")
    assert first == {
        "model": MODEL,
        "prompt": "Q: x\nA: Let's think",
        "n": 2,
        "temperature": 0.7,
        "max_tokens": 50,
    }
    assert second == {
        "model": MODEL,
        "prompt": "Q: x\nA: ...\nTherefore, the answer is",
        "temperature": 0.0,
        "max_tokens": 8,
    }


def test_a_server_that_ignores_n_is_asked_again_for_the_rest(server):
    server.max_n = 1
    completions = run(make_teacher(server), rationale(n=3))
    assert len(completions) == 3
    assert [body.get("n", 1) for body in server.bodies()] == [3, 2, 1]


def test_max_completion_tokens_when_asked(server):
    teacher = make_teacher(server, token_field="max_completion_tokens")
    [completion] = run(teacher, rationale(max_tokens=2))
    assert (
        server.bodies()[0]["max_completion_tokens"] == 2 and "max_tokens" not in server.bodies()[0]
    )
    assert completion.finish_reason == "length"


@pytest.mark.parametrize("mode", ["chat", "completions"])
def test_a_coin_flip_teacher_answers_through_both_calls(server, mode):
    server.responder = coin_flip_responder
    prompt = rationale_prompt(QUESTION)  # three flips: tails up, "no"

    async def two_calls(t):
        [r] = await t.rationale(prompt, n=1, temperature=0.0, max_tokens=128)
        return r, await t.answer(answer_prompt(prompt, r.text), max_tokens=128)

    r, a = run(make_teacher(server, mode=mode), two_calls)
    assert "flipped 3 times" in r.text and a.text == " no."


# -- what comes back ---------------------------------------------------------------------------


def test_truncation_to_max_tokens_is_finish_length(server):
    [c] = run(make_teacher(server), rationale(max_tokens=3))
    assert c.finish_reason == "length" and count_tokens(c.text) == 3
    assert c.completion_tokens == 3
    assert c.text == "".join(tokenize(default_responder({"prompt": "Q: x"}, "chat"))[:3])


def test_usage_of_n_completions_prompt_on_the_first_completion_tokens_split(server):
    replies = iter([" one", " one two three", " one two three four five six"])
    server.responder = lambda body, endpoint: next(replies)
    completions = run(make_teacher(server), rationale(n=3, prompt="five words in this prompt"))
    assert [c.text for c in completions] == [
        " one",
        " one two three",
        " one two three four five six",
    ]
    # The prompt's 5 tokens, 4 for its message's framing, 3 to prime the reply (OpenAI's chat
    # overhead), all on the first completion.
    assert [c.prompt_tokens for c in completions] == [5 + 4 + 3, 0, 0]
    assert prompt_tokens(server.bodies()[0]) == 12
    # 10 completion tokens for the request, split evenly; the remainder goes to the first.
    assert [c.completion_tokens for c in completions] == [4, 3, 3]


def test_null_finish_reason_is_stop_and_missing_usage_is_zero(server):
    server.null_finish_reason, server.usage = True, False
    [c] = run(make_teacher(server), rationale())
    assert (c.finish_reason, c.prompt_tokens, c.completion_tokens) == ("stop", 0, 0)


@pytest.mark.parametrize("mode", ["chat", "completions"])
def test_stream_yields_the_text_in_pieces(server, mode):
    server.chunk_delay = 0.01
    pieces = collect(make_teacher(server, mode=mode), "one two three")
    assert len(pieces) > 3
    assert "".join(pieces) == server.responder({"prompt": "one two three"}, mode)
    [body] = server.bodies()
    assert body["stream"] is True and body["temperature"] == 0.5 and server.requests_total == 1


# -- failures ----------------------------------------------------------------------------------


def test_wrong_key_is_auth_and_never_shows_a_key(server):
    wrong = "sk-wrong-key-987654321"
    err = failure(make_teacher(server, api_key=wrong), rationale())
    assert err.kind == "auth" and not err.retryable
    assert "rejected the API key (401)" in str(err) and "OPENAI_API_KEY" in str(err)
    for text in (str(err), repr(err), repr(err.__cause__), repr(err.__context__)):
        assert wrong not in text and wrong[-4:] not in text and KEY not in text
    assert server.requests_total == 1


def test_the_key_is_kept_nowhere_but_in_the_client(server, monkeypatch):
    teacher = make_teacher(server)
    assert KEY not in repr(teacher) and KEY not in repr(teacher.info)
    visible = {k: v for k, v in vars(teacher).items() if k != "_client"}
    assert KEY not in repr(visible)
    asyncio.run(teacher.aclose())


def test_key_from_the_environment_or_a_clear_error(server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(UserError, match="OPENAI_API_KEY"):
        OpenAITeacher(MODEL, base_url=server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    run(OpenAITeacher(MODEL, base_url=server.base_url), rationale())
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"


def test_unknown_model_is_not_found_naming_model_and_url(server):
    err = failure(make_teacher(server, model="no-such-model"), rationale())
    assert err.kind == "not_found" and not err.retryable
    assert "'no-such-model'" in str(err) and server.base_url in str(err)
    assert "check the model name" in str(err)


def test_rejected_temperature_says_so(server):
    server.reject_temperature = True
    err = failure(make_teacher(server), rationale())
    assert err.kind == "bad_request" and not err.retryable
    assert f"model '{MODEL}' does not accept a temperature" in str(err)


@pytest.mark.parametrize(
    ("faults", "expected"),
    [
        (Faults(schedule=["rate_limit"], retry_after="7"), 7.0),
        (Faults(schedule=["rate_limit"], retry_after="7", retry_after_ms="1500"), 1.5),
        (Faults(schedule=["rate_limit"], retry_after=None), None),
    ],
)
def test_rate_limit_carries_retry_after(server, faults, expected):
    server.faults = faults
    err = failure(make_teacher(server), rationale())
    assert err.kind == "rate_limit" and err.retryable and err.retry_after == expected
    assert server.requests_total == 1


def test_retry_after_as_an_http_date():
    now = time.time()
    assert parse_retry_after(
        {"retry-after": formatdate(now + 30, usegmt=True)}, now
    ) == pytest.approx(30, abs=1)
    assert parse_retry_after({"retry-after": formatdate(now - 30, usegmt=True)}, now) == 0.0
    assert parse_retry_after({"retry-after": "soon"}) is None


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        ("server_error", "server"),
        ("drop", "connection"),
        ("malformed_json", "malformed"),
        ("no_choices", "malformed"),
    ],
)
@pytest.mark.parametrize("mode", ["chat", "completions"])
def test_fault_maps_to_kind_in_one_request(server, fault, kind, mode):
    server.faults = Faults(schedule=[fault])
    err = failure(make_teacher(server, mode=mode), rationale(n=2))
    assert err.kind == kind and err.retryable
    assert server.requests_total == 1 and server.faults_injected == {fault: 1}


@pytest.mark.parametrize(
    ("fault", "kind"), [("drop", "connection"), ("malformed_json", "malformed")]
)
def test_stream_faults_map_too(server, fault, kind):
    server.faults = Faults(schedule=[fault])
    with pytest.raises(TeacherError) as info:
        collect(make_teacher(server))
    assert info.value.kind == kind and server.requests_total == 1


def test_stream_with_a_wrong_key_is_auth(server):
    with pytest.raises(TeacherError) as info:
        collect(make_teacher(server, api_key="sk-nope-nope-nope"))
    assert info.value.kind == "auth"


def test_a_reply_that_never_comes_is_a_timeout(server):
    server.hold()  # the server keeps the request and never answers until released
    err = failure(make_teacher(server, timeout=0.3), rationale())
    assert err.kind == "timeout" and err.retryable and "0.3 s" in str(err)
    # The client gave up on its own: the request is still held at the server, unanswered.
    assert server.held == 1 and server.requests_total == 1
    assert server.requests[0].status is None
    server.release()


def test_a_closed_port_is_one_fast_connection_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}/v1"
    # A long timeout: a refused connection must be reported as one, not waited out as a timeout.
    err = failure(OpenAITeacher(MODEL, base_url=base_url, api_key=KEY, timeout=600), rationale())
    assert err.kind == "connection" and base_url in str(err)


def test_a_redirect_is_not_followed_and_says_where_it_pointed(server):
    """A server that answers 307 (to an address a base URL check never saw) gets nothing more."""
    import http.server
    import threading

    target = f"{server.base_url}/chat/completions"

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.send_response(307)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    redirector = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=redirector.serve_forever, daemon=True).start()
    try:
        base_url = f"http://127.0.0.1:{redirector.server_address[1]}/v1"
        teacher = OpenAITeacher(MODEL, base_url=base_url, api_key=KEY, timeout=5.0)
        err = failure(teacher, rationale())
    finally:
        redirector.shutdown()
        redirector.server_close()
    assert err.kind == "bad_request" and not err.retryable
    assert f"redirects (307) to {target}" in str(err) and "use the final address" in str(err)
    assert server.requests_total == 0  # the request (and its key) went no further


def test_list_models(server):
    assert run(make_teacher(server), lambda t: t.list_models()) == ["other-model", MODEL]
    err = failure(make_teacher(server, api_key="sk-bad-bad-bad"), lambda t: t.list_models())
    assert err.kind == "auth"


# -- the fake server itself --------------------------------------------------------------------


def test_fault_schedule_then_seeded_fractions_are_deterministic():
    faults = Faults(schedule=["drop", None, "slow"], rate_limit=0.3, server_error=0.2, seed=7)
    picks = [faults.pick(i) for i in range(200)]
    assert picks[:3] == ["drop", None, "slow"]
    assert picks == [Faults(**{**vars(faults)}).pick(i) for i in range(200)]
    assert picks != [Faults(rate_limit=0.3, server_error=0.2, seed=8).pick(i) for i in range(200)]
    share = picks[3:].count("rate_limit") / len(picks[3:])
    assert 0.15 < share < 0.45 and set(picks[3:]) <= {"rate_limit", "server_error", None}
    with pytest.raises(ValueError):
        Faults(rate_limit=0.8, drop=0.5)


def _post(server: FakeOpenAIServer, body: dict, key: str = KEY) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"{server.base_url}/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_counters_record_every_request_and_reset(server):
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    server.faults = Faults(schedule=[None, "rate_limit", "server_error"])
    assert [_post(server, body)[0] for _ in range(3)] == [200, 429, 500]
    status, error = _post(server, body, key="sk-other")
    assert status == 401 and error["error"]["code"] == "invalid_api_key"
    assert _post(server, {**body, "model": "nope"})[1]["error"]["code"] == "model_not_found"
    assert server.requests_total == 5 and server.by_endpoint == {"chat": 5}
    assert server.by_outcome == {
        "ok": 1,
        "rate_limit": 1,
        "server_error": 1,
        "auth": 1,
        "model_not_found": 1,
    }
    assert server.bodies()[0] == body
    server.reset_counters()
    assert server.requests_total == 0 and server.bodies() == [] and server.max_in_flight == 0


def test_max_in_flight_sees_concurrent_requests(server):
    # Every request is held until four are held at once: only a client that really sends them
    # concurrently gets them released by this thread (else the guard releases them, too late).
    server.hold()
    releaser = threading.Thread(target=lambda: (server.wait_held(4), server.release()))
    releaser.start()

    async def four(t):
        return await asyncio.gather(*(rationale()(t) for _ in range(4)))

    assert len(run(make_teacher(server), four)) == 4
    releaser.join()
    assert server.max_in_flight == 4 and all(r.held for r in server.requests)


def test_a_stopped_server_refuses_even_kept_alive_connections(server):
    async def before_and_after(t):
        await rationale()(t)
        server.stop()
        return await rationale()(t)

    err = failure(make_teacher(server), before_and_after)
    assert err.kind == "connection" and server.requests_total == 1


def test_tokens_are_lossless_and_close_to_four_characters():
    text = "Q: Ada flips the coin.\n\nA: Let's think -- 12,345.67 flips_total  reversed?"
    tokens = tokenize(text)
    assert "".join(tokens) == text and all(1 <= len(t) <= 7 for t in tokens)
    assert tokens[:6] == ["Q", ":", " Ada", " flips", " the", " coin"]
    assert limit_tokens(" a  b\nc d", 3) == (" a  b", True)
    assert limit_tokens(" a b", 5) == (" a b", False)
    # English prose at about four characters a token, as rtdemo's estimates assume.
    prompt = rationale_prompt(QUESTION)
    assert len(prompt) / 4.6 < count_tokens(prompt) < len(prompt) / 3.2


def test_a_bad_key_is_refused_before_any_fault_and_takes_none(server):
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    server.faults = Faults(schedule=["rate_limit", "drop", "server_error"])
    for _ in range(3):
        status, error = _post(server, body, key="sk-wrong-wrong-wrong")
        assert status == 401 and error["error"]["code"] == "invalid_api_key"
    assert server.faults_injected == {} and server.by_outcome == {"auth": 3}
    assert _post(server, body)[0] == 429  # the schedule starts with the first authorized request


def test_n_choices_are_distinct_and_restored_to_their_index_when_shuffled(server):
    server.shuffle_choices = True
    prompt = rationale_prompt(QUESTION)
    status, reply = _post(
        server, {"model": MODEL, "messages": [{"role": "user", "content": prompt}], "n": 5}
    )
    indexes = [c["index"] for c in reply["choices"]]
    assert status == 200 and sorted(indexes) == list(range(5)) and indexes != list(range(5))
    texts = {c["index"]: c["message"]["content"] for c in reply["choices"]}
    assert len(set(texts.values())) == 5
    body = {"messages": [{"role": "user", "content": prompt}]}
    assert texts == {i: default_responder(body, "chat", choice=i) for i in range(5)}
    # The teacher puts each choice at its index, whatever order the server lists them in.
    server.responder = coin_flip_responder
    completions = run(make_teacher(server), rationale(n=5, prompt=prompt))
    assert [c.text for c in completions] == [
        coin_flip_responder(body, "chat", choice=i) for i in range(5)
    ]


def _sse_events(server: FakeOpenAIServer, body: dict) -> list[dict]:
    request = urllib.request.Request(
        f"{server.base_url}/chat/completions",
        data=json.dumps({"model": MODEL, "stream": True, **body}).encode(),
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        lines = response.read().decode().split("\n\n")
    assert lines[-2] == "data: [DONE]"
    return [json.loads(line.removeprefix("data: ")) for line in lines[:-2]]


@pytest.mark.parametrize("shuffle", [False, True])
def test_streamed_choices_start_with_a_role_chunk_and_interleave(server, shuffle):
    server.shuffle_choices = shuffle
    messages = [{"role": "user", "content": rationale_prompt(QUESTION)}]
    events = _sse_events(
        server, {"messages": messages, "n": 3, "stream_options": {"include_usage": True}}
    )
    *chunks, last = events
    assert last["choices"] == [] and last["usage"] == server.requests[0].usage
    by_index: dict[int, list[dict]] = {}
    order = []
    for chunk in chunks:
        [choice] = chunk["choices"]
        by_index.setdefault(choice["index"], []).append(choice)
        order.append(choice["index"])
    texts = {}
    for index, choices in by_index.items():
        assert choices[0]["delta"] == {"role": "assistant", "content": ""}
        assert choices[-1]["delta"] == {} and choices[-1]["finish_reason"] == "stop"
        assert all(c["finish_reason"] is None for c in choices[:-1])
        texts[index] = "".join(c["delta"]["content"] for c in choices[1:-1])
    assert texts == {i: default_responder({"messages": messages}, "chat", i) for i in range(3)}
    grouped = sorted(order, key=order.index)  # the same indexes, each choice's chunks together
    assert order != grouped, "the choices' chunks should interleave"
    assert last["usage"]["completion_tokens"] == sum(count_tokens(t) for t in texts.values())


def test_the_sdk_reassembles_interleaved_shuffled_streams_by_index(server):
    import openai

    server.shuffle_choices = True
    client = openai.OpenAI(api_key=KEY, base_url=server.base_url, max_retries=0)
    messages = [{"role": "user", "content": rationale_prompt(QUESTION)}]
    texts: dict[int, str] = {}
    with client.chat.completions.create(model=MODEL, messages=messages, n=4, stream=True) as stream:
        for chunk in stream:
            for choice in chunk.choices:
                texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
    client.close()
    assert texts == {i: default_responder({"messages": messages}, "chat", i) for i in range(4)}


def test_reported_usage_is_close_to_what_rtdemo_estimates(server):
    """Prompt tokens near rtdemo's 4 characters a token, and below generation's worst case
    (2 characters a token + 10), call 2's system message and chat framing included."""
    from rtdemo.generation.pricing import CHARS_PER_TOKEN

    server.responder = coin_flip_responder
    prompt = rationale_prompt(QUESTION)

    async def two_calls(t):
        [r] = await t.rationale(prompt, n=1, temperature=0.7, max_tokens=128)
        return r, await t.answer(answer_prompt(prompt, r.text), max_tokens=128)

    r, a = run(make_teacher(server), two_calls)
    estimate = len(prompt) / CHARS_PER_TOKEN
    assert 0.8 * estimate < r.prompt_tokens < 1.3 * estimate
    assert r.prompt_tokens < a.prompt_tokens < len(prompt) // 2 + 10 + r.completion_tokens
    assert r.completion_tokens == count_tokens(r.text)
    assert a.completion_tokens == count_tokens(" no.") == 2
