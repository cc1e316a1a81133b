"""The workspace's Hub backup and its restore at start (`rtdemo.workspace.backup`), against the
fake Hub (tests/fakes/hub_server.py): the real huggingface_hub client pushes (xet uploads, NDJSON
commits with deletions) and downloads (`snapshot_download`).

The round trip builds a workspace with an experiment, teacher samples, review decisions, a
trained and evaluated tiny LoRA student, a chat vote, a finished job, an upload and the owner key;
backs it up through the `CommitScheduler`; wipes it; restores it into the same folder (a Space
restarting); and compares every table row and every backed-up file.

    .venv/bin/python -m pytest tests/workspace/test_backup.py
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
import signal
import sqlite3
import urllib.request
from pathlib import Path

import pytest

from rtdemo.errors import UserError
from rtdemo.jobs.files import read_progress
from rtdemo.jobs.runner import cancel_job, get_job, resume_job, start_job
from rtdemo.workspace import backup as backup_module
from rtdemo.workspace.backup import (
    DB_NAME,
    MANIFEST,
    QUEUED_ERROR,
    RUNNING_ERROR,
    BackupScheduler,
    BackupSettings,
    WorkspaceBackup,
    hub_api,
    restore,
    restore_if_empty,
    select_files,
    start_backup,
)
from rtdemo.workspace.store import SCHEMA_VERSION, Store
from tests.fakes.hub_server import OTHER_TOKEN, OTHER_USER, TOKEN, USER, FakeHubServer
from tests.helpers import kill_job_processes, wait_for

REPO_ID = f"{USER}/rtdemo-backup"
LONG = 10_000  # steps of a job that must still run when the test acts on it
WRONG_TOKEN = "hf_" + "wrongTokenForTheFakeHub0123456789"


@pytest.fixture
def hub(tmp_path: Path, monkeypatch):
    """A fake Hub this process may reach (tests/conftest.py sets HF_HUB_OFFLINE=1)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with FakeHubServer(tmp_path / "hub") as server:
        yield server
    assert server.handler_errors == []


@pytest.fixture
def settings(hub: FakeHubServer) -> BackupSettings:
    return BackupSettings(REPO_ID, endpoint=hub.url)


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch):
    """The Space's data folder; job processes left running are killed at the end."""
    monkeypatch.setenv("RTDEMO_JOB_HEARTBEAT_S", "0.2")
    path = tmp_path / "space-data"
    path.mkdir()
    yield path
    kill_job_processes(path)


def tables(workspace: Path) -> dict[str, list[tuple]]:
    """Every row of every table of the workspace's store, in a stable order."""
    conn = sqlite3.connect(str(workspace / DB_NAME))
    try:
        names = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            )
        ]
        found = {name: sorted(conn.execute(f"SELECT * FROM {name}").fetchall()) for name in names}
        found["user_version"] = conn.execute("PRAGMA user_version").fetchall()
        return found
    finally:
        conn.close()


def digests(workspace: Path, settings: BackupSettings) -> dict[str, str]:
    """sha256 of every file a backup of `workspace` includes (its store aside)."""
    return {
        rel: hashlib.sha256(path.read_bytes()).hexdigest()
        for rel, path in select_files(workspace, settings).files.items()
    }


def wipe(workspace: Path) -> None:
    """What a Space restart does to its disk."""
    shutil.rmtree(workspace)
    workspace.mkdir()


def sleeper(steps: int, seconds: float) -> list[str]:
    return ["jobs", "_sleep", "--steps", str(steps), "--seconds", str(seconds)]


