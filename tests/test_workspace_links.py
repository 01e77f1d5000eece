"""No write or read follows a link planted in the workspace (DESIGN §3): real symlinks, real runs.

Each link points outside the workspace, at a file or folder the test watches: it must be left
exactly as it was, and nothing it holds may reach the decision log.
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

import stoic
from stoic.exceptions import WorkspaceError, WorkspaceNotWritable
from stoic.store.atomic import append_durably, atomic_write
from stoic.store.confined import LinkRefused, open_confined
from tests.conftest import log_path, run_cli, run_stoic_process

SECRET = b'{"secret": "from outside the workspace"}'


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "victim").write_bytes(SECRET)
    return folder


def _untouched(outside: Path) -> None:
    assert sorted(p.name for p in outside.iterdir()) == ["victim"]
    assert (outside / "victim").read_bytes() == SECRET


def _records(ws_path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in log_path(ws_path).read_bytes().splitlines()]


def _end_of(ws_path: Path, task: str) -> dict[str, object]:
    (end,) = [
        r
        for r in _records(ws_path)
        if r["decision_type"] == "execution"
        and r["task_id"] == task
        and r["decision_outcome"] != "started"
    ]
    return end


def _audit_clean(ws_path: Path) -> None:
    result = run_cli("-w", str(ws_path), "audit")
    assert result.exit_code == 0, result.stdout + result.stderr


# -- the mechanism ------------------------------------------------------------------------------


def test_a_link_in_place_of_a_folder_is_refused_for_writes_and_reads(
    tmp_path: Path, outside: Path
) -> None:
    root = tmp_path / "root"
    (root / "runs").mkdir(parents=True)
    (root / "runs" / "tasks").symlink_to(outside)
    target = root / "runs" / "tasks" / "victim"
    with pytest.raises(WorkspaceNotWritable, match="is a link; stoic never follows a link"):
        atomic_write(target, b"overwritten", root=root)
    with pytest.raises(WorkspaceNotWritable, match="is a link"):
        append_durably(target, b"appended", root=root)
    with pytest.raises(LinkRefused):
        open_confined(root, target, os.O_RDONLY)
    with pytest.raises(LinkRefused, match="is a link"):
        open_confined(root, root / "runs" / "tasks" / "new", os.O_WRONLY | os.O_CREAT)
    _untouched(outside)


def test_atomic_write_replaces_a_link_at_its_file_and_never_writes_through_one(
    tmp_path: Path, outside: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "state.json").symlink_to(outside / "victim")
    # a link planted where the temp file goes (this process and thread's name for it)
    (root / f".state.json.{os.getpid()}.{__import__('threading').get_native_id()}.tmp").symlink_to(
        outside / "victim"
    )
    atomic_write(root / "state.json", b"new", root=root)
    assert not (root / "state.json").is_symlink()
    assert (root / "state.json").read_bytes() == b"new"
    assert sorted(p.name for p in root.iterdir()) == ["state.json"]
    _untouched(outside)


def test_a_file_in_place_of_a_folder_and_a_path_leaving_the_root_are_refused(
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "tasks").write_text("a file")
    with pytest.raises(LinkRefused, match="is not a folder"):
        open_confined(root, root / "tasks" / "t" / "a.log", os.O_WRONLY | os.O_CREAT)
    with pytest.raises(LinkRefused, match="is not inside"):
        open_confined(root, root / ".." / "escape", os.O_WRONLY | os.O_CREAT)
    assert not (tmp_path / "escape").exists()


# -- the files of a run ---------------------------------------------------------------------------


def _plan(tmp_path: Path, plant: str) -> Path:
    """Task `plant` changes the run's folder (found from $STOIC_RESULT) before `b` runs; `c`
    ran before it (were they run side by side, `c` could start after the planting)."""
    path = tmp_path / "plan.yaml"
    path.write_text(
        "tasks:\n"
        "  - id: c\n"
        '    run: ["sh", "-c", "echo output of c"]\n'
        "  - id: plant\n"
        '    run: |\n      RUN="$(dirname "$(dirname "$STOIC_RESULT")")"; ' + plant + "\n"
        "    shell: true\n"
        "    depends_on: [c]\n"
        "  - id: b\n"
        '    run: ["sh", "-c", "echo output of b"]\n'
        "    depends_on: [plant]\n"
    )
    return path


@pytest.mark.parametrize(("how", "error"), [("-s", "is a link"), ("", "is a hard link")])
def test_a_link_at_a_result_file_never_brings_an_outside_file_into_the_log(
    tmp_path: Path, ws_path: Path, outside: Path, how: str, error: str
) -> None:
    plan = _plan(tmp_path, f'ln {how} "{outside / "victim"}" "$RUN/results/b.attempt-1.json"')
    result = run_cli("-w", str(ws_path), "run", str(plan))
    assert result.exit_code == 0, result.stdout + result.stderr
    end = _end_of(ws_path, "b")
    assert end["decision_outcome"] == "succeeded"  # a result file is optional: the exit decides
    details = end["details"]
    assert isinstance(details, dict)
    assert "result" not in details
    assert error in str(details["result_file_error"])
    assert b"secret" not in log_path(ws_path).read_bytes()
    _untouched(outside)
    _audit_clean(ws_path)


def test_a_results_folder_swapped_for_a_link_mid_run_is_not_read_through(
    tmp_path: Path, ws_path: Path, outside: Path
) -> None:
    """The runner holds the results folder it checked; a link put in its place later leads
    nowhere: b's result file planted outside is never read into the log."""
    (outside / "b.attempt-1.json").write_text('{"stolen": true}')
    plan = _plan(
        tmp_path, f'mv "$RUN/results" "$RUN/results.moved" && ln -s "{outside}" "$RUN/results"'
    )
    result = run_cli("-w", str(ws_path), "run", str(plan))
    assert result.exit_code == 0, result.stdout + result.stderr
    details = _end_of(ws_path, "b")["details"]
    assert isinstance(details, dict) and "result" not in details
    assert b"stolen" not in log_path(ws_path).read_bytes()


