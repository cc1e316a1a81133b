"""Bounded work and disk in the app (issue 12, failures 3 and 6): sizes checked before any work,
uploads checked before they are copied, refused or abandoned uploads deleted, disk caps."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest

from rtdemo.errors import UserError
from rtdemo.hosting.disk import upload_folder
from rtdemo.hosting.quotas import MB, Quotas
from rtdemo.tasks import synthetic
from rtdemo.ui.experiments import TaskChoice, create_experiment, experiment_names
from rtdemo.ui.session import AppContext, keep_upload
from rtdemo.ui.task_tab import preview

GOOD = "question,answer\nWhat is 1 + 1?,2\nWhat is 2 + 2?,4\nWhat is 3 + 3?,6\n"


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.fixture
def gradio_dir(tmp_path, monkeypatch) -> Path:
    """Gradio's upload folder for this test (GRADIO_TEMP_DIR)."""
    folder = tmp_path / "gradio"
    folder.mkdir()
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(folder))
    return folder


def _gradio_upload(gradio_dir: Path, name: str, text: str = GOOD, size: int = 0) -> Path:
    """A file as Gradio keeps an upload: `<upload folder>/<hash>/<name>` (sparse to `size`)."""
    path = gradio_dir / "0123abcd" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if size:
        with open(path, "r+b") as f:
            f.truncate(size)
    return path


# ---- sizes checked before the work --------------------------------------------------------------


def test_a_million_question_request_is_refused_in_under_a_second(tmp_path, owner):
    """Issue 12: refused for the 5,000 cap only after 11 s of building it. The one timing
    assertion of the suite (asked for by the issue): the check is the only work, so it takes
    milliseconds; a second is a wide margin."""
    ctx = AppContext(tmp_path / "ws", Quotas(visitor_max_questions=5000))
    choice = TaskChoice("coin_flip", "synthetic", size=1_000_000)
    start = time.perf_counter()
    with pytest.raises(UserError, match=r"700,000, above this app's limit of 5,000") as err:
        create_experiment(ctx, owner, "huge", choice)
    assert time.perf_counter() - start < 1.0
    assert "pick a smaller size or questions per split" in str(err.value)
    assert experiment_names(ctx, owner) == []


def test_the_cap_counts_what_is_generated_and_a_limit_generates_only_that(
    tmp_path, owner, monkeypatch
):
    ctx = AppContext(tmp_path / "ws", Quotas(visitor_max_questions=5000))
    calls: list[int] = []
    real = synthetic.GENERATORS["last_letter_concatenation"]
    monkeypatch.setitem(
        synthetic.GENERATORS,
        "last_letter_concatenation",
        lambda rng, n: calls.append(n) or real(rng, n),
    )
    # "first available" resolves to the synthetic source here (no paper data): checked too.
    with pytest.raises(UserError, match="7,000"):
        create_experiment(ctx, owner, "a", TaskChoice("last_letter_concatenation", size=10_000))
    assert calls == []  # refused before generating anything
    choice = TaskChoice("last_letter_concatenation", "synthetic", size=1_000_000, limit=100)
    message = create_experiment(ctx, owner, "few", choice)
    assert "100 train and 100 test questions" in message
    assert len(calls) < 2000  # what the two splits' first 100 needed, not a million


def test_a_preview_of_a_huge_size_generates_only_the_rows_it_shows(monkeypatch):
    calls: list[int] = []
    real = synthetic.GENERATORS["coin_flip"]
    monkeypatch.setitem(
        synthetic.GENERATORS, "coin_flip", lambda rng, n: calls.append(n) or real(rng, n)
    )
    rows, status = preview("coin_flip", "synthetic", "test", 3, 0, 1_000_000, 4, None)
    assert len(rows) == 3 and "3 of 300000 test questions" in status
    assert len(calls) < 100
    rows, status = preview("coin_flip", "synthetic", "train", 5000, 0, 3000, 4, None)
    assert len(rows) == 1000 and "shows at most 1,000" in status


# ---- uploads: checked before copying, refused ones deleted -------------------------------------


