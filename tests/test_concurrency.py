"""One live run of a plan at a time, unless its `meta.concurrency` allows more (DESIGN §6).

Real `stoic run` processes race for the same plan; a task that waits for a file stands in for
slow work ("charging the card"), so each test decides when it ends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

import stoic
from tests.conftest import STOIC_BIN, run_cli, run_stoic_process
from tests.test_runner import assert_audit_clean, of_type

# Waits until the test lets it go, writing one line per run to charged.txt first.
SLOW = """
meta:
  name: charge{concurrency}
tasks:
  - id: charge
    run:
      - sh
      - -c
      - echo $STOIC_RUN_ID >> {folder}/charged.txt; while [ ! -e {folder}/go ]; do sleep 0.05; done
"""

# Both processes import stoic, then wait for the same instant to ask for the run.
_AT_ONCE = """
import sys, time
from stoic.cli.app import main
at = float(sys.argv[1])
time.sleep(max(0.0, at - time.time()))
sys.exit(main(sys.argv[2:]))
"""


def _plan(folder: Path, *, limit: int | None = None, name: str = "plan.yaml") -> Path:
    concurrency = "" if limit is None else f"\n  concurrency: {{limit: {limit}}}"
    path = folder / name
    path.write_text(SLOW.format(concurrency=concurrency, folder=folder))
    return path


def _charged(folder: Path) -> list[str]:
    path = folder / "charged.txt"
    return path.read_text().split() if path.is_file() else []


def _wait_for(predicate: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def _runner(ws_path: Path, plan: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [STOIC_BIN, "-w", str(ws_path), "run", str(plan), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _at_once(ws_path: Path, plan: Path, count: int) -> list[subprocess.Popen[str]]:
    at = time.time() + 3.0  # every process has imported stoic by then
    return [
        subprocess.Popen(
            [sys.executable, "-c", _AT_ONCE, str(at), "-w", str(ws_path), "run", str(plan)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        for _ in range(count)
    ]


def _starts(ws_path: Path) -> list[dict[str, object]]:
    return of_type(ws_path, "run_lifecycle", "started")


def _limit(start: dict[str, object]) -> dict[str, object]:
    inputs = start["decision_inputs"]
    assert isinstance(inputs, dict)
    rule = inputs["concurrency"]
    assert isinstance(rule, dict)
    return rule


def test_two_runs_of_one_plan_started_at_the_same_instant_one_runs(
    tmp_path: Path, ws_path: Path
) -> None:
    plan = _plan(tmp_path)
    first, second = _at_once(ws_path, plan, 2)
    _wait_for(lambda: first.poll() is not None or second.poll() is not None)
    refused = first if first.poll() is not None else second
    running = second if refused is first else first
    _, err = refused.communicate(timeout=60)
    assert refused.returncode == 2, err
    (start,) = _starts(ws_path)
    run_id = str(start["run_id"])
    assert f"plan 'charge' allows one live run at a time and has 1 already: {run_id} (pid" in err
    assert f"`stoic status {run_id}`" in err
    assert f"`stoic run {plan} --allow-concurrent`" in err
    assert err.count("\n") == 1  # one line, no traceback
    (tmp_path / "go").touch()
    running.communicate(timeout=60)
    assert running.returncode == 0
    assert _charged(tmp_path) == [run_id]  # the card was charged once
    assert _limit(start) == {
        "plan_key": "charge",
        "limit": 1,
        "allow_concurrent": False,
        "live_runs": [],
    }
    assert_audit_clean(ws_path)


def test_a_limit_of_two_allows_two_live_runs_and_refuses_a_third(
    tmp_path: Path, ws_path: Path
) -> None:
    plan = _plan(tmp_path, limit=2)
    runners = _at_once(ws_path, plan, 2)
    _wait_for(lambda: len(_charged(tmp_path)) == 2)
    third = run_stoic_process("-w", str(ws_path), "run", str(plan))
    assert third.returncode == 2
    assert "plan 'charge' allows 2 live runs at a time and has 2 already:" in third.stderr
    for run_id in _charged(tmp_path):
        assert run_id in third.stderr
    assert "wait for one to end (see `stoic runs --plan charge`)" in third.stderr
    (tmp_path / "go").touch()
    for runner in runners:
        runner.communicate(timeout=60)
        assert runner.returncode == 0
    assert len(_starts(ws_path)) == 2
    again = run_stoic_process("-w", str(ws_path), "run", str(plan))  # none is live now
    assert again.returncode == 0, again.stderr


def test_allow_concurrent_overrides_once_and_is_recorded(tmp_path: Path, ws_path: Path) -> None:
    plan = _plan(tmp_path)
    first = _runner(ws_path, plan)
    _wait_for(lambda: len(_charged(tmp_path)) == 1)
    (live,) = _charged(tmp_path)
    second = _runner(ws_path, plan, "--allow-concurrent")
    _wait_for(lambda: len(_charged(tmp_path)) == 2)
    refused = run_stoic_process("-w", str(ws_path), "run", str(plan))
    assert refused.returncode == 2  # the override was for that run, not for the plan
    assert "has 2 already" in refused.stderr
    (tmp_path / "go").touch()
    for runner in (first, second):
        runner.communicate(timeout=60)
        assert runner.returncode == 0
    starts = {str(start["run_id"]): start for start in _starts(ws_path)}
    (overridden,) = [run_id for run_id in starts if run_id != live]
    assert _limit(starts[overridden]) == {
        "plan_key": "charge",
        "limit": 1,
        "allow_concurrent": True,
        "live_runs": [live],
    }
    assert _limit(starts[live])["allow_concurrent"] is False


def test_a_runner_killed_with_minus_9_does_not_block_the_next_run(
    tmp_path: Path, ws_path: Path
) -> None:
    plan = _plan(tmp_path)
    killed = _runner(ws_path, plan)
    _wait_for(lambda: len(_charged(tmp_path)) == 1)
    os.killpg(killed.pid, signal.SIGKILL)  # the runner and its task, as a crash would
    killed.communicate(timeout=60)
    (tmp_path / "go").touch()
    result = run_stoic_process("-w", str(ws_path), "run", str(plan))
    assert result.returncode == 0, result.stderr
    assert len(_starts(ws_path)) == 2


def test_a_killed_python_runner_leaves_no_lease_behind(tmp_path: Path, ws_path: Path) -> None:
    """Python tasks run in worker processes the runner forked: they must not keep its lock."""
    (tmp_path / "hang.py").write_text(
        "import os, time\n"
        "def hang():\n"
        f"    open({str(tmp_path / 'charged.txt')!r}, 'a').write(os.environ['STOIC_RUN_ID'])\n"
        "    time.sleep(120)\n"
    )
    plan = tmp_path / "py.yaml"
    plan.write_text("meta: {name: py}\ntasks:\n  - id: hang\n    call: hang:hang\n")
    killed = _runner(ws_path, plan)
    _wait_for(lambda: len(_charged(tmp_path)) == 1)
    killed.send_signal(signal.SIGKILL)  # the runner only: its workers are left to notice
    killed.communicate(timeout=60)
    _wait_for(lambda: stoic.Workspace.open(ws_path).leases.held() == [], timeout=30)


def test_continue_is_refused_while_another_run_of_the_plan_is_live(
    tmp_path: Path, ws_path: Path
) -> None:
    plan = _plan(tmp_path)
    killed = _runner(ws_path, plan)
    _wait_for(lambda: len(_charged(tmp_path)) == 1)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.communicate(timeout=60)
    (gone,) = _charged(tmp_path)
    live = _runner(ws_path, plan)
    _wait_for(lambda: len(_charged(tmp_path)) == 2)
    refused = run_stoic_process("-w", str(ws_path), "continue", gone)
    assert refused.returncode == 2, refused.stderr
    live_id = _charged(tmp_path)[1]
    assert f"allows one live run at a time and has 1 already: {live_id} (pid {live.pid}" in (
        refused.stderr
    )
    assert "--allow-concurrent" not in refused.stderr  # a continue has no start to record it
    assert of_type(ws_path, "execution", "interrupted") == []  # nothing settled for it
    (tmp_path / "go").touch()
    live.communicate(timeout=60)
    continued = run_stoic_process("-w", str(ws_path), "continue", gone)
    assert continued.returncode == 1, continued.stderr  # its task stands interrupted
    assert len(of_type(ws_path, "execution", "interrupted")) == 1


def test_retry_is_refused_while_another_run_of_the_plan_is_live(
    tmp_path: Path, ws_path: Path
) -> None:
    plan = _plan(tmp_path)
    killed = _runner(ws_path, plan)
    _wait_for(lambda: len(_charged(tmp_path)) == 1)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.communicate(timeout=60)
    (gone,) = _charged(tmp_path)
    settled = run_stoic_process("-w", str(ws_path), "continue", gone)
    assert settled.returncode == 1, settled.stderr  # interrupted, not idempotent: it stands
    live = _runner(ws_path, plan)
    _wait_for(lambda: len(_charged(tmp_path)) == 2)
    retry = ("-w", str(ws_path), "retry", gone, "charge", "--reason", "the card was not charged")
    refused = run_stoic_process(*retry)
    assert refused.returncode == 2, refused.stderr
    live_id = _charged(tmp_path)[1]
    assert f"allows one live run at a time and has 1 already: {live_id} (pid {live.pid}" in (
        refused.stderr
    )
    assert [r for r in of_type(ws_path, "proposal", "approved") if r["run_id"] == gone] == []
    (tmp_path / "go").touch()
    live.communicate(timeout=60)
    retried = run_stoic_process(*retry)
    assert retried.returncode == 0, retried.stderr  # taken up once the other run has ended
    assert _charged(tmp_path) == [gone, live_id, gone]
    assert_audit_clean(ws_path)


def test_a_run_started_with_the_override_keeps_it_when_continued(
    tmp_path: Path, ws_path: Path
) -> None:
    plan = _plan(tmp_path)
    live = _runner(ws_path, plan)
    _wait_for(lambda: len(_charged(tmp_path)) == 1)
    overridden = _runner(ws_path, plan, "--allow-concurrent")
    _wait_for(lambda: len(_charged(tmp_path)) == 2)
    os.killpg(overridden.pid, signal.SIGKILL)
    overridden.communicate(timeout=60)
    continued = run_stoic_process("-w", str(ws_path), "continue", _charged(tmp_path)[1])
    assert continued.returncode == 1, continued.stderr  # taken up, not refused
    (tmp_path / "go").touch()
    live.communicate(timeout=60)


def test_runs_of_two_plans_and_of_two_unnamed_files_do_not_block_each_other(
    tmp_path: Path, ws_path: Path
) -> None:
    plan = _plan(tmp_path)
    other = tmp_path / "other.yaml"
    other.write_text('meta: {name: other}\ntasks:\n  - id: t\n    run: ["true"]\n')
    unnamed = [tmp_path / "a", tmp_path / "b"]
    for folder in unnamed:
        folder.mkdir()
        (folder / "job.yaml").write_text('tasks:\n  - id: t\n    run: ["true"]\n')
    live = _runner(ws_path, plan)
    _wait_for(lambda: len(_charged(tmp_path)) == 1)
    for path in (other, *(folder / "job.yaml" for folder in unnamed)):
        result = run_stoic_process("-w", str(ws_path), "run", str(path))
        assert result.returncode == 0, result.stderr
    keys = sorted(str(_limit(start)["plan_key"]) for start in _starts(ws_path))
    assert keys == sorted(
        ["charge", "other", *(f"file:{folder / 'job.yaml'}" for folder in unnamed)]
    )
    (tmp_path / "go").touch()
    live.communicate(timeout=60)


def test_a_run_folder_without_a_lock_or_not_a_run_is_not_a_lease(ws_path: Path) -> None:
    with stoic.Workspace.open(ws_path) as workspace:
        held = workspace.leases.acquire("run-a")
        (ws_path / "runs" / "run-b").mkdir()  # a run folder nobody ever locked
        (ws_path / "runs" / "not-a-run-folder.txt").write_text("")
        assert workspace.leases.held() == [held]


# -- the plan's concurrency, validated ---------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{limit: 0}", "concurrency.limit must be a whole number from 1 to 1000, not 0"),
        ("{limit: -2}", "concurrency.limit must be a whole number from 1 to 1000, not -2"),
        ("{limit: '2'}", "concurrency.limit must be a whole number from 1 to 1000, not '2'"),
        ("{limit: 1.5}", "concurrency.limit must be a whole number from 1 to 1000, not 1.5"),
        ("{limit: true}", "concurrency.limit must be a whole number from 1 to 1000, not True"),
        ("{limit: 5000}", "concurrency.limit must be a whole number from 1 to 1000, not 5000"),
        ("2", "concurrency must be a mapping with a limit, not 2"),
        ("{limt: 2}", "unknown key 'limt' (hint: did you mean 'limit'?)"),
    ],
)
def test_a_bad_concurrency_is_refused_with_its_line_and_a_hint(
    tmp_path: Path, ws_path: Path, value: str, message: str
) -> None:
    plan = tmp_path / "bad.yaml"
    plan.write_text(f"meta:\n  name: x\n  concurrency: {value}\ntasks:\n  - id: t\n    run: [x]\n")
    for command in (["plan", "check", str(plan)], ["-w", str(ws_path), "run", str(plan)]):
        result = run_cli(*command)
        assert result.exit_code == 2
        assert f"{plan}:3:" in result.stderr + result.stdout
        assert message in result.stderr + result.stdout
        if "unknown key" not in message:
            assert "(hint: write concurrency: {limit: 2}" in result.stderr + result.stdout
    assert of_type(ws_path, "run_lifecycle") == []


def test_the_plan_schema_describes_concurrency() -> None:
    result = run_cli("plan", "schema")
    assert result.exit_code == 0
    schema = orjson.loads(result.stdout)
    limit = schema["$defs"]["Concurrency"]["properties"]["limit"]
    assert (limit["type"], limit["minimum"], limit["maximum"]) == ("integer", 1, 1000)
    assert schema["$defs"]["Concurrency"]["additionalProperties"] is False
    assert "concurrency" in schema["$defs"]["Meta"]["properties"]
