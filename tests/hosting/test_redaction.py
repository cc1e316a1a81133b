"""Credentials in URLs are shown and stored redacted, and server folders are not shown
(`rtdemo.redaction`); the places that check URLs say so without repeating a secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from rtdemo.errors import UserError
from rtdemo.hosting.access import check_command, check_public_url
from rtdemo.jobs.runner import check_argv
from rtdemo.redaction import (
    URL_ENV,
    has_hidden_parts,
    hide_folder,
    redact_url,
    restore_url,
    url_secrets,
)

SPACES = {"SYSTEM": "spaces"}


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://user:s3cret@host:8000/v1", "http://***@host:8000/v1"),
        ("https://tok3n@host/v1", "https://***@host/v1"),
        ("http://u:p%40ss@10.0.0.1/v1", "http://***@10.0.0.1/v1"),
        (
            "https://host/v1?api_key=abc&api-version=2024-06-01",
            "https://host/v1?api_key=***&api-version=2024-06-01",
        ),
        ("https://host/v1?token=a&sig=b&x=1", "https://host/v1?token=***&sig=***&x=1"),
        ("https://host/v1#access_token=abc", "https://host/v1#***"),
    ],
)
def test_credentials_in_a_url_are_hidden_and_the_server_stays_readable(url, shown):
    assert redact_url(url) == shown
    assert redact_url(shown) == shown  # redacting twice changes nothing
    assert has_hidden_parts(shown) or shown.endswith("#***")
    for secret in url_secrets(url):
        assert secret not in shown


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8000/v1", "https://api.openai.com/v1", "https://host/v1?", "not a url", ""],
)
def test_a_url_without_credentials_is_left_exactly_as_it_is(url):
    assert redact_url(url) == url and url_secrets(url) == [] and not has_hidden_parts(url)


def test_the_secrets_of_a_url_are_found_as_written_and_decoded():
    found = url_secrets("http://user:p%40ss@host/v1?api_key=k3y")
    assert {"user:p%40ss", "user:p@ss", "p%40ss", "p@ss", "k3y"} <= set(found)
    assert found == sorted(found, key=len, reverse=True)  # a longer one is scrubbed first


def test_a_job_gets_the_whole_url_back_from_its_environment():
    whole = "http://user:s3cret@host:8000/v1"
    shown = redact_url(whole)
    assert restore_url(shown, {URL_ENV: whole}) == whole
    # A URL typed whole (the CLI on one's own machine) is used as it is.
    assert restore_url(whole, {}) == whole and restore_url("http://host/v1", {}) == "http://host/v1"
    assert restore_url(None, {}) is None
    with pytest.raises(UserError, match=rf"credentials hidden.*\${URL_ENV}, which is not set"):
        restore_url(shown, {})
    with pytest.raises(UserError, match="holds another URL"):
        restore_url(shown, {URL_ENV: "http://user:s3cret@elsewhere:8000/v1"})


def test_a_server_folder_is_named_by_its_variable_and_only_the_whole_folder(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    text = f"model in {ws}/runs/3-train/final; predictions in '{ws}'; not {ws}2/x"
    assert hide_folder(text, ws) == (
        f"model in $RTDEMO_HOME/runs/3-train/final; predictions in '$RTDEMO_HOME'; not {ws}2/x"
    )
    link = tmp_path / "link"
    link.symlink_to(ws)  # the folder as given and as resolved
    assert hide_folder(f"{ws}/a and {link}/b", link) == "$RTDEMO_HOME/a and $RTDEMO_HOME/b"
    assert hide_folder("nothing here", Path("/")) == "nothing here"


def test_a_job_command_line_refuses_a_url_with_credentials():
    with pytest.raises(ValueError, match=r"URL with credentials \('http://\*\*\*@host/v1'\)"):
        check_argv(["generate", "--base-url", "http://user:s3cret@host/v1"])
    with pytest.raises(ValueError, match="credentials"):
        check_argv(["generate", "--base-url=https://host/v1?api_key=s3cret"])
    check_argv(["generate", "--base-url", "http://***@host/v1"])  # redacted: fine
    check_argv(["generate", "--base-url", "https://host/v1?api-version=2"])


def test_the_host_checks_never_repeat_the_credentials(monkeypatch):
    monkeypatch.delenv("RTDEMO_ALLOW_LOCAL_ACCESS", raising=False)
    with pytest.raises(UserError, match="must look like") as err:
        check_public_url("ftp://user:s3cret@host/v1", SPACES)
    assert "s3cret" not in str(err.value) and "***@host" in str(err.value)
    with pytest.raises(UserError, match="bad port") as err:
        check_public_url("http://user:s3cret@host:99999/v1", SPACES)
    assert "s3cret" not in str(err.value)
    # The redacted URL in a job's command line is checked like the whole one: same host.
    with pytest.raises(UserError, match="does not reach its own network"):
        check_command(["generate", "--base-url", "http://***@127.0.0.1:8000/v1"], SPACES)
