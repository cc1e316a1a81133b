"""The app starts, and its task browser works through the handlers and through a real client."""

from __future__ import annotations

import pytest

from rtdemo.tasks import TASKS
from rtdemo.ui.task_tab import AUTO, preview, source_notes, task_overview


def test_overview_lists_every_task_with_what_is_available_here():
    rows = task_overview()
    assert [r[0] for r in rows] == list(TASKS)
    coin = next(r for r in rows if r[0] == "coin_flip")
    assert "synthetic" in coin[4]


def test_preview_shows_questions_and_reports_errors_in_place(paper_data, monkeypatch):
    rows, status = preview("coin_flip", AUTO, "test", 3, 0, 40, 4, None)
    assert len(rows) == 3 and "3 of 12 test questions" in status
    rows, status = preview("gsm8k", "hub", "train", 3, 0, 500, 4, None)
    assert rows == [] and "needs network or a local copy" in status
    monkeypatch.setenv("RTDEMO_PAPER_DATA", str(paper_data))
    rows, status = preview("svamp", AUTO, "test", 5, 0, 500, 4, None)
    assert len(rows) == 5 and "of 300 test questions" in status


def test_preview_of_a_bad_upload_names_the_row(tmp_path):
    f = tmp_path / "mine.csv"
    f.write_text("question,answer\nWhat?,\n")
    rows, status = preview("gsm8k", "file", "train", 5, 0, 500, 4, str(f))
    assert rows == [] and "empty answer" in status and "row 1" in status


def test_source_notes_explain_missing_sources():
    assert "needs network or a local copy" in source_notes("gsm8k")


def test_source_notes_name_the_servers_folders_by_their_variables(tmp_path, monkeypatch):
    # A visitor of a public Space sees which sources exist, not where they are on the server.
    (tmp_path / "dataset").mkdir()
    monkeypatch.setenv("RTDEMO_PAPER_DATA", str(tmp_path))
    monkeypatch.setenv("RTDEMO_HUB_DIR", str(tmp_path / "hub"))
    notes = source_notes("coin_flip") + source_notes("gsm8k")
    assert "$RTDEMO_PAPER_DATA" in notes and str(tmp_path) not in notes


@pytest.mark.slow
def test_launched_app_answers_a_client():
    from gradio_client import Client

    import app
    from rtdemo.ui.theme import launch_kwargs

    app.demo.launch(
        prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, **launch_kwargs()
    )
    try:
        client = Client(app.demo.local_url, verbose=False)
        table, status = client.predict(
            "last_letter_concatenation", AUTO, "train", 2, 5, 30, 3, None, api_name="/preview_task"
        )
        assert "2 of 21 train questions" in status
        assert len(table["data"]) == 2
    finally:
        app.demo.close()