def build_everything(workspace: Path) -> dict[str, str]:
    """An experiment with samples, reviews, a trained and evaluated tiny LoRA student, a chat
    vote, a finished job, an upload, the owner key and a checkpoint; what the test needs."""
    from rtdemo.chat.votes import save_vote
    from rtdemo.ui.session import owner_key, sign_owner
    from tests.publishing.test_hub_push import build_workspace

    build_workspace(workspace, runs=(("lora", "cot", "lora"),))
    with Store(workspace) as store:
        exp = store.get_experiment("letters")
        exchange = {
            "question": "Take the last letters of 'ab cd'.",
            "gold": "bd",
            "teacher": {"who": "builtin", "answer": "bd", "correct": True},
            "student": {"who": "lora", "answer": "bc", "correct": False},
            "settings": {"temperature": 0},
        }
        save_vote(store, exp, "local", exchange, "left")
        job = start_job(store, "generate", sleeper(2, 0.01), experiment_id=exp.id)
        wait_for(lambda: get_job(store, job.id).status == "done", what="the job to finish")
        run_dir = store.read("SELECT output_dir FROM student_runs WHERE name = 'lora'")[0][0]
    upload = workspace / "uploads" / "anon-0123456789abcdef" / "questions file.jsonl"
    upload.parent.mkdir(parents=True)
    upload.write_text('{"question": "q", "answer": "a"}\n')
    checkpoint = workspace / run_dir / "checkpoint-3"  # what a cancelled run keeps
    checkpoint.mkdir()
    (checkpoint / "model.safetensors").write_bytes(b"\0" * 1000)
    signed = sign_owner("anon-0123456789abcdef", owner_key(workspace))
    return {"run_dir": run_dir, "signed": signed}


# The round trip ------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_round_trip_through_the_hub_loses_no_experiment_sample_review_run_or_vote(
    workspace, hub, settings, caplog
):
    from rtdemo.evaluation.evaluate import evaluate
    from rtdemo.tasks import get_task
    from rtdemo.ui.session import owner_key, resolve_owner
    from tests.publishing.test_hub_push import MAX_TOTAL, TASK

    made = build_everything(workspace)
    before, files = tables(workspace), digests(workspace, settings)
    for table in ("experiments", "questions", "samples", "reviews", "student_runs"):
        assert before[table], f"the workspace has no {table}"
    for table in ("evaluations", "chat_votes", "jobs"):
        assert before[table], f"the workspace has no {table}"
    assert f"{made['run_dir']}/final/adapter_model.safetensors" in files
    assert f"{made['run_dir']}/base/model.safetensors" in files
    assert ".owner-key" in files and any(f.startswith("uploads/") for f in files)

    scheduler = BackupScheduler(workspace, settings, TOKEN)
    try:
        scheduler.trigger().result()  # after the push the scheduler made as it started
    finally:
        scheduler.stop()
    assert scheduler.last_error is None
    repo = hub.repo("dataset", REPO_ID)
    assert repo.private and repo.creator == USER
    # The store went as a snapshot, never the live database or its WAL; no checkpoint.
    assert DB_NAME in repo.files and MANIFEST in repo.files
    assert not [p for p in repo.files if p.endswith(("-wal", "-shm", "-journal"))]
    assert not [p for p in repo.files if "checkpoint-" in p]
    assert set(repo.files) == set(files) | {DB_NAME, MANIFEST}
    assert all(TOKEN.encode() not in data for data in repo.files.values())
    manifest = json.loads(repo.files[MANIFEST])
    assert manifest["schema"] == SCHEMA_VERSION
    assert manifest["left_out"] == [
        {"path": f"{made['run_dir']}/checkpoint-3", "bytes": 1000, "why": "checkpoint"}
    ]

    wipe(workspace)
    restored = restore_if_empty(workspace, settings, TOKEN)
    assert restored is not None and restored.commit == repo.sha
    assert restored.jobs_stopped == [] and restored.moved_from is None

    assert tables(workspace) == before
    assert digests(workspace, settings) == files
    assert not (workspace / made["run_dir"] / "checkpoint-3").exists()
    assert not (workspace / ".rtdemo-restore").exists()
    assert (workspace / ".owner-key").stat().st_mode & 0o777 == 0o600
    # A visitor's browser still proves the same id: their experiments stay theirs.
    assert resolve_owner(made["signed"], key=owner_key(workspace)) == "anon-0123456789abcdef"
    # The restored student (its LoRA base: the restored base/ folder) scores as it did.
    with Store(workspace) as store:
        exp = store.get_experiment("letters")
        test_q = store.questions(exp.id, "test")
        (metrics,) = [json.loads(row[0]) for row in store.read("SELECT metrics FROM evaluations")]
    final = workspace / made["run_dir"] / "final"
    again = evaluate(final, test_q, get_task(TASK).answer, "cot", max_total_length=MAX_TOTAL)
    assert again.metrics.to_dict() == metrics
    assert TOKEN not in caplog.text


