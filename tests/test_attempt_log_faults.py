"""An attempt log that cannot be written fails that attempt on record; the run goes on.

Real faults: a file size limit (`RLIMIT_FSIZE`, with SIGXFSZ ignored so a write returns EFBIG),
and, as root, a real full and a real read-only file system mounted where the log goes.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.conftest import STOIC_BIN, log_path, run_cli

LIMIT = 512 * 1024
"""The file size limit the runner gets: far above its records, far below the loud output."""


def _records(ws_path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in log_path(ws_path).read_bytes().splitlines()]


def _ends(ws_path: Path) -> dict[str, dict[str, object]]:
    return {
        str(r["task_id"]): r
        for r in _records(ws_path)
        if r["decision_type"] == "execution" and r["decision_outcome"] != "started"
    }


def _audit_clean(ws_path: Path) -> None:
    result = run_cli("-w", str(ws_path), "audit")
    assert result.exit_code == 0, result.stdout + result.stderr


def _limited() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # inherited across exec: writes get EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


def test_a_file_size_limit_fails_the_attempt_on_record_and_the_run_goes_on(
    tmp_path: Path, ws_path: Path
) -> None:
    (tmp_path / "loud_tasks.py").write_text(
        "import sys\n"
        "def loud():\n"
        "    for _ in range(64):\n"
        "        sys.stdout.write('y' * 32768)\n"
        "        sys.stdout.flush()\n"
    )
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "tasks:\n"
        '  - {id: shell, run: ["head", "-c", "4000000", "/dev/zero"]}\n'
        '  - {id: python, call: "loud_tasks:loud"}\n'
        '  - {id: quiet, run: ["sh", "-c", "echo fine"]}\n'
        '  - {id: after, run: ["sh", "-c", "echo after"], depends_on: [quiet]}\n'
    )
    done = subprocess.run(
        [STOIC_BIN, "-w", str(ws_path), "run", str(plan), "--workers", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_limited,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr  # failed, not an internal error
    ends = _ends(ws_path)
    for task in ("shell", "python"):
        assert ends[task]["decision_outcome"] == "failed"
        inputs = ends[task]["decision_inputs"]
        assert isinstance(inputs, dict)
        assert inputs["failure_kind"] == "error"
        assert "cannot write the attempt log" in str(inputs["message"])
        assert "File too large" in str(inputs["message"])
        details = ends[task]["details"]
        assert isinstance(details, dict) and "File too large" in str(details["log_error"])
    assert ends["quiet"]["decision_outcome"] == "succeeded"
    assert ends["after"]["decision_outcome"] == "succeeded"
    evaluations = [r for r in _records(ws_path) if r["decision_type"] == "recovery_evaluation"]
    assert sorted(str(r["task_id"]) for r in evaluations) == ["python", "shell"]
    assert all(r["decision_outcome"] == "recovery_skipped" for r in evaluations)
    _audit_clean(ws_path)


@contextlib.contextmanager
def _unmounted_after(folder: Path) -> Iterator[None]:
    """Whatever a test mounted below `folder` is unmounted, whatever happened."""
    try:
        yield
    finally:
        with Path("/proc/mounts").open() as mounts:
            points = [line.split()[1] for line in mounts]
        for point in reversed(points):
            if point.startswith(str(folder)):
                subprocess.run(["umount", "-l", point], check=False)  # even if busy


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a file system needs root (CI is root)")
@pytest.mark.parametrize(
    ("options", "error"),
    [("size=64k", "the disk is (almost) full"), ("ro,size=64k", "Read-only file system")],
    ids=["full", "read-only"],
)
def test_a_full_or_read_only_file_system_under_the_log_fails_the_attempt_on_record(
    tmp_path: Path, ws_path: Path, options: str, error: str
) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "tasks:\n"
        "  - id: mount\n"
        '    run: |\n      RUN="$(dirname "$(dirname "$STOIC_RESULT")")";'
        f' mkdir -p "$RUN/tasks/loud" && mount -t tmpfs -o {options} tmpfs "$RUN/tasks/loud"\n'
        "    shell: true\n"
        '  - {id: loud, run: ["head", "-c", "1000000", "/dev/zero"], depends_on: [mount]}\n'
        '  - {id: other, run: ["sh", "-c", "echo fine"], depends_on: [mount]}\n'
    )
    with _unmounted_after(ws_path):
        result = run_cli("-w", str(ws_path), "run", str(plan), "--workers", "1")
        ends = _ends(ws_path)
        if ends["mount"]["decision_outcome"] != "succeeded":
            pytest.skip("tmpfs cannot be mounted here")
        assert result.exit_code == 1, result.stdout + result.stderr
        inputs = ends["loud"]["decision_inputs"]
        assert isinstance(inputs, dict)
        assert inputs["failure_kind"] == "error" and error in str(inputs["message"])
        assert ends["other"]["decision_outcome"] == "succeeded"
    _audit_clean(ws_path)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a file system needs root (CI is root)")
def test_a_workspace_whose_disk_fills_up_still_records_the_attempts_end(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)]).returncode:
        pytest.skip("tmpfs cannot be mounted here")
    with _unmounted_after(disk):
        ws_path = disk / "ws"
        assert run_cli("init", str(ws_path)).exit_code == 0
        plan = tmp_path / "plan.yaml"
        plan.write_text(
            "tasks:\n"
            '  - {id: loud, run: ["head", "-c", "8000000", "/dev/zero"]}\n'
            '  - {id: other, run: ["sh", "-c", "echo fine"], depends_on: [loud]}\n'
            # Silent, so it needs no log: how close to the reserve loud's last write came
            # (it depends on how the pipe was read) cannot decide whether it may run.
            '  - {id: alone, run: ["true"]}\n'
        )
        result = run_cli("-w", str(ws_path), "run", str(plan), "--workers", "1")
        assert result.exit_code == 1, result.stdout + result.stderr
        ends = _ends(ws_path)
        inputs = ends["loud"]["decision_inputs"]
        assert isinstance(inputs, dict)
        assert inputs["failure_kind"] == "error" and "the disk is (almost) full" in str(
            inputs["message"]
        )
        assert ends["alone"]["decision_outcome"] == "succeeded"
        assert "other" not in ends  # blocked by loud, on record
        _audit_clean(ws_path)
