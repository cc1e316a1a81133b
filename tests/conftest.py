"""Shared fixtures. Tests are hermetic: no network, a fresh workspace each, one torch thread.

With `CI=true` a skipped test is a failure: CI must install everything the tests need.
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


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI a skip is a failure: whatever a test needs must be installed there."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"skipped in CI (CI=true forbids skips): {reason}"