@pytest.mark.slow
def test_a_job_running_at_backup_time_shows_failed_after_the_restart_and_resumes(
    workspace, hub, settings
):
    with Store(workspace) as store:
        running = start_job(store, "train", sleeper(LONG, 0.05))
        queued = start_job(store, "train", sleeper(3, 0.05))  # waits for the torch slot
        assert get_job(store, queued.id).status == "queued"
        wait_for(lambda: len(read_progress(running)) >= 3, what="progress")
        WorkspaceBackup(workspace, settings, hub_api(settings, TOKEN)).push()
    progress_file = hub.repo("dataset", REPO_ID).files[f"runs/{running.id}-train/progress.jsonl"]
    steps_backed_up = len(progress_file.splitlines())
    assert json.loads(progress_file.splitlines()[-1])["done"] == steps_backed_up >= 3

    os.killpg(running.pid, signal.SIGKILL)  # the machine goes away with its processes
    kill_job_processes(workspace)
    wipe(workspace)
    restored = restore(workspace, settings, TOKEN)
    assert restored is not None and restored.jobs_stopped == [running.id, queued.id]

    with Store(workspace) as store:
        failed = get_job(store, running.id)
        assert (failed.status, failed.error, failed.pid) == ("failed", RUNNING_ERROR, None)
        never = get_job(store, queued.id)
        assert (never.status, never.error, never.pid) == ("failed", QUEUED_ERROR, None)
        resumed = resume_job(store, running.id)
        assert resumed.status == "running" and resumed.pid is not None
        wait_for(
            lambda: len(read_progress(resumed)) >= steps_backed_up + 3, what="progress after resume"
        )
        done = [record["done"] for record in read_progress(resumed)]
        # It continued from the last step the backup had, not from the start.
        assert done[: steps_backed_up + 3] == list(range(1, steps_backed_up + 4))
        cancel_job(store, running.id, wait=True)
        # The job that never started runs too once resumed.
        resume_job(store, queued.id)
        wait_for(lambda: get_job(store, queued.id).status == "done", what="the queued job")


# What is (not) backed up, and when nothing is pushed -----------------------------------------


def test_the_policy_leaves_out_the_live_store_checkpoints_and_oversized_models(tmp_path):
    workspace = tmp_path / "ws"
    with Store(workspace):
        pass
    run = workspace / "runs" / "students" / "1-letters" / "cot"
    for folder, size in (("final", 3000), ("base", 500), ("checkpoint-7", 100)):
        (run / folder).mkdir(parents=True)
        (run / folder / "model.safetensors").write_bytes(b"\1" * size)
        (run / folder / "config.json").write_text("{}")
    (run / "train_result.json").write_text("{}")
    (workspace / "runs" / "4-train").mkdir(parents=True)
    (workspace / "runs" / "4-train" / "log.txt").write_text("log\n")
    (workspace / ".rtdemo-restore").mkdir()
    (workspace / ".rtdemo-restore" / "half.bin").write_bytes(b"x")
    (workspace / f"{DB_NAME}-journal").write_bytes(b"x")
    small = BackupSettings("a/b", max_model_bytes=1000)
    chosen = select_files(workspace, small)
    prefix = "runs/students/1-letters/cot"
    assert sorted(chosen.files) == [
        "runs/4-train/log.txt",
        f"{prefix}/base/config.json",
        f"{prefix}/base/model.safetensors",
        f"{prefix}/train_result.json",
    ]
    assert {(item["path"], item["why"]) for item in chosen.left_out} == {
        (f"{prefix}/checkpoint-7", "checkpoint"),
        (f"{prefix}/final", "model folder over RTDEMO_BACKUP_MAX_MODEL_MB"),
    }
    everything = select_files(workspace, BackupSettings("a/b", checkpoints=True))
    assert f"{prefix}/checkpoint-7/model.safetensors" in everything.files
    assert f"{prefix}/final/model.safetensors" in everything.files
    assert everything.left_out == []


