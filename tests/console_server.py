"""A real console to test against: the app of `stoic serve` on uvicorn, 127.0.0.1 and a free
port, in a thread of the test process, so a test can open sessions on it (the login page is
not what these tests are about) and give it a clock."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import uvicorn

import stoic
from stoic.server import auth
from stoic.server.app import ServerConfig, create_app
from stoic.server.console import Console
from stoic.server.sessions import Person, Role, Session
from stoic.services import users

__all__ = ["Clock", "RunningConsole", "running_console"]


class Clock:
    """A clock a test moves by hand."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class RunningConsole:
    url: str
    app: object
    console: Console
    workspace: Path
    clients: list[httpx.Client] = field(default_factory=list)

    def login(self, name: str, role: Role = Role.REVIEWER) -> tuple[httpx.Client, Session]:
        """A client whose cookie is a live session of `name`, a user on record with `role`
        (added here when the log has no such user)."""
        with stoic.Workspace.open(self.workspace) as workspace:
            if users.backed(workspace, name) is None:
                users.add(workspace, name, role=role.value, actor="human:admin")
        session: Session = self.app.state.sessions.open(Person(name, role))  # type: ignore[attr-defined]
        client = httpx.Client(base_url=self.url, cookies={auth.COOKIE: session.token}, timeout=30)
        self.clients.append(client)
        return client, session


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def running_console(
    workspace: Path, clock: Callable[[], float] | None = None
) -> Iterator[RunningConsole]:
    app = create_app(ServerConfig(workspace=workspace))
    if clock is not None:
        app.state.console.clock = clock
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "the server ended before it started"
        assert time.monotonic() < deadline, "the server did not start in 30 s"
        time.sleep(0.02)
    running = RunningConsole(f"http://127.0.0.1:{port}", app, app.state.console, workspace)
    try:
        yield running
    finally:
        for client in running.clients:
            client.close()
        server.should_exit = True
        thread.join(timeout=30)
        running.console.close()
