"""The size of the models a shared app's users make the server load (`RTDEMO_MAX_MODEL_MB`),
measured on a fake Hub (tests/fakes/hub_server.py) before anything is downloaded; and the
registry's "not prepared" message, which shows a shared app's users no folder of the server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from rtdemo.errors import UserError
from rtdemo.hosting.access import (
    CannotMeasure,
    RepoFiles,
    check_model_size,
    check_model_sizes,
    weight_bytes,
)
from rtdemo.hosting.quotas import Quotas
from rtdemo.models import resolve_model_name
from tests.fakes.hub_server import TOKEN, USER, FakeHubServer, use_fake_hub

GB = 2**30
SPACES = {"SYSTEM": "spaces"}  # the default limit there: 2,000 MB
CONFIG = b'{"model_type": "gpt2"}'
HUGE = "big-org/huge-model"  # 13.5 GB of weights, as the Hub lists them
SMALL = "small-org/small-model"  # 1.5 MB of weights
SHARDED = "big-org/sharded"  # two shards of 1.5 GB, and a .bin copy that is not loaded
ADAPTER_ON_HUGE = "someone/lora-on-huge"
ADAPTER_ON_SMALL = "someone/lora-on-small"
ADAPTER_ON_FOLDER = "someone/lora-on-a-folder"
NO_WEIGHTS = "someone/just-a-card"
PRIVATE = f"{USER}/private-small"


def adapter_config(base: str) -> bytes:
    return json.dumps({"base_model_name_or_path": base, "peft_type": "LORA"}).encode()


@pytest.fixture
def hub(tmp_path: Path, monkeypatch) -> Iterator[FakeHubServer]:
    """The fake Hub, which this process's huggingface_hub talks to, with models of every kind."""
    with FakeHubServer(tmp_path / "hub") as server:
        use_fake_hub(monkeypatch, server, tmp_path / "hf-home")
        server.add_repo(
            "model",
            HUGE,
            {"config.json": CONFIG, "model.safetensors": b"not really 13.5 GB"},
            sizes={"model.safetensors": int(13.5 * GB)},
        )
        small = {"config.json": CONFIG, "model.safetensors": b"\0" * (3 * 2**19)}
        server.add_repo("model", SMALL, small)
        server.add_repo("model", PRIVATE, small, private=True)
        server.add_repo(
            "model",
            SHARDED,
            {
                "config.json": CONFIG,
                "model-00001-of-00002.safetensors": b"1",
                "model-00002-of-00002.safetensors": b"2",
                "pytorch_model.bin": b"3",  # the same weights again: not what a load reads
                "original/consolidated.pth": b"4",  # not at the root: not read either
            },
            sizes={
                "model-00001-of-00002.safetensors": int(1.5 * GB),
                "model-00002-of-00002.safetensors": int(1.5 * GB),
                "pytorch_model.bin": 3 * GB,
                "original/consolidated.pth": 3 * GB,
            },
        )
        lora = {"adapter_model.safetensors": b"\0" * 100}
        for repo, base in (
            (ADAPTER_ON_HUGE, HUGE),
            (ADAPTER_ON_SMALL, SMALL),
            (ADAPTER_ON_FOLDER, "/srv/models/secret"),
        ):
            server.add_repo("model", repo, {**lora, "adapter_config.json": adapter_config(base)})
        server.add_repo("model", NO_WEIGHTS, {"README.md": b"# nothing to load"})
        yield server


def downloads(hub: FakeHubServer, repo: str) -> set[str]:
    """The files of `repo` that were downloaded or looked up for a download (resolve)."""
    return {r.path for r in hub.requests_for(repo) if r.endpoint == "resolve"}


def test_the_limit_is_a_host_setting_with_a_spaces_default():
    assert Quotas.from_env({}).max_model_mb == 0  # one's own machine: no limit
    assert Quotas.from_env(SPACES).max_model_mb == 2000
    assert Quotas.from_env({**SPACES, "RTDEMO_MAX_MODEL_MB": "500"}).max_model_mb == 500
    assert Quotas.from_env({**SPACES, "RTDEMO_MAX_MODEL_MB": "0"}).max_model_mb == 0
    with pytest.raises(UserError, match="RTDEMO_MAX_MODEL_MB='2GB' is not a whole number"):
        Quotas.from_env({"RTDEMO_MAX_MODEL_MB": "2GB"})


