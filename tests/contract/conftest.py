"""Fixtures of the backend contract suite: each test runs once per backend in `BACKENDS`.

`backend` is a fresh `Store`; `reopen` opens another handle on the same store (as a second
writer would); `second_process` starts a real process on it. `store` is the file backend's
`Workspace`, for the services' contract tests that still need its wider API: a test that uses
it runs on the file backend only, and is not collected for the others at all (CI refuses
skips).
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


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Each test once per backend, or once on files when it takes a `Workspace`."""
    if "backend_name" in metafunc.fixturenames:
        files_only = {"store", "reopen_workspace"} & set(metafunc.fixturenames)
        names = backends.FILES_ONLY if files_only else backends.BACKENDS
        metafunc.parametrize("backend_name", names)


@pytest.fixture
def backend_spec(backend_name: str, request: pytest.FixtureRequest, tmp_path: Path) -> BackendSpec:
    new_database = None
    if backend_name == "postgres":
        new_database = request.getfixturevalue("postgres").new_database
    return BackendSpec(
        backend_name, backends.create(backend_name, tmp_path, new_database=new_database)
    )


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
    assert backend_spec.name == "files", "a Workspace is the file backend's handle"
    workspace = Workspace.open(backend_spec.locator)
    try:
        yield workspace
    finally:
        workspace.close()


@pytest.fixture
def reopen_workspace(backend_spec: BackendSpec) -> Iterator[Callable[[], Workspace]]:
    """Opens another `Workspace` on the test's store, as another process would; each is
    closed when the test ends."""
    assert backend_spec.name == "files", "a Workspace is the file backend's handle"
    opened: list[Workspace] = []

    def open_handle() -> Workspace:
        handle = Workspace.open(backend_spec.locator)
        opened.append(handle)
        return handle

    yield open_handle
    for handle in reversed(opened):
        handle.close()
