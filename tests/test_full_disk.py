"""A full disk, for real: a 1 MiB tmpfs. A command whose record is durable succeeds, and the
views of it that could not be written are a warning, never a failure a retry would repeat."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

import stoic
from tests.conftest import log_path, run_cli, run_stoic_process


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a 1 MiB tmpfs needs root (CI runs the suite as root)")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def fill_up(disk: Path) -> Path:
    """Take every free block. Files keep the slack of their last block (the log's next record
    fits in it), but nothing new can be written."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while True:
            try:
                os.write(fd, b"\0" * 4096)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
    finally:
        os.close(fd)
    return filler


def test_a_proposal_recorded_on_a_full_disk_succeeds_and_warns(small_disk: Path) -> None:
    ws_path = small_disk / "ws"
    with stoic.Workspace.init(ws_path) as ws:
        ws.record("execution", "started", "Something before.")  # the log has a block now
    filler = fill_up(small_disk)
    try:
        proposed = run_stoic_process(
            "-w", str(ws_path), "propose", "--title", "Clean up", "--reasoning", "disk full",
            "--", "true",
        )  # fmt: skip
    finally:
        filler.unlink()
    assert proposed.returncode == 0, proposed.stderr
    proposal_id = proposed.stdout.strip()
    assert proposal_id.startswith("PROP-")
    assert "stoic: warning: recorded, but could not write" in proposed.stderr
    assert "No space left on device" in proposed.stderr
    created = [
        record
        for record in map(orjson.loads, log_path(ws_path).read_bytes().splitlines())
        if record["decision_outcome"] == "created"
    ]
    assert [record["proposal_id"] for record in created] == [proposal_id]
    # With room again, the next command catches the views up: nothing to repair.
    assert run_cli("-w", str(ws_path), "audit").exit_code == 0
    assert (ws_path / "queue" / "pending" / f"{proposal_id}.json").is_file()
    filler = fill_up(small_disk)
    try:
        approved = run_stoic_process("-w", str(ws_path), "approve", proposal_id, "--as", "ada")
    finally:
        filler.unlink()
    assert approved.returncode == 0, approved.stderr
    assert "could not write" in approved.stderr
    assert run_cli("-w", str(ws_path), "audit").exit_code == 0
    assert (ws_path / "queue" / "approved" / f"{proposal_id}.json").is_file()


def test_an_escalation_recorded_on_a_full_disk_succeeds_and_warns(small_disk: Path) -> None:
    ws_path = small_disk / "ws"
    with stoic.Workspace.init(ws_path) as ws:
        ws.record("execution", "started", "Something before.")
    filler = fill_up(small_disk)
    try:
        raised = run_stoic_process(
            "-w", str(ws_path), "escalate", "--mode", "ambiguity", "--question", "Which region?",
        )  # fmt: skip
    finally:
        filler.unlink()
    assert raised.returncode == 0, raised.stderr
    assert "ESC-001" in raised.stdout
    assert "could not write escalations/ESC-001.md" in raised.stderr
    assert run_cli("-w", str(ws_path), "audit").exit_code == 0
    assert (ws_path / "escalations" / "ESC-001.md").is_file()