def test_settings_come_from_the_environment_and_a_bad_value_names_its_variable():
    assert BackupSettings.from_env({}) is None
    got = BackupSettings.from_env(
        {
            "RTDEMO_BACKUP_REPO": " you/backup ",
            "RTDEMO_BACKUP_EVERY": "2.5",
            "RTDEMO_BACKUP_CHECKPOINTS": "1",
            "RTDEMO_BACKUP_MAX_MODEL_MB": "10",
        }
    )
    assert got == BackupSettings("you/backup", 2.5, True, 10_000_000, None)
    for name, value in (
        ("RTDEMO_BACKUP_REPO", "no-owner"),
        ("RTDEMO_BACKUP_EVERY", "0.1"),
        ("RTDEMO_BACKUP_EVERY", "soon"),
        ("RTDEMO_BACKUP_CHECKPOINTS", "maybe"),
        ("RTDEMO_BACKUP_MAX_MODEL_MB", "-1"),
    ):
        env = {"RTDEMO_BACKUP_REPO": "you/backup", name: value}
        with pytest.raises(UserError, match=name):
            BackupSettings.from_env(env)


def test_a_push_sends_only_what_changed_and_mirrors_deletions(tmp_path, hub, settings):
    workspace = tmp_path / "ws"
    with Store(workspace) as store:
        store.create_experiment("first", "coin_flip")
    (workspace / "uploads" / "local").mkdir(parents=True)
    (workspace / "uploads" / "local" / "a.jsonl").write_text("a\n")
    (workspace / "uploads" / "local" / "b.jsonl").write_text("b\n")
    backup = WorkspaceBackup(workspace, settings, hub_api(settings, TOKEN))
    backup.prepare_repo()
    first = backup.push()
    assert sorted(first.uploaded) == [DB_NAME, "uploads/local/a.jsonl", "uploads/local/b.jsonl"]
    repo = hub.repo("dataset", REPO_ID)
    commits = len(repo.commits)

    assert backup.push().commit is None  # nothing changed: no commit
    # The app restarts on a disk that kept its files: the repo already holds them all.
    again = WorkspaceBackup(workspace, settings, hub_api(settings, TOKEN))
    assert again.push().commit is None
    assert len(repo.commits) == commits

    (workspace / "uploads" / "local" / "a.jsonl").unlink()
    (workspace / "uploads" / "local" / "b.jsonl").write_text("b, edited\n")
    with Store(workspace) as store:
        store.create_experiment("second", "coin_flip")
    changed = again.push()
    assert sorted(changed.uploaded) == [DB_NAME, "uploads/local/b.jsonl"]
    assert changed.deleted == ["uploads/local/a.jsonl"]
    assert "uploads/local/a.jsonl" not in repo.files
    assert repo.files["uploads/local/b.jsonl"] == b"b, edited\n"
    assert len(repo.commits) == commits + 1


def test_a_workspace_without_a_store_never_overwrites_a_backup_that_has_one(
    tmp_path, hub, settings
):
    workspace = tmp_path / "ws"
    with Store(workspace):
        pass
    WorkspaceBackup(workspace, settings, hub_api(settings, TOKEN)).push()
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "stray.txt").write_text("x")
    with pytest.raises(UserError, match=r"has no store but the backup in .* has one"):
        WorkspaceBackup(empty, settings, hub_api(settings, TOKEN)).push()
    assert DB_NAME in hub.repo("dataset", REPO_ID).files


# Restore: only into an empty workspace, and only what this rtdemo can read -------------------


def test_restore_leaves_a_workspace_that_has_a_store_alone(tmp_path, hub, settings):
    source = tmp_path / "source"
    with Store(source) as store:
        store.create_experiment("backed-up", "coin_flip")
    WorkspaceBackup(source, settings, hub_api(settings, TOKEN)).push()
    workspace = tmp_path / "ws"
    with Store(workspace) as store:
        store.create_experiment("local-only", "coin_flip")
    before = tables(workspace)
    assert restore_if_empty(workspace, settings, TOKEN) is None
    with pytest.raises(UserError, match="already has a store: restore only into an empty"):
        restore(workspace, settings, TOKEN)
    assert tables(workspace) == before
    assert hub.count("resolve", "dataset") == 0  # nothing was even downloaded


def test_restore_into_another_folder_moves_the_jobs_there(tmp_path, hub, settings, monkeypatch):
    monkeypatch.setenv("RTDEMO_JOB_HEARTBEAT_S", "0.2")
    source = tmp_path / "source"
    with Store(source) as store:
        job = start_job(store, "generate", [*sleeper(2, 0.01), "--workspace", str(source)])
        wait_for(lambda: get_job(store, job.id).status == "done", what="the job")
    WorkspaceBackup(source, settings, hub_api(settings, TOKEN)).push()
    target = tmp_path / "elsewhere"
    restored = restore(target, settings, TOKEN)
    assert restored is not None and restored.moved_from == str(source.resolve())
    with Store(target) as store:
        argv = get_job(store, job.id).argv
    assert argv[argv.index("--workspace") + 1] == str(target.resolve())


