"""Shared fixtures. Tests are hermetic: no network, a fresh workspace each, one torch thread.

With `CI=true` a skipped test is a failure (CI must install everything the tests need), and so are
a module skipped at collection and an xfail (`xfail_strict` in pyproject.toml makes an xpass fail
everywhere); tests/test_ci_guard.py checks it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

# Before anything imports huggingface_hub/datasets: nothing may wait on a network that is not there.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# datasets' cache of local-copy loads goes to a temporary folder, not the user's cache.
os.environ.setdefault("HF_DATASETS_CACHE", tempfile.mkdtemp(prefix="rtdemo-test-datasets-"))

REPO = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


# Read once, before the per-test fixture below clears the variable.
PAPER_DATA = Path(
    os.environ.get("RTDEMO_PAPER_DATA") or REPO.parent / "shared" / "data" / "reasoning-teacher"
)


@pytest.fixture(scope="session")
def paper_data() -> Path:
    """The paper's processed files (../shared/data/reasoning-teacher or $RTDEMO_PAPER_DATA)."""
    root = PAPER_DATA
    if not (root / "split").is_dir():
        pytest.skip(f"paper data not found at {root}; set RTDEMO_PAPER_DATA")
    return root


@pytest.fixture(scope="session")
def smollm2_folder() -> Path:
    """The prepared SmolLM2-135M-Instruct folder (`rtdemo models prepare smollm2-135m`, which
    `scripts/dev test` runs). Real-model tests use it; missing, it is a failure, never a skip."""
    from rtdemo.models import prepared

    folder = prepared("smollm2-135m")
    if folder is None:
        pytest.fail(
            "the real model smollm2-135m is not prepared (or its folder is incomplete): run "
            "`.venv/bin/python -m rtdemo models prepare smollm2-135m` (scripts/dev test does)"
        )
    return folder


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    """Each test gets its own workspace and no ambient data folders."""
    monkeypatch.setenv("RTDEMO_HOME", str(tmp_path / "workspace"))
    monkeypatch.delenv("RTDEMO_PAPER_DATA", raising=False)
    monkeypatch.delenv("RTDEMO_HUB_DIR", raising=False)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module's in-process models (2 cores, and job processes beside)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def run_cli():
    """Run `python -m rtdemo ...` in a real subprocess; returns the CompletedProcess."""

    def run(
        *args: str, env: dict | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess:
        full_env = {**os.environ, **(env or {})}
        return subprocess.run(
            [sys.executable, "-m", "rtdemo", *map(str, args)],
            capture_output=True,
            text=True,
            env=full_env,
            cwd=REPO,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    return run


def _reason(longrepr) -> str:
    return str(longrepr[2] if isinstance(longrepr, tuple) else longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI a skip or an xfail is a failure: whatever a test needs must be installed there,
    and a known failure is a failure."""
    outcome = yield
    report = outcome.get_result()
    if not IN_CI:
        return
    if hasattr(report, "wasxfail"):  # xfailed (reported as skipped) or a non-strict xpass
        reason = report.wasxfail or "no reason given"
        del report.wasxfail
        report.outcome = "failed"
        report.longrepr = f"xfail in CI (CI=true forbids xfail): {reason}"
    elif report.skipped:
        report.outcome = "failed"
        report.longrepr = f"skipped in CI (CI=true forbids skips): {_reason(report.longrepr)}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """In CI a module skipped while it is collected (a module-level `pytest.importorskip` or
    `pytest.skip(allow_module_level=True)`) is a collection error, not a quiet skip."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped:
        report.outcome = "failed"
        report.longrepr = (
            f"{collector.nodeid} skipped at collection in CI (CI=true forbids skips): "
            f"{_reason(report.longrepr)}"
        )
