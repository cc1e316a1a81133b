"""Generation throughput against a teacher with a fixed latency: does concurrency pay off?

Run from the repository root (results also go to benchmarks/README.md by hand):

    .venv/bin/python benchmarks/generation_throughput.py
    .venv/bin/python benchmarks/generation_throughput.py --latency 0.05 --questions 60 \
        --concurrency 8 --repeats 3 --json /tmp/generation_throughput.json

The teacher is the fake OpenAI-compatible server of the tests (tests/fakes/openai_server.py) on
127.0.0.1, answering Coin Flip correctly after sleeping `--latency` seconds per request; the client
is the real one (`OpenAITeacher` over HTTP, `run_generation`, the SQLite store). Each question
takes D=1 sample, so two requests (rationale, then answer). Every measurement starts from a fresh
temporary workspace. Three figures:

1. sequential baseline: concurrency 1 (requests/s);
2. the default concurrency (`GenerationSettings().concurrency` unless `--concurrency`): requests/s,
   its ratio to the baseline, and its share of the bound the concurrency limit sets
   (concurrency / latency requests/s; target ≥ 80 %);
3. the default run again on the same workspace: requests made (target 0: everything is stored).

Each configuration is measured `--repeats` times and the median is reported. No torch is involved:
the figures depend on Python, the event loop, HTTP on loopback and SQLite, not on torch threads.

Where the time goes, reported beside the figures: CPU per request of the client's event-loop
thread (the OpenAI SDK, httpx2, generation, SQLite) and of the fake server's threads (same process,
same GIL), and the cost of one sample commit to SQLite measured on its own. `--tcp-nodelay` is a
diagnostic: it sets TCP_NODELAY on the fake server's sockets (which otherwise send a response's
headers and body in two writes, so Nagle's algorithm holds the body until the client's delayed ACK,
~40 ms, on every kept-alive request; real servers such as uvicorn set it). `--listen-backlog N`
is another: the fake's listening socket keeps the standard library's backlog of 5, so when more
connections than that open at once the extra SYNs are dropped and those clients retry after ~1 s.
"""

from __future__ import annotations

import argparse
import json
import math
import socket
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere: rtdemo and tests importable
    sys.path.insert(0, str(REPO))

from benchmarks.machine import machine_info  # noqa: E402
from rtdemo.errors import UserError  # noqa: E402
from rtdemo.generation.run import GenerationSettings, RunStats, run_generation  # noqa: E402
from rtdemo.generation.samples import (  # noqa: E402
    SampleKey,
    SampleSlot,
    save_answer,
    save_rationale,
)
from rtdemo.tasks.registry import TASKS  # noqa: E402
from rtdemo.tasks.synthetic import SyntheticSettings, generate  # noqa: E402
from rtdemo.tasks.types import Example  # noqa: E402
from rtdemo.teachers.base import Completion, TeacherInfo  # noqa: E402
from rtdemo.teachers.openai_compat import OpenAITeacher  # noqa: E402
from rtdemo.workspace.store import Store  # noqa: E402
from tests.fakes.openai_server import (  # noqa: E402
    FakeOpenAIServer,
    _Handler,
    coin_flip_responder,
)

MODEL = "fake-model"
KEY = "sk-bench"
TARGET_SHARE_OF_BOUND = 0.8


class _NoDelayHandler(_Handler):
    """The fake server's handler with TCP_NODELAY (`--tcp-nodelay`; see the module docstring)."""

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def run_once(
    workspace: Path,
    server: FakeOpenAIServer,
    questions: list[Example],
    concurrency: int,
) -> dict[str, Any]:
    """One generation run of `questions` into `workspace`; its wall time and request counts."""
    settings = GenerationSettings(samples=1, concurrency=concurrency)
    with Store(workspace) as store:
        try:
            experiment = store.get_experiment("bench")
        except UserError:  # the first run on this workspace
            experiment = store.create_experiment("bench", "coin_flip")
            store.add_questions(experiment.id, questions)
        teacher = OpenAITeacher(MODEL, base_url=server.base_url, api_key=KEY, timeout=30.0)
        server.reset_counters()
        # run_generation runs its event loop in this thread: this thread's CPU is the client's,
        # the rest of the process's is the fake server's threads.
        thread_cpu, process_cpu = time.thread_time(), time.process_time()
        start = time.perf_counter()
        stats: RunStats = run_generation(
            store, experiment, teacher, settings, questions, TASKS["coin_flip"].answer, None
        )
        elapsed = time.perf_counter() - start
        client_cpu = time.thread_time() - thread_cpu
        other_cpu = time.process_time() - process_cpu - client_cpu
    requests = server.requests_total
    if stats.failed or stats.done != len(questions):
        raise RuntimeError(f"the run did not finish cleanly: {stats.progress()}")
    return {
        "seconds": elapsed,
        "requests": requests,
        "client_requests": stats.requests,
        "max_in_flight": server.max_in_flight,
        "requests_per_s": requests / elapsed if requests else 0.0,
        "client_cpu_ms_per_request": client_cpu * 1000 / requests if requests else 0.0,
        "server_cpu_ms_per_request": other_cpu * 1000 / requests if requests else 0.0,
    }


