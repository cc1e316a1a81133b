"""Fixtures of the teacher tests: the real SmolLM2 behind a real `transformers serve`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.teachers.serve import Served, serve


@pytest.fixture(scope="session")
def smollm2_served(smollm2_folder: Path, tmp_path_factory) -> Iterator[Served]:
    """`transformers serve` on the prepared SmolLM2 folder for the whole session (ready when
    `/health` answers, about 4 s here; the model loads on the first request), stopped at the
    end. Clients send `model=served.model` (the folder): the server is pinned to it."""
    with serve(smollm2_folder, tmp_path_factory.mktemp("smollm2-serve")) as served:
        yield served