def test_an_upload_over_the_limit_is_refused_before_it_is_copied_and_deleted(
    tmp_path, owner, gradio_dir
):
    ctx = AppContext(tmp_path / "ws", Quotas(max_upload_mb=2))
    upload = _gradio_upload(gradio_dir, "big.csv", size=3 * MB)
    choice = TaskChoice("gsm8k", "file", file=str(upload))
    with pytest.raises(UserError, match=r"big.csv is 3.0 MB; the limit is 2 MB per upload"):
        create_experiment(ctx, owner, "big", choice)
    assert _files(gradio_dir) == [] and list(gradio_dir.iterdir()) == []  # its folder too
    assert not (ctx.workspace / "uploads").exists()


def test_a_file_outside_gradios_upload_folder_is_refused_but_never_deleted(
    tmp_path, owner, gradio_dir
):
    ctx = AppContext(tmp_path / "ws", Quotas(max_upload_mb=1))
    mine = tmp_path / "mine.csv"
    mine.write_text(GOOD + "x" * MB)
    with pytest.raises(UserError, match="the limit is 1 MB"):
        keep_upload(ctx, owner, mine)
    assert mine.is_file()


def test_a_file_refused_for_its_content_leaves_no_kept_copy(tmp_path, owner, gradio_dir):
    ctx = AppContext(tmp_path / "ws", Quotas())
    bad = _gradio_upload(gradio_dir, "bad.csv", "question,answer\nWhat?,\n")
    with pytest.raises(UserError, match="row 1"):
        create_experiment(ctx, owner, "x", TaskChoice("gsm8k", "file", file=str(bad)))
    assert _files(ctx.workspace / "uploads") == []
    # Gradio's copy stays for its cache cleaning: identical uploads of others share it.
    assert bad.is_file()
    good = _gradio_upload(gradio_dir, "good.csv")
    create_experiment(ctx, owner, "x", TaskChoice("gsm8k", "file", file=str(good)))
    kept = _files(ctx.workspace / "uploads")
    assert len(kept) == 1 and kept[0].read_text() == GOOD


# ---- disk caps ---------------------------------------------------------------------------------


def test_disk_caps_refuse_an_upload_and_a_job_before_any_work(tmp_path, owner, gradio_dir):
    ctx = AppContext(tmp_path / "ws", Quotas(max_owner_disk_mb=1, max_disk_mb=3))
    mine = upload_folder(ctx.workspace, owner)
    mine.mkdir(parents=True)
    (mine / "old.csv").write_bytes(b"x" * (MB - 1000))
    upload = _gradio_upload(gradio_dir, "new.csv", GOOD + "y" * 2000)
    choice = TaskChoice("gsm8k", "file", file=str(upload))
    fits = r"this upload \(2\.0 KB\) does not fit: your files .* 1,023 KB"
    with pytest.raises(UserError, match=fits):
        create_experiment(ctx, owner, "x", choice)
    assert len(_files(ctx.workspace / "uploads")) == 1 and upload.is_file()

    planned: list[str] = []

    def plan(store):
        planned.append("planned")
        raise AssertionError("the plan must not run: the disk check comes first")

    (mine / "more.csv").write_bytes(b"x" * 1000)
    with pytest.raises(UserError, match=r"use 1\.0 MB of your 1\.0 MB: no new job can start"):
        ctx.start(owner, ["train", "--experiment", "x"], plan)
    everyone = AppContext(ctx.workspace, Quotas(max_disk_mb=3))
    (ctx.workspace / "uploads" / "anon-00000000000000ff").mkdir(parents=True)
    (ctx.workspace / "uploads" / "anon-00000000000000ff" / "f.bin").write_bytes(b"x" * 2 * MB)
    with pytest.raises(UserError, match="this app's disk is full"):
        everyone.start(owner, ["train", "--experiment", "x"], plan)
    assert planned == []


# ---- the launched app: Gradio's own limit, and its cache cleaning --------------------------------


@contextlib.contextmanager
def _launched(workspace: Path):
    from rtdemo.ui.app import build_app
    from rtdemo.ui.theme import launch_kwargs

    demo = build_app(workspace)
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", **launch_kwargs())
    try:
        yield demo
    finally:
        demo.close()


