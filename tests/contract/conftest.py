"""The backend contract suite: every test runs against each store backend (files, for now)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from stoic.services.workspace import Workspace


@pytest.fixture(params=["files"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Workspace]:
    del request
    workspace = Workspace.init(tmp_path / "ws")
    yield workspace
    workspace.close()
