"""What a shared app's users may reach on the server: its network (teacher base URLs) and its
disk (model folders), as the host sets it with RTDEMO_ALLOW_LOCAL_ACCESS."""

from __future__ import annotations

import pytest

from rtdemo.errors import UserError
from rtdemo.hosting.access import (
    check_command,
    check_model_name,
    check_public_url,
    local_access_allowed,
)

REFUSED = {"RTDEMO_ALLOW_LOCAL_ACCESS": "0"}
SPACES = {"SYSTEM": "spaces"}


def test_allowed_on_your_own_machine_refused_on_spaces_and_the_host_decides():
    assert local_access_allowed({}) is True
    assert local_access_allowed(SPACES) is False
    assert local_access_allowed({**SPACES, "RTDEMO_ALLOW_LOCAL_ACCESS": "1"}) is True
    assert local_access_allowed(REFUSED) is False
    with pytest.raises(UserError, match=r"RTDEMO_ALLOW_LOCAL_ACCESS='maybe': use 1"):
        local_access_allowed({"RTDEMO_ALLOW_LOCAL_ACCESS": "maybe"})


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/v1",
        "http://localhost:8000/v1",  # a name: resolved, and every address checked
        "http://10.0.0.5/v1",
        "http://192.168.1.20:11434/v1",
        "http://169.254.169.254/latest/meta-data",  # cloud metadata
        "http://100.64.0.1/v1",  # shared address space
        "http://[::1]:8000/v1",
        "http://0.0.0.0:8000/v1",
    ],
)
def test_a_base_url_on_the_servers_own_network_is_refused(url):
    with pytest.raises(UserError, match="does not reach its own network"):
        check_public_url(url, REFUSED)
    check_public_url(url, {})  # one person on their own machine: their own server is fine


def test_a_public_base_url_passes_and_a_malformed_one_is_explained():
    check_public_url("https://8.8.8.8/v1", REFUSED)
    check_public_url("http://[2606:4700:4700::1111]:8080/v1", REFUSED)
    for bad in ("file:///etc/passwd", "api.openai.com/v1", "http:///v1"):
        with pytest.raises(UserError, match="must look like https://host/v1"):
            check_public_url(bad, REFUSED)
    with pytest.raises(UserError, match="bad port"):
        check_public_url("http://8.8.8.8:99999/v1", REFUSED)
    with pytest.raises(UserError, match=r"cannot resolve the teacher's host 'no-such-host\."):
        check_public_url("https://no-such-host.invalid/v1", REFUSED)


def test_a_model_folder_on_the_server_is_refused_and_hub_ids_pass(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org" / "model").mkdir(parents=True)  # a folder that looks like a Hub id
    for folder in ("/srv/models/llama", "./student", "~/models/x", "a/b/c", "org/model"):
        with pytest.raises(UserError, match="does not load models from its own disk"):
            check_model_name(folder, "student", REFUSED)
        check_model_name(folder, "student", {})
    for hub_id in ("gpt2", "google/flan-t5-base", "tiny"):
        check_model_name(hub_id, "student", REFUSED)


def test_commands_are_checked_by_their_flags():
    local_url = ["generate", "--teacher", "openai", "--base-url", "http://127.0.0.1:9/v1"]
    with pytest.raises(UserError, match="own network"):
        check_command([*local_url, "--model", "m"], REFUSED)
    with pytest.raises(UserError, match="own disk"):
        check_command(["generate", "--teacher=hf", "--model", "/srv/teacher"], REFUSED)
    with pytest.raises(UserError, match="own disk"):
        check_command(["train", "--student", "/srv/student", "--run", "cot"], REFUSED)
    # An OpenAI-compatible server's model name is the server's business, not a path here.
    check_command(["generate", "--teacher", "openai", "--model", "./whatever"], REFUSED)
    check_command(["train", "--student", "tiny"], REFUSED)
    check_command([*local_url, "--model", "m"], {})
