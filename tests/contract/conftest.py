"""Fixtures of the backend contract suite: each test runs once per backend in `BACKENDS`.

`backend` is a fresh `Store`; `reopen` opens another handle on the same store (as a second
writer would); `second_process` starts a real process on it. `store` is the file backend's
`Workspace`, for the services' contract tests that still need its wider API.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from stoic.services.workspace import Workspace
from stoic.store.interface import Store
from tests.contract import backends


@dataclass(frozen=True)
class BackendSpec:
    name: str
    locator: str


@pytest.fixture(params=backends.BACKENDS)
def backend_spec(request: pytest.FixtureRequest, tmp_path: Path) -> BackendSpec:
    name: str = request.param
    return BackendSpec(name, backends.create(name, tmp_path))


@pytest.fixture
def reopen(backend_spec: BackendSpec) -> Iterator[Callable[[], Store]]:
    """Opens further handles on the test's store; each is closed when the test ends."""
    opened: list[Store] = []

    def open_handle() -> Store:
        handle = backends.open_store(backend_spec.name, backend_spec.locator)
        opened.append(handle)
        return handle

    yield open_handle
    for handle in reversed(opened):
        handle.close()


@pytest.fixture
def backend(reopen: Callable[[], Store]) -> Store:
    """A fresh, empty store."""
    return reopen()


@pytest.fixture
def second_process(
    backend_spec: BackendSpec,
) -> Iterator[Callable[[str, str], subprocess.Popen[str]]]:
    """Starts `tests.contract.backends ACTION … ARG` on the test's store; killed at the end."""
    started: list[subprocess.Popen[str]] = []

    def start(action: str, arg: str) -> subprocess.Popen[str]:
        process = backends.start(action, backend_spec.name, backend_spec.locator, arg)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


@pytest.fixture
def store(backend_spec: BackendSpec) -> Iterator[Workspace]:
    """An open `Workspace` as the services take it: the file backend with its whole API, its
    notices delivered."""
    if backend_spec.name != "files":
        pytest.skip("a Workspace is the file backend's handle")
    workspace = Workspace.open(backend_spec.locator)
    try:
        yield workspace
    finally:
        workspace.close()


@pytest.fixture
def reopen_workspace(backend_spec: BackendSpec) -> Iterator[Callable[[], Workspace]]:
    """Opens another `Workspace` on the test's store, as another process would; each is
    closed when the test ends."""
    if backend_spec.name != "files":
        pytest.skip("a Workspace is the file backend's handle")
    opened: list[Workspace] = []

    def open_handle() -> Workspace:
        handle = Workspace.open(backend_spec.locator)
        opened.append(handle)
        return handle

    yield open_handle
    for handle in reversed(opened):
        handle.close()