def measure(
    server: FakeOpenAIServer, questions: list[Example], concurrency: int, repeats: int
) -> dict[str, Any]:
    """`repeats` runs, each in a fresh workspace; the median requests/s and every run."""
    runs = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="rtdemo-bench-") as tmp:
            runs.append(run_once(Path(tmp) / "ws", server, questions, concurrency))
    return {
        "concurrency": concurrency,
        "requests": runs[0]["requests"],
        "requests_per_s": statistics.median(r["requests_per_s"] for r in runs),
        "seconds": statistics.median(r["seconds"] for r in runs),
        "max_in_flight": max(r["max_in_flight"] for r in runs),
        "client_cpu_ms_per_request": statistics.median(
            r["client_cpu_ms_per_request"] for r in runs
        ),
        "server_cpu_ms_per_request": statistics.median(
            r["server_cpu_ms_per_request"] for r in runs
        ),
        "runs": runs,
    }


def rerun_requests(server: FakeOpenAIServer, questions: list[Example], concurrency: int) -> int:
    """Requests made by a second identical run on the workspace of a finished first one."""
    with tempfile.TemporaryDirectory(prefix="rtdemo-bench-") as tmp:
        workspace = Path(tmp) / "ws"
        run_once(workspace, server, questions, concurrency)
        return run_once(workspace, server, questions, concurrency)["requests"]


def store_commit_ms(questions: list[Example]) -> float:
    """Milliseconds per sample commit (call 1's and call 2's, averaged), on a fresh workspace:
    what generation's commit-per-call costs its event loop, without any HTTP."""
    key = SampleKey.of(TeacherInfo("openai", MODEL, "http://127.0.0.1/v1"), 0.0, 128)
    reply = Completion(" The coin was flipped 2 times. An even number of flips.", "stop", 60, 12)
    with tempfile.TemporaryDirectory(prefix="rtdemo-bench-") as tmp, Store(Path(tmp)) as store:
        experiment = store.create_experiment("commits", "coin_flip")
        store.add_questions(experiment.id, questions)
        start = time.perf_counter()
        for q in questions:
            slot = SampleSlot.of(experiment.id, q, key, 0)
            sid = save_rationale(store, slot, q.question, reply, 0, {})
            save_answer(store, sid, q.question, Completion(" yes.", "stop", 70, 2), "yes", True, 0)
        return (time.perf_counter() - start) * 1000 / (2 * len(questions))


def benchmark(
    latency: float,
    n_questions: int,
    concurrency: int,
    repeats: int,
    tcp_nodelay: bool = False,
    listen_backlog: int | None = None,
) -> dict[str, Any]:
    """Run the three measurements and return every figure (see the module docstring)."""
    questions = generate("coin_flip", SyntheticSettings(size=n_questions))
    with FakeOpenAIServer(
        api_key=KEY, models=[MODEL], responder=coin_flip_responder, latency=latency
    ) as server:
        if tcp_nodelay:  # the fake has no option for it: swap its handler class (diagnostic)
            server._httpd.RequestHandlerClass = _NoDelayHandler  # type: ignore[union-attr]
        if listen_backlog:  # listen() again on the bound socket sets a new backlog (diagnostic)
            server._httpd.socket.listen(listen_backlog)  # type: ignore[union-attr]
        sequential = measure(server, questions, 1, repeats)
        default = measure(server, questions, concurrency, repeats)
        rerun = rerun_requests(server, questions, concurrency)
        handler_errors = list(server.handler_errors)
    commit_ms = store_commit_ms(questions)
    bound = concurrency / latency
    # Each question's two calls run one after the other, and a worker takes whole questions:
    # ceil(N / concurrency) rounds of two latencies at best (the last round may be part-empty).
    schedule_seconds = math.ceil(n_questions / concurrency) * 2 * latency
    return {
        "benchmark": "generation_throughput",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info("n/a (no torch in this benchmark)", with_torch=False),
        "parameters": {
            "latency_s": latency,
            "questions": n_questions,
            "samples_per_question": 1,
            "requests_per_question": 2,
            "concurrency": concurrency,
            "repeats": repeats,
            "fake_server_tcp_nodelay": tcp_nodelay,
            "fake_server_listen_backlog": listen_backlog or "standard library default (5)",
        },
        "sequential": sequential,
        "default": default,
        "speedup_vs_sequential": default["requests_per_s"] / sequential["requests_per_s"],
        "bound_requests_per_s": bound,
        "share_of_bound": default["requests_per_s"] / bound,
        "target_share_of_bound": TARGET_SHARE_OF_BOUND,
        "meets_target": default["requests_per_s"] / bound >= TARGET_SHARE_OF_BOUND,
        "schedule_bound_requests_per_s": default["requests"] / schedule_seconds,
        "rerun_requests": rerun,
        "store_commit_ms": commit_ms,
        "server_handler_errors": handler_errors,
    }