@pytest.mark.parametrize(
    "plant",
    [
        'mkdir -p "$RUN/tasks/b" && ln -s "{victim}" "$RUN/tasks/b/attempt-1.log"',
        'mkdir -p "$RUN/tasks/b" && ln "{victim}" "$RUN/tasks/b/attempt-1.log"',
        'mkdir -p "$RUN/tasks" && ln -s "{outside}" "$RUN/tasks/b"',
        'rm -rf "$RUN/tasks" && ln -s "{outside}" "$RUN/tasks"',
        'mkdir -p "$RUN/tasks" && echo planted > "$RUN/tasks/b"',
    ],
    ids=[
        "link-at-log",
        "hard-link-at-log",
        "link-at-task-folder",
        "link-at-tasks",
        "file-at-task-folder",
    ],
)
def test_an_attempt_log_never_goes_through_what_was_planted_and_the_run_goes_on(
    tmp_path: Path, ws_path: Path, outside: Path, plant: str
) -> None:
    command = plant.format(victim=outside / "victim", outside=outside)
    result = run_cli("-w", str(ws_path), "run", str(_plan(tmp_path, command)))
    assert result.exit_code == 1, result.stdout + result.stderr  # b failed, on record
    end = _end_of(ws_path, "b")
    assert end["decision_outcome"] == "failed"
    inputs = end["decision_inputs"]
    assert isinstance(inputs, dict)
    assert inputs["failure_kind"] == "error"
    assert "cannot write the attempt log" in str(inputs["message"])
    assert _end_of(ws_path, "c")["decision_outcome"] == "succeeded"
    (evaluation,) = [r for r in _records(ws_path) if r["decision_type"] == "recovery_evaluation"]
    assert evaluation["task_id"] == "b"
    _untouched(outside)
    _audit_clean(ws_path)


def test_a_link_at_the_execution_log_is_refused_and_its_target_untouched(
    tmp_path: Path, ws_path: Path, outside: Path
) -> None:
    execution_log = ws_path / "logs" / "execution_log.md"
    execution_log.unlink()
    execution_log.symlink_to(outside / "victim")
    plan = tmp_path / "plan.yaml"
    plan.write_text('tasks:\n  - {id: a, run: ["true"]}\n')
    result = run_cli("-w", str(ws_path), "run", str(plan))
    # The attempt's records are durable: the run stands, and the view it could not write
    # (never through the link) is a warning and an audit failure, not an error.
    assert result.exit_code == 0
    assert result.stderr.startswith("stoic: warning: recorded, but could not write")
    assert "is a link" in result.stderr and len(result.stderr.splitlines()) == 1
    _untouched(outside)
    assert run_cli("-w", str(ws_path), "audit").exit_code == 1
    _untouched(outside)


# -- the workspace's other appended files ----------------------------------------------------------


def test_a_link_at_the_calibration_log_is_refused(ws_path: Path, outside: Path) -> None:
    (ws_path / "calibration_log.md").unlink(missing_ok=True)
    (ws_path / "calibration_log.md").symlink_to(outside / "victim")
    result = run_cli("-w", str(ws_path), "calibrate", "a note")
    assert result.exit_code == 0  # the note is on record; the view it lags is a warning
    assert result.stderr.startswith("stoic: warning: recorded, but could not write")
    assert "is a link" in result.stderr and len(result.stderr.splitlines()) == 1
    _untouched(outside)


def test_a_file_notifier_does_not_write_through_a_link(ws_path: Path, outside: Path) -> None:
    settings = ws_path / "stoic.toml"
    settings.write_text(
        settings.read_text()
        + '\n[[notifiers]]\nkind = "file"\npath = "notices/out.ndjson"\nevents = ["paused"]\n'
    )
    (ws_path / "notices").symlink_to(outside)
    result = run_cli("-w", str(ws_path), "stop", "--reason", "testing")
    assert result.exit_code == 0, result.stderr
    failed = [
        r
        for r in _records(ws_path)
        if r["decision_type"] == "notification" and r["decision_outcome"] == "failed"
    ]
    assert len(failed) == 1 and "is a link" in str(failed[0]["details"])
    _untouched(outside)


