"""Disk limits of a shared app: the upload size, the disk an owner's files and the whole workspace
may use (`rtdemo.hosting.quotas`), and how an owner's use is measured (`rtdemo.hosting.disk`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rtdemo.errors import UserError
from rtdemo.evaluation.results import experiment_folder
from rtdemo.hosting.disk import owner_bytes, owner_paths, tree_bytes, upload_folder
from rtdemo.hosting.quotas import MB, Quotas, size_text
from rtdemo.publishing.push import publish_folder
from rtdemo.tasks.userfile import MAX_FILE_BYTES
from rtdemo.training.runs import run_folder
from rtdemo.workspace.store import Store

ALICE, BOB = "anon-00000000000000aa", "hf:bob"


def _write(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)


def test_disk_settings_come_from_the_environment_with_spaces_defaults():
    here = Quotas.from_env({})
    assert (here.max_upload_mb, here.max_owner_disk_mb, here.max_disk_mb) == (200, 0, 0)
    assert here.max_upload_bytes == MAX_FILE_BYTES  # one limit: Gradio's, the app's, the reader's
    assert here.upload_ttl_s == 3600
    spaces = Quotas.from_env({"SYSTEM": "spaces"})
    assert (spaces.max_owner_disk_mb, spaces.max_disk_mb) == (2000, 20000)
    custom = Quotas.from_env(
        {"SYSTEM": "spaces", "RTDEMO_MAX_OWNER_DISK_MB": "0", "RTDEMO_MAX_UPLOAD_MB": "0"}
    )
    assert custom.max_owner_disk_mb == 0 and custom.max_upload_bytes is None
    negative = r"RTDEMO_MAX_DISK_MB='-1': give a whole number of at least 0 \(0 means no limit\)"
    with pytest.raises(UserError, match=negative):
        Quotas.from_env({"RTDEMO_MAX_DISK_MB": "-1"})


def test_an_upload_above_the_limit_is_refused_with_its_size():
    q = Quotas(max_upload_mb=200)
    q.check_upload("data.csv", 200 * MB)
    with pytest.raises(UserError, match=r"big.csv is 250 MB; the limit is 200 MB per upload"):
        q.check_upload("big.csv", 250 * MB)
    Quotas(max_upload_mb=0).check_upload("huge.csv", 10**12)


def test_disk_caps_refuse_new_work_with_what_is_used_and_what_to_do():
    q = Quotas(max_owner_disk_mb=100, max_disk_mb=1000)
    q.check_disk(99 * MB, 999 * MB)
    q.check_disk(60 * MB, 500 * MB, upload=40 * MB)
    with pytest.raises(UserError, match=r"use 100 MB of your 100 MB: no new job can start"):
        q.check_disk(100 * MB, 500 * MB)
    with pytest.raises(UserError, match=r"this upload \(41.0 MB\) does not fit: .* 60.0 MB"):
        q.check_disk(60 * MB, 500 * MB, upload=41 * MB)
    with pytest.raises(UserError, match=r"disk is full: everyone's files use 1,000 MB"):
        q.check_disk(0, 1000 * MB)
    with pytest.raises(UserError, match="RTDEMO_MAX_DISK_MB"):
        q.check_disk(0, 990 * MB, upload=20 * MB)
    Quotas().check_disk(10**15, 10**15, upload=10**15)  # 0: no limit


def test_size_text():
    assert size_text(0) == "0 bytes" and size_text(2048) == "2.0 KB"
    assert size_text(250 * MB) == "250 MB" and size_text(int(1.5 * 2**30)) == "1.5 GB"


def test_tree_bytes_counts_files_not_links_and_tolerates_absence(tmp_path):
    _write(tmp_path / "a" / "one", 1000)
    _write(tmp_path / "a" / "b" / "two", 234)
    outside = tmp_path / "outside"
    _write(outside, 10**6)
    os.symlink(outside, tmp_path / "a" / "link")  # not followed
    assert tree_bytes(tmp_path / "a") == 1234 + len(str(outside))  # the link's own size
    assert tree_bytes(tmp_path / "a" / "one") == 1000
    assert tree_bytes(tmp_path / "absent") == 0


def test_an_owners_files_are_theirs_only(tmp_path):
    """Uploads, job folders, student runs, results and publishing folders count toward their
    owner; another owner's do not, and the store counts toward the workspace only."""
    with Store(tmp_path / "ws") as store:
        mine = store.create_experiment("letters", "coin_flip", owner=ALICE)
        theirs = store.create_experiment("letters", "coin_flip", owner=BOB)
        for owner, run_dir in ((ALICE, "runs/1-train"), (BOB, "runs/2-train")):
            with store.transaction() as conn:
                conn.execute(
                    "INSERT INTO jobs (owner, kind, status, argv, run_dir, created_at) "
                    "VALUES (?, 'train', 'done', '[]', ?, 'now')",
                    (owner, run_dir),
                )
        _write(upload_folder(store.workspace, ALICE) / "f.csv", 1)
        _write(store.workspace / "runs" / "1-train" / "log.txt", 10)
        _write(run_folder(store, mine, "cot") / "final" / "model.safetensors", 100)
        _write(experiment_folder(store, mine) / "results.json", 1000)
        _write(publish_folder(store, mine) / "README.md", 10000)
        _write(upload_folder(store.workspace, BOB) / "g.csv", 2)
        _write(store.workspace / "runs" / "2-train" / "log.txt", 20)
        _write(run_folder(store, theirs, "cot") / "final" / "model.safetensors", 200)
        _write(experiment_folder(store, theirs) / "results.json", 2000)
        _write(publish_folder(store, theirs) / "README.md", 20000)
        assert owner_bytes(store, ALICE) == 11111
        assert owner_bytes(store, BOB) == 22222
        assert owner_bytes(store, "anon-00000000000000cc") == 0
        assert len(owner_paths(store, ALICE)) == 5
        total = tree_bytes(store.workspace)
        assert total >= 33333 + store.path.stat().st_size  # the store counts here
