"""`stoic runs`: every run of the workspace, newest first, its status from the log."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import orjson
import pytest

import stoic
from stoic.plan import loader
from stoic.services import run_list, runs
from tests.conftest import STOIC_BIN, run_cli

PASSES = "meta: {name: passes}\ntasks:\n  - {id: a, run: ['true']}\n  - {id: b, run: ['true']}\n"
FAILS = (
    "meta: {name: fails}\ntasks:\n  - {id: broken, run: ['false']}\n"
    "  - {id: after, run: ['true'], depends_on: [broken]}\n  - {id: other, run: ['true']}\n"
)
WAITS = "meta: {name: waits}\ntasks:\n  - {id: deploy, run: ['true'], approval: required}\n"
HANGS = (
    "meta: {name: hangs}\ntasks:\n"
    "  - id: slow\n    run: ['sh', '-c', 'touch STARTED; while [ ! -e GO ]; do sleep 0.05; done']\n"
)


def _plan(folder: Path, name: str, body: str) -> Path:
    path = folder / f"{name}.yaml"
    started, go = str(folder / f"{name}.started"), str(folder / "go")
    path.write_text(body.replace("STARTED", started).replace("GO", go))
    return path


def _run(ws_path: Path, plan: Path) -> int:
    return run_cli("-w", str(ws_path), "run", str(plan)).exit_code


def _wait_for(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def _listed(ws_path: Path, *options: str) -> list[dict[str, object]]:
    result = run_cli("-w", str(ws_path), "runs", "--json", *options)
    assert result.exit_code == 0, result.stderr
    rows = orjson.loads(result.stdout)
    assert isinstance(rows, list)
    return rows


def _runner(ws_path: Path, plan: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [STOIC_BIN, "-w", str(ws_path), "run", str(plan)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


@pytest.fixture
def many(tmp_path: Path, ws_path: Path) -> dict[str, object]:
    """A workspace with a run of every status: completed, failed, awaiting_human,
    interrupted (its runner killed -9) and running (its runner working)."""
    assert _run(ws_path, _plan(tmp_path, "passes", PASSES)) == 0
    assert _run(ws_path, _plan(tmp_path, "fails", FAILS)) == 1
    assert _run(ws_path, _plan(tmp_path, "waits", WAITS)) == 3
    killed = _runner(ws_path, _plan(tmp_path, "killed", HANGS.replace("hangs", "killed")))
    _wait_for(tmp_path / "killed.started")
    os.killpg(killed.pid, signal.SIGKILL)
    killed.communicate(timeout=60)
    live = _runner(ws_path, _plan(tmp_path, "hangs", HANGS))
    _wait_for(tmp_path / "hangs.started")
    yield {"live": live}
    (tmp_path / "go").touch()
    live.communicate(timeout=60)


def test_every_run_is_listed_newest_first_with_its_status_tasks_and_runner(
    ws_path: Path, many: dict[str, object]
) -> None:
    rows = _listed(ws_path)
    assert [(row["plan"], row["status"]) for row in rows] == [
        ("hangs", "running"),
        ("killed", "interrupted"),
        ("waits", "awaiting_human"),
        ("fails", "failed"),
        ("passes", "completed"),
    ]
    by_plan = {row["plan"]: row for row in rows}
    assert by_plan["passes"]["tasks"] == {"succeeded": 2}
    assert by_plan["fails"]["tasks"] == {"failed": 1, "blocked": 1, "succeeded": 1}
    assert by_plan["waits"]["tasks"] == {"suspended": 1}
    assert by_plan["killed"]["tasks"] == {"interrupted": 1}
    assert by_plan["hangs"]["tasks"] == {"running": 1}
    live = many["live"]
    assert isinstance(live, subprocess.Popen)
    assert by_plan["hangs"]["runner"] == f"pid {live.pid} on {os.uname().nodename}"
    assert [row["plan"] for row in rows if row["runner"] is not None] == ["hangs"]
    for row in rows:
        assert str(row["run_id"]).startswith("run-")
        assert row["started_at"] is not None and row["problem"] is None
    for done in ("passes", "fails", "waits"):
        assert by_plan[done]["ended_at"] is not None
        duration = by_plan[done]["duration_s"]
        assert isinstance(duration, float) and duration >= 0
    for going in ("hangs", "killed"):
        assert (by_plan[going]["ended_at"], by_plan[going]["duration_s"]) == (None, None)


def test_the_plain_listing_shows_the_same_runs(ws_path: Path, many: dict[str, object]) -> None:
    result = run_cli("-w", str(ws_path), "runs")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["run", "plan", "status", "started", "duration", "tasks", "runner"]
    assert [line.split()[1:3] for line in lines[1:]] == [
        ["hangs", "running"],
        ["killed", "interrupted"],
        ["waits", "awaiting_human"],
        ["fails", "failed"],
        ["passes", "completed"],
    ]
    assert "1 failed, 1 blocked, 1 succeeded" in lines[4]
    assert f"pid {many['live'].pid} on" in lines[1]  # type: ignore[attr-defined]


def test_status_and_plan_filter_the_runs(ws_path: Path, many: dict[str, object]) -> None:
    assert [row["plan"] for row in _listed(ws_path, "--status", "failed")] == ["fails"]
    assert [row["plan"] for row in _listed(ws_path, "--status", "interrupted")] == ["killed"]
    assert [row["status"] for row in _listed(ws_path, "--plan", "waits")] == ["awaiting_human"]
    assert _listed(ws_path, "--plan", "waits", "--status", "completed") == []
    assert _listed(ws_path, "--plan", "nothing-by-that-name") == []
    plain = run_cli("-w", str(ws_path), "runs", "--plan", "nothing-by-that-name")
    assert (plain.exit_code, plain.stdout) == (0, "No runs match.\n")


@pytest.mark.parametrize(
    ("word", "hint"),
    [
        ("complted", "did you mean 'completed'?"),
        ("awaiting", "did you mean 'awaiting_human'?"),
        ("zzz", "statuses: completed, running, awaiting_human, failed, paused, interrupted"),
    ],
)
def test_an_unknown_status_is_refused_with_a_hint(ws_path: Path, word: str, hint: str) -> None:
    result = run_cli("-w", str(ws_path), "runs", "--status", word)
    assert result.exit_code == 2
    assert result.stderr == f"stoic: error: unknown run status {word!r} ({hint})\n"
    assert result.stdout == ""


def test_no_runs(ws_path: Path) -> None:
    assert run_cli("-w", str(ws_path), "runs").stdout == "No runs.\n"
    assert _listed(ws_path) == []


def test_the_status_comes_from_the_log_never_from_state_json(tmp_path: Path, ws_path: Path) -> None:
    assert _run(ws_path, _plan(tmp_path, "fails", FAILS)) == 1
    (row,) = _listed(ws_path)
    state = ws_path / "runs" / str(row["run_id"]) / "state.json"
    document = orjson.loads(state.read_bytes())
    document["status"] = "completed"
    document["tasks"] = {}
    state.write_bytes(orjson.dumps(document))
    assert _listed(ws_path) == [row]


def test_a_run_whose_plan_copy_is_gone_is_listed_unknown_saying_why(
    tmp_path: Path, ws_path: Path
) -> None:
    assert _run(ws_path, _plan(tmp_path, "passes", PASSES)) == 0
    assert _run(ws_path, _plan(tmp_path, "fails", FAILS)) == 1
    newest, oldest = _listed(ws_path)
    copy = ws_path / "runs" / str(oldest["run_id"]) / "plan.yaml"
    copy.write_text(copy.read_text() + "# edited\n")
    rows = _listed(ws_path)
    assert rows[0] == newest
    assert (rows[1]["status"], rows[1]["tasks"]) == ("unknown", {})
    assert "no longer matches the plan the run started with" in str(rows[1]["problem"])
    copy.unlink()
    assert "its plan copy cannot be read" in str(_listed(ws_path)[1]["problem"])
    plain = run_cli("-w", str(ws_path), "runs")
    assert "unknown" in plain.stdout and "its plan copy cannot be read" in plain.stdout


def test_runs_of_one_plan_read_its_copy_once(
    tmp_path: Path, ws_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = _plan(tmp_path, "passes", PASSES)
    for _ in range(5):
        assert _run(ws_path, plan) == 0
    assert _run(ws_path, _plan(tmp_path, "fails", FAILS)) == 1
    read: list[Path] = []
    real = loader.read_plan

    def counted(path: Path) -> loader.Plan:
        read.append(path)
        return real(path)

    monkeypatch.setattr(run_list, "read_plan", counted)
    with stoic.Workspace.open(ws_path) as workspace:
        rows = runs.list_runs(workspace)
    assert len(rows) == 6
    assert len(read) == 2  # one per distinct plan, not one per run


def test_a_plan_name_from_a_file_is_shown_escaped(tmp_path: Path, ws_path: Path) -> None:
    plan = tmp_path / "evil.yaml"
    plan.write_text('meta: {name: "\\e]0;owned\\a"}\ntasks:\n  - {id: a, run: ["true"]}\n')
    assert _run(ws_path, plan) == 0
    shown = run_cli("-w", str(ws_path), "runs").stdout
    assert "\x1b" not in shown and "\\x1b]0;owned\\x07" in shown
    assert _listed(ws_path)[0]["plan"] == "\x1b]0;owned\x07"