def _post(url: str, path: Path):
    import httpx

    with open(path, "rb") as f:
        files = {"files": (path.name, f, "text/csv")}
        return httpx.post(f"{url}gradio_api/upload", files=files, timeout=120)


@pytest.mark.slow
def test_a_refused_250_mb_upload_leaves_nothing_on_disk(tmp_path, gradio_dir):
    """Issue 12: a 250 MB upload was copied into uploads/<owner>/ before "the limit is 200 MB",
    and the copy stayed. Gradio now stops it while it arrives (max_file_size, the default 200 MB)
    and removes what it had written; the app never sees it."""
    big = tmp_path / "big.csv"
    with open(big, "wb") as f:
        f.truncate(250 * MB)  # sparse: fast to make and to read
    workspace = tmp_path / "ws"
    with _launched(workspace) as demo:
        assert demo.max_file_size == 200 * MB
        response = _post(demo.local_url, big)
        assert response.status_code == 413 and "maximum allowed size" in response.text
        assert _files(gradio_dir) == []
        assert _files(workspace / "uploads") == []
        small = tmp_path / "small.csv"
        small.write_text(GOOD)
        response = _post(demo.local_url, small)
        assert response.status_code == 200
        assert [p.name for p in _files(gradio_dir)] == ["small.csv"]


@pytest.mark.slow
def test_an_abandoned_upload_is_deleted_by_gradios_cache_cleaning(
    tmp_path, gradio_dir, monkeypatch
):
    monkeypatch.setenv("RTDEMO_UPLOAD_TTL_S", "1")
    small = tmp_path / "small.csv"
    small.write_text(GOOD)
    with _launched(tmp_path / "ws") as demo:
        assert demo.delete_cache == (1, 1)
        response = _post(demo.local_url, small)
        assert response.status_code == 200
        (path,) = response.json()
        assert Path(path).is_file()
        deadline = time.monotonic() + 60  # a bound for a slow machine, not a measurement
        while Path(path).exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not Path(path).exists()


def test_a_replay_file_kept_for_a_job_that_does_not_start_is_deleted(tmp_path, owner, gradio_dir):
    from rtdemo.ui.teacher_actions import TeacherChoice, start_generation

    ctx = AppContext(tmp_path / "ws", Quotas(max_owner_disk_mb=1))
    create_experiment(ctx, owner, "letters", TaskChoice("coin_flip", "synthetic", size=10))
    replay = _gradio_upload(gradio_dir, "completions.jsonl", "{}\n" * 50)  # 150 bytes
    old = upload_folder(ctx.workspace, owner) / "old.bin"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"x" * (MB - 150))  # the upload just fits; then the owner is at the cap
    with pytest.raises(UserError, match="no new job can start"):
        start_generation(ctx, owner, "letters", TeacherChoice("replay", replay_file=str(replay)))
    assert _files(ctx.workspace / "uploads") == [old]


def test_a_visitors_file_is_read_up_to_twice_the_question_cap(tmp_path, owner, gradio_dir):
    ctx = AppContext(tmp_path / "ws", Quotas(visitor_max_questions=5))
    rows = "".join(f"What is {i} + 1?,{i + 1}\n" for i in range(11))
    upload = _gradio_upload(gradio_dir, "eleven.csv", "question,answer\n" + rows)
    choice = TaskChoice("gsm8k", "file", file=str(upload), limit=5)
    with pytest.raises(UserError, match=r"eleven\.csv has more than 10 rows, the most this app"):
        create_experiment(ctx, owner, "x", choice)
    assert _files(ctx.workspace / "uploads") == []
    message = create_experiment(ctx, "hf:bob", "x", choice)  # logged in: no such limit
    assert "5 train and 3 test questions" in message
    ten = _gradio_upload(gradio_dir, "ten.csv", "question,answer\n" + rows.split("\n", 1)[1])
    message = create_experiment(
        ctx, owner, "x", TaskChoice("gsm8k", "file", file=str(ten), limit=5)
    )
    assert "5 train and 3 test questions" in message
