"""`transformers serve` in a subprocess for tests: a real third-party OpenAI-compatible server.

    with serve(folder, tmp_root) as served:       # waits for GET /health, stopped on exit
        OpenAITeacher(served.model, base_url=served.base_url, api_key="anything")

The server runs offline with one torch thread (2 cores, and pytest beside it), its Hugging Face
home in `root`, and is pinned to `folder` (`transformers serve FOLDER`): it answers 400 to any
other model name, so clients send `model=str(folder)`. Its `/v1/models` fails (500) without a
Hub cache folder, so readiness is polled on `/health`. It loads the model on the first request
(SmolLM2-135M: under 2 s here); `/health` answers after about 4 s (imports). Needs
`transformers[serving]` (requirements-test.txt).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

STARTUP_TIMEOUT_S = 90.0  # imports take ~4 s here; generous for a busy CI machine


@dataclass(frozen=True)
class Served:
    """A running `transformers serve`: its base URL, the model name it is pinned to, its log and
    how long it took to answer `/health`."""

    base_url: str
    model: str
    log: Path
    startup_s: float


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def log_tail(log: Path, lines: int = 40) -> str:
    """The last lines of the server's log (for failure messages)."""
    text = log.read_text(errors="replace") if log.exists() else "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _start(folder: Path, log: Path, env: dict[str, str]) -> tuple[subprocess.Popen, int, float]:
    """Start the server and wait until `/health` answers; fail with its log if it never does."""
    cli = Path(sys.executable).with_name("transformers")
    command = (
        [str(cli)] if cli.exists() else [sys.executable, "-m", "transformers.cli.transformers"]
    )
    for _ in range(3):  # another process may take the free port before the server binds it
        port = free_port()
        args = [*command, "serve", str(folder), "--host", "127.0.0.1", "--port", str(port)]
        started = time.monotonic()
        with log.open("w") as out:
            proc = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        deadline = started + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline and proc.poll() is None:
            if _healthy(f"http://127.0.0.1:{port}/health"):
                return proc, port, time.monotonic() - started
            time.sleep(0.25)
        _stop(proc)
        if "address already in use" not in log.read_text(errors="replace").lower():
            break
    state = (
        f"exited with code {proc.returncode} before answering"
        if proc.returncode is not None
        else f"did not answer GET /health within {STARTUP_TIMEOUT_S:g} s"
    )
    pytest.fail(
        f"`transformers serve` {state}; command: {' '.join(args)}\n--- its log ---\n{log_tail(log)}"
    )


@contextlib.contextmanager
def serve(folder: Path, root: Path) -> Iterator[Served]:
    """`transformers serve folder` on a free loopback port until the block ends."""
    from transformers.utils.import_utils import is_serve_available

    if not is_serve_available():
        pytest.skip("`transformers serve` needs transformers[serving]: see requirements-test.txt")
    root.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_UPDATE_CHECK": "1",  # the CLI would ask PyPI for a newer version
        "HF_HOME": str(root / "hf-home"),  # no reads or writes in the user's cache
        "OMP_NUM_THREADS": "1",  # one torch thread: 2 cores, and pytest runs beside it
        "MKL_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    log = root / "serve.log"
    proc, port, startup = _start(folder, log, env)
    try:
        yield Served(f"http://127.0.0.1:{port}/v1", str(folder), log, startup)
    finally:
        _stop(proc)
