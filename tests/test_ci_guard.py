"""The CI guard of tests/conftest.py: with `CI=true` skips and xfails fail the run.

Each case runs pytest in a subprocess on a small temporary test folder whose conftest.py is a
copy of this suite's, once with `CI=true` (the run must fail and say why) and once without (the
same tests then skip or xfail quietly, so it is the guard that fails them).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import REPO

CASES = {
    "module_importorskip": (
        'import pytest\n\npytest.importorskip("rtdemo_no_such_module")\n\n\n'
        "def test_never_collected():\n    pass\n",
        ("skipped at collection in CI (CI=true forbids skips)", "rtdemo_no_such_module"),
    ),
    "module_skip": (
        'import pytest\n\npytest.skip("not here", allow_module_level=True)\n',
        ("test_module_skip.py skipped at collection in CI (CI=true forbids skips)", "not here"),
    ),
    "xfail": (
        "import pytest\n\n\n"
        '@pytest.mark.xfail(reason="a known bug")\n'
        "def test_known_bug():\n    assert False\n",
        ("xfail in CI (CI=true forbids xfail): a known bug",),
    ),
    "imperative_xfail": (
        'import pytest\n\n\ndef test_gives_up():\n    pytest.xfail("gave up")\n',
        ("xfail in CI (CI=true forbids xfail): gave up",),
    ),
    "skip": (
        'import pytest\n\n\ndef test_skipped():\n    pytest.skip("no tool")\n',
        ("skipped in CI (CI=true forbids skips)", "no tool"),
    ),
}


def run_pytest(folder: Path, ci: bool) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", "-c", "pytest.ini", "."],
        capture_output=True,
        text=True,
        cwd=folder,
        env=env,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("case", list(CASES))
def test_ci_turns_skips_and_xfails_into_failures(tmp_path, case):
    source, messages = CASES[case]
    shutil.copy(REPO / "tests" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "pytest.ini").write_text("[pytest]\nxfail_strict = true\n")
    (tmp_path / f"test_{case}.py").write_text(source)
    (tmp_path / "test_ok.py").write_text("def test_ok():\n    pass\n")  # something to collect

    quiet = run_pytest(tmp_path, ci=False)
    assert quiet.returncode == 0, quiet.stdout + quiet.stderr  # a skip or an xfail, no failure

    guarded = run_pytest(tmp_path, ci=True)
    output = guarded.stdout + guarded.stderr
    assert guarded.returncode != 0, output
    assert all(message in output for message in messages), output


def test_xfail_is_strict():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert config["tool"]["pytest"]["ini_options"]["xfail_strict"] is True