@pytest.mark.parametrize("where", ["log", "folder"])
def test_a_decision_log_behind_a_link_is_neither_appended_to_nor_read(
    tmp_path: Path, ws_path: Path, where: str
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    logs = ws_path / "logs"
    if where == "log":
        (logs / "decision_log.ndjson").rename(elsewhere / "decision_log.ndjson")
        (logs / "decision_log.ndjson").symlink_to(elsewhere / "decision_log.ndjson")
    else:
        for item in logs.iterdir():
            item.rename(elsewhere / item.name)
        logs.rmdir()
        logs.symlink_to(elsewhere)
    before = {p.name: p.read_bytes() for p in elsewhere.iterdir()}
    with pytest.raises(WorkspaceError, match="is a link"):
        workspace = stoic.Workspace.open(ws_path)
        try:
            workspace.record("red_flag", "noted", "Calibration note.", source="human")
        finally:
            workspace.close()
    assert {p.name: p.read_bytes() for p in elsewhere.iterdir()} == before


def test_a_link_at_runs_makes_no_run_folder_outside(
    tmp_path: Path, ws_path: Path, outside: Path
) -> None:
    (ws_path / "runs").rmdir()
    (ws_path / "runs").symlink_to(outside)
    plan = tmp_path / "plan.yaml"
    plan.write_text('tasks:\n  - {id: a, run: ["true"]}\n')
    result = run_cli("-w", str(ws_path), "run", str(plan))
    assert result.exit_code == 1
    assert "is a link" in result.stderr and len(result.stderr.splitlines()) == 1
    _untouched(outside)


def test_a_link_at_the_next_cycle_notes_is_not_copied_in(ws_path: Path, outside: Path) -> None:
    (ws_path / "incidents" / "next-cycle.md").symlink_to(outside / "victim")
    result = run_cli(
        "-w", str(ws_path), "incident", "report", "slow search", "--track", "next-cycle"
    )
    assert result.exit_code == 1
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("stoic: error")]
    assert "is a link" in error
    _untouched(outside)
    copied = [
        p
        for p in ws_path.rglob("*")
        if p.is_file() and not p.is_symlink() and SECRET in p.read_bytes()
    ]
    assert copied == []


def test_a_fifo_planted_for_stoic_to_read_never_hangs_the_runner(
    tmp_path: Path, ws_path: Path
) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "tasks:\n"
        "  - id: b\n"
        '    run: |\n      RUN="$(dirname "$(dirname "$STOIC_RESULT")")"; echo out;'
        ' mkfifo "$STOIC_RESULT"; rm "$RUN/tasks/b/attempt-1.log";'
        ' mkfifo "$RUN/tasks/b/attempt-1.log"; exit 3\n'
        "    shell: true\n"
        '  - {id: c, run: ["sh", "-c", "echo fine"]}\n'
    )
    done = run_stoic_process("-w", str(ws_path), "run", str(plan), timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    end = _end_of(ws_path, "b")
    details = end["details"]
    assert isinstance(details, dict)
    assert "is not a plain file" in str(details["result_file_error"])
    assert _end_of(ws_path, "c")["decision_outcome"] == "succeeded"
    _audit_clean(ws_path)


def test_an_iterate_check_whose_log_cannot_be_written_fails_the_attempt(
    tmp_path: Path, ws_path: Path, outside: Path
) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "tasks:\n"
        "  - id: t\n"
        '    run: |\n      RUN="$(dirname "$(dirname "$STOIC_RESULT")")"; mkdir -p "$RUN/tasks/t";'
        f' ln -s "{outside / "victim"}" "$RUN/tasks/t/attempt-1.check-1.log" || true\n'
        "    shell: true\n"
        '    iterate: {check: [sh, -c, "echo checked; exit 1"], max_iterations: 3}\n'
    )
    result = run_cli("-w", str(ws_path), "run", str(plan))
    assert result.exit_code == 1, result.stdout + result.stderr
    end = _end_of(ws_path, "t")
    inputs = end["decision_inputs"]
    assert isinstance(inputs, dict)
    assert "a link is already there" in str(inputs["message"])
    _untouched(outside)
    _audit_clean(ws_path)


def test_a_folder_made_for_a_file_is_fsynced_in_its_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file fsynced in a folder made for it survives a crash only if the folder's own entry
    is durable too: each folder made is fsynced in its parent, one already there is not."""
    root = tmp_path / "ws"
    (root / "runs").mkdir(parents=True)
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(str(Path(f"/proc/self/fd/{fd}").readlink()))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    fd = open_confined(
        root, root / "runs" / "r1" / "outputs" / "x.json", os.O_WRONLY | os.O_CREAT,
        create_parents=True,
    )  # fmt: skip
    os.close(fd)
    assert synced == [str(root / "runs"), str(root / "runs" / "r1")]
    synced.clear()
    os.close(open_confined(root, root / "runs" / "r1" / "outputs" / "y.json",
                           os.O_WRONLY | os.O_CREAT, create_parents=True))  # fmt: skip
    assert synced == []
