"""Shared fixtures: real workspaces in temporary folders and the CLI run in-process."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

import stoic
from stoic.cli.app import main
from tests.postgres import EmbeddedPostgres
from tests.postgres import started as postgres_started
from tests.postgres import stopped as postgres_stopped

# No timing thresholds in the suite, Hypothesis's per-example deadline included: CI machines
# are noisy, and a slow example is not a failing one.
settings.register_profile("stoic", deadline=None)
settings.load_profile("stoic")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
STOIC_BIN = str(Path(sys.executable).with_name("stoic"))


@dataclass(frozen=True)
class CliResult:
    exit_code: int
    stdout: str
    stderr: str
    stdout_bytes: bytes


def run_cli(*args: str, env: dict[str, str] | None = None) -> CliResult:
    """Run `stoic ARGS` in this process, capturing what it prints."""
    out_bytes, err_bytes = io.BytesIO(), io.BytesIO()
    out = io.TextIOWrapper(out_bytes, encoding="utf-8", write_through=True)
    err = io.TextIOWrapper(err_bytes, encoding="utf-8", write_through=True)
    saved_env = dict(os.environ)
    saved = sys.stdout, sys.stderr
    try:
        if env is not None:
            os.environ.update(env)
        sys.stdout, sys.stderr = out, err
        code = main(list(args))
    finally:
        sys.stdout, sys.stderr = saved
        os.environ.clear()
        os.environ.update(saved_env)
    raw = out_bytes.getvalue()
    return CliResult(code, raw.decode(), err_bytes.getvalue().decode(), raw)


def run_stoic_process(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the installed `stoic` console script as a real subprocess."""
    return subprocess.run(
        [STOIC_BIN, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository folder an agent works in (the gate's tests)."""
    path = tmp_path / "repo"
    path.mkdir()
    return path


@pytest.fixture
def ws_path(tmp_path: Path) -> Path:
    path = tmp_path / "ws"
    stoic.Workspace.init(path).close()
    return path


@pytest.fixture
def ws(ws_path: Path) -> Iterator[stoic.Workspace]:
    workspace = stoic.Workspace.open(ws_path)
    yield workspace
    workspace.close()


def log_path(root: Path) -> Path:
    return root / "logs" / "decision_log.ndjson"


def forge(ws_path: Path, *decisions: stoic.Decision | Mapping[str, Any]) -> None:
    """Append `decisions` to the log as an earlier stoic or a hand with an editor could have:
    sealed into the chain, past every check stoic's writers make (records they refuse)."""
    from stoic.core.records import seal
    from stoic.store.log import utc_timestamp

    with stoic.Workspace.open(ws_path) as workspace:
        head = workspace.head()
    seq, prev_hash, lines = head.seq, head.hash, []
    for item in decisions:
        decision = item if isinstance(item, stoic.Decision) else stoic.Decision.from_mapping(item)
        seq += 1
        record, line = seal(
            decision,
            seq=seq,
            prev_hash=prev_hash,
            decision_id=os.urandom(16).hex(),
            decided_at=utc_timestamp(),
        )
        prev_hash = record.hash
        lines.append(line)
    with log_path(ws_path).open("ab") as log:
        log.write(b"".join(lines))


def fill(workspace: stoic.Workspace, count: int, *, run_id: str = "run-1") -> list[stoic.Record]:
    """Append `count` ordinary execution records in one group commit.

    They name a run but no task, so the behavioural invariants (which follow tasks) leave them
    alone; the tests that use them are about the chain and the projections.
    """
    return workspace.record_many(
        {
            "decision_type": "execution",
            "decision_outcome": "succeeded" if i % 3 else "failed",
            "reason": f"Task t{i} finished.",
            "run_id": run_id,
            "inputs": {"i": i},
        }
        for i in range(count)
    )


_KILL_AT = """
import os, signal, sys
import stoic
root, target, nth, needle, statement = sys.argv[1:6]
calls = 0
def hook(frame, event, arg):
    global calls
    if event != "call" or frame.f_code.co_name != target:
        return
    first = frame.f_locals.get(frame.f_code.co_varnames[0]) if frame.f_code.co_argcount else None
    if needle and needle not in str(first):
        return
    calls += 1
    if calls == int(nth):
        os.kill(os.getpid(), signal.SIGKILL)
ws = stoic.Workspace.open(root)
sys.setprofile(hook)
exec(statement)
"""


def kill_during(
    ws_path: Path, statement: str, function: str, *, nth: int = 1, first_arg: str = ""
) -> None:
    """Run `statement` (Python, with `ws` the open workspace) in a process that is killed (-9)
    as it enters `function` for the `nth` time — counting only calls whose first argument
    contains `first_arg` — and check that it was."""
    done = subprocess.run(
        [sys.executable, "-c", _KILL_AT, str(ws_path), function, str(nth), first_arg, statement],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """In CI (`CI=true`) a skipped test fails: a component it needs (the plan corpus, a mount
    namespace) is missing there, and a green run must not hide it — except a test marked
    `optional_component`, whose tool no package registry installs (Claude Code's own CLI)."""
    report = yield
    optional = item.get_closest_marker("optional_component") is not None
    if (
        os.environ.get("CI") == "true"
        and report.skipped
        and not hasattr(report, "wasxfail")
        and not optional
    ):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which must have every component: {reason}"
    return report


@pytest.fixture(scope="session")
def postgres() -> Iterator[EmbeddedPostgres]:
    """One PostgreSQL server for the session, started the first time a test asks for it."""
    server = postgres_started()
    try:
        yield server
    finally:
        postgres_stopped(server)


@pytest.fixture
def db(postgres: EmbeddedPostgres) -> str:
    """A fresh database of the session's server, with stoic's schema."""
    from stoic.store.pg_store import PostgresStore  # psycopg only for the tests that use it

    url = postgres.new_database()
    PostgresStore.migrate(url)
    return url
