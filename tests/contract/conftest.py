"""The store each contract test runs against: every backend stoic has (files, for now)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from stoic.services.workspace import Workspace


@pytest.fixture(params=["files"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Workspace]:
    workspace = Workspace.init(tmp_path / "ws")
    try:
        yield workspace
    finally:
        workspace.close()