def test_a_backup_from_a_newer_rtdemo_is_refused_and_the_app_then_makes_no_backup(
    tmp_path, hub, settings, monkeypatch, caplog
):
    source = tmp_path / "source"
    with Store(source) as store:
        store.create_experiment("future", "coin_flip")
    conn = sqlite3.connect(str(source / DB_NAME))
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    WorkspaceBackup(source, settings, hub_api(settings, TOKEN)).push()
    repo = hub.repo("dataset", REPO_ID)
    commits, files = len(repo.commits), dict(repo.files)

    workspace = tmp_path / "ws"
    with pytest.raises(UserError, match="newer rtdemo"):
        restore(workspace, settings, TOKEN)
    assert not (workspace / DB_NAME).exists() and not (workspace / ".rtdemo-restore").exists()

    env = {"RTDEMO_BACKUP_REPO": REPO_ID, "HF_ENDPOINT": hub.url}
    with caplog.at_level(logging.INFO, logger=backup_module.__name__):
        assert start_backup(workspace, TOKEN, env) is None
    assert "could not restore the workspace" in caplog.text
    assert "makes no backup this run" in caplog.text
    assert (len(repo.commits), repo.files) == (commits, files)  # the backup is untouched


# The app's start: problems are logged, the app starts anyway ---------------------------------


def test_start_backup_restores_an_empty_workspace_then_keeps_pushing(tmp_path, hub, caplog):
    source = tmp_path / "source"
    with Store(source) as store:
        store.create_experiment("kept", "coin_flip")
    settings = BackupSettings(REPO_ID, endpoint=hub.url)
    WorkspaceBackup(source, settings, hub_api(settings, TOKEN)).push()

    workspace = tmp_path / "ws"
    env = {"RTDEMO_BACKUP_REPO": REPO_ID, "HF_ENDPOINT": hub.url, "RTDEMO_BACKUP_EVERY": "60"}
    with caplog.at_level(logging.INFO, logger=backup_module.__name__):
        scheduler = start_backup(workspace, TOKEN, env)
    assert scheduler is not None
    try:
        with Store(workspace) as store:
            assert [e.name for e in store.list_experiments()] == ["kept"]
            store.create_experiment("new-after-restart", "coin_flip")
        # The scheduler pushes once as it starts, in its thread (before or after this change):
        # this push runs after the change whatever the order, one push at a time.
        scheduler.trigger().result()
        assert scheduler.last_error is None
    finally:
        scheduler.stop()
    assert "restored 1 files from" in caplog.text
    assert f"to the private dataset repo {REPO_ID} every 60 minutes" in caplog.text
    pushed = tmp_path / "pushed.sqlite3"
    pushed.write_bytes(hub.repo("dataset", REPO_ID).files[DB_NAME])
    conn = sqlite3.connect(str(pushed))
    names = sorted(row[0] for row in conn.execute("SELECT name FROM experiments"))
    conn.close()
    assert names == ["kept", "new-after-restart"]


WITHOUT = "The app starts without backup."
NO_BACKUP_THIS_RUN = "The app starts with an empty workspace and makes no backup this run"


@pytest.mark.parametrize(
    ("token", "repo", "expected", "then"),
    [
        (None, REPO_ID, "the app has no Hub token: add HF_TOKEN", WITHOUT),
        (WRONG_TOKEN, REPO_ID, "refused the token (401", NO_BACKUP_THIS_RUN),
        (TOKEN, f"{OTHER_USER}/backup", "may not write there (403", WITHOUT),
        (TOKEN, f"{USER}/public-backup", "is public: make it private", WITHOUT),
    ],
)
def test_a_bad_token_or_repo_is_logged_and_start_backup_returns(
    tmp_path, hub, caplog, token, repo, expected, then
):
    hub.add_repo("dataset", f"{OTHER_USER}/backup", private=True)
    hub.add_repo("dataset", f"{USER}/public-backup", private=False)
    env = {"RTDEMO_BACKUP_REPO": repo, "HF_ENDPOINT": hub.url}
    with caplog.at_level(logging.INFO, logger=backup_module.__name__):
        assert start_backup(tmp_path / "ws", token, env) is None
    assert expected in caplog.text
    assert then in caplog.text
    assert WRONG_TOKEN not in caplog.text
    assert OTHER_TOKEN not in caplog.text and TOKEN not in caplog.text
    assert hub.repo("dataset", f"{OTHER_USER}/backup").commits == []
    assert hub.repo("dataset", f"{USER}/public-backup").commits == []