def format_table(result: dict[str, Any]) -> str:
    """The figures as a small text table."""
    p, seq, dft = result["parameters"], result["sequential"], result["default"]
    verdict = "met" if result["meets_target"] else "NOT met"
    rows = [
        ("sequential (concurrency 1)", f"{seq['requests_per_s']:.1f} req/s", "baseline"),
        (
            f"default (concurrency {p['concurrency']})",
            f"{dft['requests_per_s']:.1f} req/s",
            f"{result['speedup_vs_sequential']:.2f}× sequential",
        ),
        (
            "bound (concurrency / latency)",
            f"{result['bound_requests_per_s']:.1f} req/s",
            f"default reaches {result['share_of_bound']:.0%} (target ≥ "
            f"{result['target_share_of_bound']:.0%}: {verdict})",
        ),
        (
            "bound of the schedule",
            f"{result['schedule_bound_requests_per_s']:.1f} req/s",
            "2 calls in a row per question, whole questions per worker",
        ),
        ("re-run on the same workspace", f"{result['rerun_requests']} requests", "target 0"),
        (
            "client CPU per request",
            f"{dft['client_cpu_ms_per_request']:.2f} ms",
            f"event-loop thread, default run (sequential: "
            f"{seq['client_cpu_ms_per_request']:.2f} ms)",
        ),
        (
            "fake server CPU per request",
            f"{dft['server_cpu_ms_per_request']:.2f} ms",
            "its threads, same process and GIL as the client",
        ),
        (
            "SQLite commit per call",
            f"{result['store_commit_ms']:.2f} ms",
            "save_rationale / save_answer alone, no HTTP",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    m = result["machine"]
    head = [
        f"generation throughput — {result['date']}",
        f"{m['cpu']}, {m['cores']} cores, Python {m['python']}, {m['platform']}",
        f"{p['questions']} coin-flip questions × D=1 ({p['questions'] * 2} requests), "
        f"latency {p['latency_s']:g} s/request, median of {p['repeats']} run(s)"
        + (", fake server with TCP_NODELAY (diagnostic)" if p["fake_server_tcp_nodelay"] else "")
        + (
            f", fake server listen backlog {p['fake_server_listen_backlog']} (diagnostic)"
            if isinstance(p["fake_server_listen_backlog"], int)
            else ""
        ),
        "",
    ]
    body = [f"{name:<{width}}  {value:>14}  {note}" for name, value, note in rows]
    return "\n".join(head + body)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse the flags, run the benchmark, print the table, write JSON if asked; return figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per request")
    parser.add_argument("--questions", type=int, default=60, help="coin-flip questions (D=1)")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=GenerationSettings().concurrency,
        help="the concurrency compared with 1 (default: the generation default)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per configuration")
    parser.add_argument(
        "--tcp-nodelay",
        action="store_true",
        help="diagnostic: TCP_NODELAY on the fake server's sockets (see the module docstring)",
    )
    parser.add_argument(
        "--listen-backlog",
        type=int,
        help="diagnostic: the fake server's listen backlog (default: the standard library's 5)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.latency <= 0 or args.questions < 1 or args.repeats < 1:
        parser.error("latency must be > 0, questions and repeats ≥ 1")
    result = benchmark(
        args.latency,
        args.questions,
        args.concurrency,
        args.repeats,
        args.tcp_nodelay,
        args.listen_backlog,
    )
    print(format_table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