def test_weights_are_the_root_files_a_pytorch_load_reads():
    both = {"model.safetensors": 10, "pytorch_model.bin": 10, "config.json": 1}
    assert weight_bytes("m", RepoFiles(both)) == 10  # safetensors preferred: the .bin is unread
    old = {"pytorch_model.bin": 7, "training_args.bin": 1, "tokenizer.json": 99}
    assert weight_bytes("m", RepoFiles(old)) == 8
    assert weight_bytes("m", RepoFiles({"model.gguf": 5, "sub/model.gguf": 50})) == 5
    with pytest.raises(CannotMeasure, match="m lists no weight files on the Hub"):
        weight_bytes("m", RepoFiles({"config.json": 1, "onnx/model.safetensors": 3}))
    with pytest.raises(CannotMeasure, match=r"does not say how large m's model\.safetensors is"):
        weight_bytes("m", RepoFiles({"model.safetensors": None}))


def test_a_too_large_hub_model_is_refused_before_anything_is_downloaded(hub):
    message = (
        f"{HUGE} has 13.5 GB of weights; this app loads models up to 2.0 GB: choose a smaller "
        "student, or run the app on your own machine (its host sets this limit with "
        "RTDEMO_MAX_MODEL_MB)"
    )
    with pytest.raises(UserError) as err:
        check_model_size(HUGE, False, "student", SPACES)
    assert str(err.value) == message
    assert [r.endpoint for r in hub.requests_for(HUGE)] == ["info"]  # one listing, no download
    with pytest.raises(UserError, match=r"has 3\.0 GB of weights"):  # the shards, not the copies
        check_model_size(SHARDED, False, "student", SPACES)
    check_model_size(SHARDED, False, "student", {**SPACES, "RTDEMO_MAX_MODEL_MB": "3072"})
    check_model_size(SMALL, False, "student", SPACES)  # 1.5 MB: fine
    assert downloads(hub, SMALL) == set() and downloads(hub, SHARDED) == set()
    with pytest.raises(UserError, match=r"1\.5 MB of weights; this app loads models up to 1\.0 MB"):
        check_model_size(SMALL, False, "student", {**SPACES, "RTDEMO_MAX_MODEL_MB": "1"})


def test_an_adapter_counts_with_the_base_model_it_loads(hub):
    with pytest.raises(UserError, match=rf"{ADAPTER_ON_HUGE} \(an adapter, with its base model "):
        check_model_size(ADAPTER_ON_HUGE, False, "local teacher model", SPACES)
    assert downloads(hub, HUGE) == set()  # the adapter's config is read; no weights of either
    assert downloads(hub, ADAPTER_ON_HUGE) == {
        f"/{ADAPTER_ON_HUGE}/resolve/main/adapter_config.json"
    }
    check_model_size(ADAPTER_ON_SMALL, False, "local teacher model", SPACES)
    with pytest.raises(UserError, match="names no Hub model as its base"):
        check_model_size(ADAPTER_ON_FOLDER, False, "student", SPACES)


def test_a_model_that_cannot_be_measured_is_refused_on_a_shared_app(hub, monkeypatch):
    from huggingface_hub import constants

    no_weights = f"cannot check the size of {NO_WEIGHTS}: {NO_WEIGHTS} lists no weight files on"
    with pytest.raises(UserError, match=no_weights):
        check_model_size(NO_WEIGHTS, False, "student", SPACES)
    with pytest.raises(UserError, match=r"the Hub has no model nobody/nothing .*sign in"):
        check_model_size("nobody/nothing", False, "student", SPACES)
    # A private model: refused without a token, measured with its owner's.
    with pytest.raises(UserError, match=f"cannot check the size of {PRIVATE}: .*sign in"):
        check_model_size(PRIVATE, False, "student", SPACES)
    check_model_size(PRIVATE, TOKEN, "student", SPACES)
    assert {r.authorization for r in hub.requests_for(PRIVATE)} == {None, f"Bearer {TOKEN}"}
    hub.fail("info", "server_error")
    with pytest.raises(UserError, match=f"cannot check the size of {SMALL}: .*500"):
        check_model_size(SMALL, False, "student", SPACES)
    hub.fail("info", "drop")  # no answer at all, and not in this server's cache
    with pytest.raises(UserError, match=r"the Hub is unreachable .* not in this server's Hugging"):
        check_model_size(SMALL, False, "student", SPACES)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(UserError, match="HF_HUB_OFFLINE is set and it is not in this server's"):
        check_model_size(SMALL, False, "student", SPACES)


