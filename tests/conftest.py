"""Shared fixtures: real workspaces in temporary folders and the CLI run in-process."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import stoic
from stoic.cli.app import main

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