def test_no_backup_repo_means_no_backup_and_no_hub_request(tmp_path, hub):
    assert start_backup(tmp_path / "ws", TOKEN, {"HF_ENDPOINT": hub.url}) is None
    assert hub.requests == []


# The host's command line ----------------------------------------------------------------------


def cli(*args: str) -> tuple[int, str, str]:
    from rtdemo.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def test_cli_backs_up_now_and_restores(tmp_path, hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.delenv("RTDEMO_BACKUP_REPO", raising=False)
    workspace = tmp_path / "ws"
    with Store(workspace) as store:
        store.create_experiment("by-hand", "coin_flip")
    flags = ["--repo", REPO_ID, "--endpoint", hub.url]
    code, out, err = cli("backup", "now", *flags, "--workspace", str(workspace))
    assert code == 0, err
    assert f"to {REPO_ID}: 1 files updated, 0 removed" in out
    code, out, _ = cli("backup", "now", *flags, "--workspace", str(workspace))
    assert (code, out.strip()) == (0, f"nothing changed since the backup in {REPO_ID}")

    code, _, err = cli("backup", "restore", *flags, "--workspace", str(workspace))
    assert code == 2 and "already has a store" in err
    target = tmp_path / "restored"
    code, out, err = cli("backup", "restore", *flags, "--workspace", str(target))
    assert code == 0, err
    assert f"restored 1 files from {REPO_ID}" in out
    assert tables(target)["experiments"] == tables(workspace)["experiments"]

    code, _, err = cli("backup", "now", "--workspace", str(workspace))
    assert code == 2 and "no backup repo: give --repo OWNER/NAME or set RTDEMO_BACKUP_REPO" in err
    code, _, err = cli("backup", "restore", "--repo", f"{USER}/nothing-here", "--endpoint", hub.url)
    assert code == 2 and "nothing to restore" in err


# The Space itself: `python app.py` ------------------------------------------------------------


def app_log(folder: Path) -> str:
    """What the app printed (tests/ui/browser.py's `app_server` logs beside the workspace)."""
    return "".join(path.read_text(errors="replace") for path in sorted(folder.glob("app-*.log")))


@pytest.mark.slow
def test_the_space_restores_its_workspace_at_start_and_starts_with_a_bad_token_too(
    tmp_path, hub, settings
):
    from tests.ui.browser import app_server

    source = tmp_path / "source"
    with Store(source) as store:
        store.create_experiment("survives-restarts", "coin_flip")
    WorkspaceBackup(source, settings, hub_api(settings, TOKEN)).push()
    space = {
        "SYSTEM": "spaces",
        "RTDEMO_BACKUP_REPO": REPO_ID,
        "HF_ENDPOINT": hub.url,
        "HF_HUB_OFFLINE": "0",
    }
    (tmp_path / "restart").mkdir()
    workspace = tmp_path / "restart" / "ws"
    with app_server(workspace, **space, HF_TOKEN=TOKEN), Store(workspace) as store:
        assert [e.name for e in store.list_experiments()] == ["survives-restarts"]
    log = app_log(workspace.parent)
    assert f"restored 1 files from {REPO_ID}" in log
    assert f"to the private dataset repo {REPO_ID} every 5 minutes" in log
    assert TOKEN not in log

    repo = hub.repo("dataset", REPO_ID)
    commits = len(repo.commits)
    (tmp_path / "refused").mkdir()
    refused = tmp_path / "refused" / "ws"
    with app_server(refused, **space, HF_TOKEN=WRONG_TOKEN) as url:
        page = urllib.request.urlopen(url + "config", timeout=30).read().decode()
        assert "Reasoning Teacher Studio" in page  # it serves the app
    log = app_log(refused.parent)
    assert "refused the token (401" in log and NO_BACKUP_THIS_RUN in log
    assert WRONG_TOKEN not in log
    assert len(repo.commits) == commits and DB_NAME in repo.files
