"""The decision log on disk: durability, group commit, locking, torn tails, projections."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import orjson
import pytest

import stoic
from stoic.core.audit import ViolationCode
from stoic.exceptions import LogCorrupt
from tests.conftest import fill, log_path, run_cli


def test_record_is_written_and_fsynced_before_it_returns(
    ws: stoic.Workspace, ws_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real_write, real_fsync = os.write, os.fsync

    def write(fd: int, data: bytes) -> int:
        calls.append("write")
        return real_write(fd, data)

    def fsync(fd: int) -> None:
        calls.append("fsync")
        real_fsync(fd)

    monkeypatch.setattr(os, "write", write)
    monkeypatch.setattr(os, "fsync", fsync)
    record = ws.record("execution", "started", "Task a started.", run_id="r", task_id="a")
    assert calls == ["write", "fsync"]
    assert orjson.loads(log_path(ws_path).read_bytes())["hash"] == record.hash


def test_group_commit_costs_one_write_and_one_fsync(
    ws: stoic.Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real_write, real_fsync = os.write, os.fsync
    monkeypatch.setattr(os, "write", lambda fd, d: calls.append("write") or real_write(fd, d))
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append("fsync") or real_fsync(fd))
    records = fill(ws, 100)
    assert calls == ["write", "fsync"]
    assert [r.seq for r in records] == list(range(1, 101))
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(records))


def test_records_stream_with_filters(ws: stoic.Workspace) -> None:
    fill(ws, 6, run_id="run-a")
    fill(ws, 4, run_id="run-b")
    ws.record("audit", "passed", "Audit clean.")
    assert [r.seq for r in ws.records(run_id="run-b")] == [7, 8, 9, 10]
    assert [r.seq for r in ws.records(since_seq=8)] == [9, 10, 11]
    assert [r.seq for r in ws.records(decision_type="audit")] == [11]
    assert [r.seq for r in ws.tail(2, run_id="run-a")] == [5, 6]
    assert [r.seq for r in ws.tail(3, failures=True)] == [4, 7, 10]


def test_chain_continues_across_reopen(ws_path: Path) -> None:
    with stoic.Workspace.open(ws_path) as first:
        fill(first, 3)
    with stoic.Workspace.open(ws_path) as second:
        record = second.record("audit", "passed", "Audit clean.")
        assert record.seq == 4
        assert second.audit().ok


# -- torn tails -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "torn",
    [b'{"actor":"system:runner","causal_ro', b"\x00\x00\x00\x00\n"],
    ids=["no-newline", "garbage-line"],
)
def test_torn_last_line_is_detected_refused_and_repaired(ws_path: Path, torn: bytes) -> None:
    with stoic.Workspace.open(ws_path) as ws:
        fill(ws, 5)
    with log_path(ws_path).open("ab") as handle:
        handle.write(torn)

    with stoic.Workspace.open(ws_path) as ws:
        assert ws.torn_tail is not None and ws.torn_tail.length == len(torn)
        with pytest.raises(stoic.LogTornTail, match=r"stoic audit --repair"):
            ws.record("audit", "passed", "x")
        report = ws.audit()
        assert [v.code for v in report.violations] == [ViolationCode.TORN_TAIL]
        assert report.violations[0].line == 6

    result = run_cli("--workspace", str(ws_path), "audit", "--repair")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert f"removed {len(torn)} bytes" in result.stdout
    with stoic.Workspace.open(ws_path) as ws:
        repair = list(ws.records(decision_type="audit"))
        assert len(repair) == 1 and repair[0].decision_outcome == "repaired"
        assert repair[0].details["bytes_removed"] == len(torn)
        assert repair[0].details["after_seq"] == 5 and repair[0].seq == 6
        assert ws.audit().ok
        assert ws.record("audit", "passed", "Clean again.").seq == 7


def test_log_and_status_warn_about_a_torn_tail(ws_path: Path) -> None:
    with stoic.Workspace.open(ws_path) as ws:
        fill(ws, 2)
    with log_path(ws_path).open("ab") as handle:
        handle.write(b'{"seq":')
    result = run_cli("--workspace", str(ws_path), "log")
    assert result.exit_code == 0
    assert "torn last line" in result.stderr and "stoic audit --repair" in result.stderr
    assert "Task t1 finished." in result.stdout


def test_bad_line_before_a_torn_tail_is_not_repaired(ws_path: Path) -> None:
    with stoic.Workspace.open(ws_path) as ws:
        fill(ws, 3)
    path = log_path(ws_path)
    lines = path.read_bytes().splitlines(keepends=True)
    lines[-1] = b"not json\n"
    path.write_bytes(b"".join(lines) + b'{"seq":4')
    with stoic.Workspace.open(ws_path, catch_up=False) as ws:
        with pytest.raises(stoic.LogCorrupt, match="not a valid record"):
            ws.record("audit", "passed", "x")
        report = ws.audit(repair=True)
    assert report.repaired is None
    assert {v.code for v in report.violations} >= {ViolationCode.BAD_LINE, ViolationCode.TORN_TAIL}
    assert path.read_bytes().endswith(b'not json\n{"seq":4')


# -- concurrency ------------------------------------------------------------------------------

_APPENDER = textwrap.dedent(
    """
    import sys, stoic
    ws = stoic.Workspace.open(sys.argv[1])
    sys.stdin.read()  # start together
    for i in range(int(sys.argv[2])):
        ws.record("execution", "succeeded", f"writer {sys.argv[3]} record {i}",
                  run_id=f"w{sys.argv[3]}")
    ws.close()
    """
)


def test_four_processes_appending_at_once_keep_a_gapless_valid_chain(ws_path: Path) -> None:
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", _APPENDER, str(ws_path), "500", str(n)],
            stdin=subprocess.PIPE,
        )
        for n in range(4)
    ]
    for writer in writers:
        assert writer.stdin is not None
        writer.stdin.close()
    assert [writer.wait(timeout=120) for writer in writers] == [0, 0, 0, 0]
    with stoic.Workspace.open(ws_path) as ws:
        seqs = [r.seq for r in ws.records()]
        assert seqs == list(range(1, 2001))
        for n in range(4):
            mine = [r.decision_reason for r in ws.records(run_id=f"w{n}")]
            assert mine == [f"writer {n} record {i}" for i in range(500)]
        assert ws.audit().ok
        assert ws.status().records == 2000


def test_readers_never_see_half_a_record(ws: stoic.Workspace, ws_path: Path) -> None:
    stop = threading.Event()
    seen: list[int] = []
    errors: list[BaseException] = []

    def read() -> None:
        reader = stoic.Workspace.open(ws_path, catch_up=False)
        try:
            while not stop.is_set():
                seen.append(sum(1 for _ in reader.records()))
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=read)
    thread.start()
    for _ in range(40):
        ws.record_many(
            {"type": "execution", "outcome": "succeeded", "reason": "x" * 5000} for _ in range(50)
        )
    stop.set()
    thread.join()
    assert not errors
    assert seen and seen == sorted(seen) and max(seen) <= 2000


# -- writes that fail -------------------------------------------------------------------------


def _read_only_run(root: Path, code: str) -> subprocess.CompletedProcess[str]:
    """Run Python code against `root` with the workspace made read-only for that process."""
    script = [sys.executable, "-c", code, str(root)]
    if os.geteuid() == 0:
        # Root ignores permission bits: give the process a read-only view of the folder.
        mount = f"mount --bind {root} {root} && mount -o remount,ro,bind {root} {root} && "
        command = ["unshare", "-m", "sh", "-c", mount + " ".join(f"'{a}'" for a in script)]
    else:
        for path in [root, *root.rglob("*")]:
            path.chmod(path.stat().st_mode & ~0o222)
        command = script
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    finally:
        if os.geteuid() != 0:
            for path in [root, *root.rglob("*")]:
                path.chmod(path.stat().st_mode | 0o200)


_TRY_RECORD = textwrap.dedent(
    """
    import sys, stoic
    ws = stoic.Workspace.open(sys.argv[1])
    try:
        ws.record("audit", "passed", "x")
    except stoic.WorkspaceNotWritable as exc:
        print("REFUSED", exc)
    """
)


def test_read_only_workspace_gives_a_clear_error_and_no_partial_record(ws_path: Path) -> None:
    if os.geteuid() == 0 and subprocess.run(["unshare", "-m", "true"], check=False).returncode:
        pytest.skip("running as root without mount namespaces: cannot make a read-only view")
    with stoic.Workspace.open(ws_path) as ws:
        fill(ws, 3)
    before = log_path(ws_path).read_bytes()
    result = _read_only_run(ws_path, _TRY_RECORD)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("REFUSED cannot write")
    assert "nothing was recorded" in result.stdout
    assert log_path(ws_path).read_bytes() == before
    # Reading still works on a read-only workspace.
    listed = _read_only_run(
        ws_path,
        "import sys, stoic; print(len(list(stoic.Workspace.open(sys.argv[1]).records())))",
    )
    assert listed.stdout.strip() == "3", listed.stderr


_FULL_DISK = textwrap.dedent(
    """
    import resource, signal, sys, stoic
    ws = stoic.Workspace.open(sys.argv[1])
    size = ws.log.size()
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    # The disk "fills up" 300 bytes into this batch: the write stops part-way.
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 300, size + 300))
    try:
        ws.record_many({"type": "audit", "outcome": "passed", "reason": "r" * 200}
                       for _ in range(5))
    except stoic.WorkspaceNotWritable as exc:
        print("REFUSED", exc)
    """
)


def test_full_disk_mid_write_leaves_no_partial_record(ws_path: Path) -> None:
    with stoic.Workspace.open(ws_path) as ws:
        fill(ws, 3)
    before = log_path(ws_path).read_bytes()
    result = subprocess.run(
        [sys.executable, "-c", _FULL_DISK, str(ws_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("REFUSED cannot write"), result.stdout
    assert "nothing was recorded" in result.stdout
    assert log_path(ws_path).read_bytes() == before
    with stoic.Workspace.open(ws_path) as ws:
        assert ws.torn_tail is None
        assert ws.record("audit", "passed", "Space again.").seq == 4
        assert ws.audit().ok


# -- projections ------------------------------------------------------------------------------


def test_projection_is_caught_up_by_replaying_only_the_tail(ws_path: Path) -> None:
    with stoic.Workspace.open(ws_path) as ws:
        fill(ws, 3)
    stamp = orjson.loads((ws_path / "manifests" / "workspace_status.json").read_bytes())
    assert stamp["last_seq"] == 3
    with stoic.Workspace.open(ws_path, catch_up=False) as ws:
        fill(ws, 2)
        ws._appended = False  # leave the projection behind the log
    # Damage record 1 without changing its length: a full replay would trip over it.
    path = log_path(ws_path)
    data = path.read_bytes()
    path.write_bytes(data.replace(b'"seq":1}', b'"seq":X}', 1))
    with stoic.Workspace.open(ws_path) as ws:
        status = ws.status()
    assert status.records == 5 and status.last_seq == 5
    stamp = orjson.loads((ws_path / "manifests" / "workspace_status.json").read_bytes())
    assert stamp["last_seq"] == 5


def test_projection_that_disagrees_with_replay_fails_the_audit(ws_path: Path) -> None:
    with stoic.Workspace.open(ws_path) as ws:
        fill(ws, 6)
    path = ws_path / "manifests" / "workspace_status.json"
    stamp = orjson.loads(path.read_bytes())
    stamp["state"]["by_type"]["execution"]["succeeded"] += 1
    path.write_bytes(orjson.dumps(stamp))
    result = run_cli("--workspace", str(ws_path), "audit")
    assert result.exit_code == 1
    assert "projection_mismatch" in result.stdout
    assert "by_type.execution.succeeded" in result.stdout
    assert "(expected 4, found 5)" in result.stdout
    repaired = run_cli("--workspace", str(ws_path), "audit", "--repair")
    assert repaired.exit_code == 0, repaired.stdout
    assert run_cli("--workspace", str(ws_path), "audit").exit_code == 0


def test_missing_projection_is_named_and_never_silently_recreated(ws_path: Path) -> None:
    with stoic.Workspace.open(ws_path) as ws:
        fill(ws, 2)
    path = ws_path / "manifests" / "workspace_status.json"
    path.unlink()
    status = run_cli("--workspace", str(ws_path), "status")
    assert status.exit_code == 1
    assert "workspace_status.json is missing" in status.stderr
    assert "stoic audit --repair" in status.stderr
    assert not path.exists()
    audit = run_cli("--workspace", str(ws_path), "audit")
    assert audit.exit_code == 1 and "projection_missing" in audit.stdout
    assert run_cli("--workspace", str(ws_path), "audit", "--repair").exit_code == 0
    assert path.exists()


def test_filters_match_fields_not_text_that_merely_mentions_them(ws: stoic.Workspace) -> None:
    ws.record("execution", "succeeded", "Ran.", run_id="run-a")
    ws.record(
        "execution",
        "succeeded",
        "Ran again.",
        run_id="run-b",
        details={"previous": "run-a", "kind": "audit"},
    )
    ws.record("audit", "passed", "Clean.")
    assert [r.seq for r in ws.records(run_id="run-a")] == [1]
    assert [r.seq for r in ws.tail(5, run_id="run-a")] == [1]
    assert [r.seq for r in ws.records(decision_type="audit")] == [3]
    assert [r.seq for r in ws.tail(5, decision_type="audit")] == [3]
    assert ws.tail(0) == []


# -- seq cursors ------------------------------------------------------------------------------


def test_a_seq_cursor_finds_its_place_without_reading_from_the_top(ws_path: Path) -> None:
    with stoic.Workspace.open(ws_path) as ws:
        fill(ws, 200)
    # Damage record 2 without changing its length: a read from the top would trip over it.
    path = log_path(ws_path)
    data = path.read_bytes()
    path.write_bytes(data.replace(b'"seq":2}', b'"seq":X}', 1))
    with stoic.Workspace.open(ws_path, catch_up=False) as ws:
        assert [r.seq for r in ws.read(after_seq=190)] == list(range(191, 201))
        assert [r.seq for r in ws.records(since_seq=195, run_id="run-1")] == list(range(196, 201))
        with pytest.raises(LogCorrupt, match="not a valid record"):
            list(ws.read())


def test_a_cursor_read_that_meets_a_damaged_line_on_its_way_reports_it(ws_path: Path) -> None:
    with stoic.Workspace.open(ws_path) as ws:
        fill(ws, 20)
    path = log_path(ws_path)
    path.write_bytes(path.read_bytes().replace(b'"seq":1}', b'"seq":X}', 1))
    with (
        stoic.Workspace.open(ws_path, catch_up=False) as ws,
        pytest.raises(LogCorrupt, match="not a valid record"),
    ):
        list(ws.read(after_seq=10))


def test_the_record_after_any_seq_is_found_whatever_the_line_lengths(ws: stoic.Workspace) -> None:
    sizes = [1, 70_000, 3, 200_000, 10, 10, 65_536, 5]
    ws.record_many(
        {
            "decision_type": "policy_check",
            "decision_outcome": "passed",
            "decision_reason": "x" * size,
        }
        for size in sizes
    )
    starts = [0]
    for line in log_path(ws.root).read_bytes().splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    end = starts[-1]
    assert [ws.log.offset_after(seq, end) for seq in range(len(sizes) + 2)] == [
        0,
        *starts[1:],
        end,
    ]
    for seq in range(len(sizes) + 1):
        assert [r.seq for r in ws.read(after_seq=seq)] == list(range(seq + 1, len(sizes) + 1))