def test_offline_a_cached_model_is_measured_on_disk(hub, monkeypatch):
    from huggingface_hub import constants, snapshot_download

    folder = Path(snapshot_download(SMALL))  # the server fetched it earlier
    assert (folder / "model.safetensors").stat().st_size == 3 * 2**19
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    before = len(hub.requests)
    check_model_size(SMALL, False, "student", SPACES)
    with pytest.raises(UserError, match=r"1\.5 MB of weights; this app loads models up to 1\.0 MB"):
        check_model_size(SMALL, False, "student", {**SPACES, "RTDEMO_MAX_MODEL_MB": "1"})
    assert len(hub.requests) == before  # measured in the cache, not on the Hub
    # The Hub unreachable (not offline): the cache too.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    hub.fail("info", "drop")
    check_model_size(SMALL, False, "student", SPACES)


def test_on_ones_own_machine_or_without_a_limit_nothing_is_measured(hub):
    check_model_size(HUGE, False, "student", {})  # local access allowed: the user is the host
    check_model_size(HUGE, False, "student", {**SPACES, "RTDEMO_ALLOW_LOCAL_ACCESS": "1"})
    check_model_size(HUGE, False, "student", {**SPACES, "RTDEMO_MAX_MODEL_MB": "0"})
    check_model_size("nobody/nothing", False, "student", {"RTDEMO_ALLOW_LOCAL_ACCESS": "0"})
    check_model_size("tiny", False, "student", SPACES)  # built here
    assert hub.requests == []


def test_commands_are_checked_on_their_student_and_local_teacher(hub):
    with pytest.raises(UserError, match=f"{HUGE} has 13.5 GB.*smaller local teacher model"):
        check_model_sizes(["generate", "--teacher", "hf", "--model", HUGE], False, SPACES)
    with pytest.raises(UserError, match=f"{HUGE} has 13.5 GB.*smaller student"):
        check_model_sizes(["train", "--student", HUGE, "--run", "r"], False, SPACES)
    hub.requests.clear()
    check_model_sizes(["generate", "--teacher", "openai", "--model", HUGE], False, SPACES)
    check_model_sizes(["train", "--student", HUGE], False, {})
    assert hub.requests == []  # an API teacher's model is not loaded here; own machine
    with pytest.raises(UserError, match="does not load models from its own disk"):
        check_model_sizes(["train", "--student", "/srv/models/x"], False, SPACES)


def test_the_registry_model_is_exempt_and_its_message_shows_no_server_path(
    hub, tmp_path, monkeypatch
):
    empty = tmp_path / "empty-cache"
    monkeypatch.setenv("RTDEMO_MODELS", str(empty))
    monkeypatch.setenv("SYSTEM", "spaces")
    wanted = (
        "the app's host has not prepared smollm2-135m (`rtdemo models prepare smollm2-135m`): "
        "choose another model, or run the app on your own machine"
    )
    for attempt in (
        lambda: resolve_model_name("smollm2-135m"),  # e.g. in a job of the shared app
        lambda: check_model_size("smollm2-135m", False, "student"),
        lambda: check_model_sizes(["train", "--student", "smollm2-135m"], False),
    ):
        with pytest.raises(UserError) as err:
            attempt()
        assert str(err.value) == wanted and str(tmp_path) not in str(err.value)
    assert hub.requests == []  # never measured on the Hub: the host prepares it
    monkeypatch.delenv("SYSTEM")  # one's own machine: where the cache is, and how to fill it
    with pytest.raises(UserError, match="is not prepared on this machine") as err:
        resolve_model_name("smollm2-135m")
    assert str(empty) in str(err.value)
