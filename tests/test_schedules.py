"""Schedules end to end (DESIGN §14): the commands and their refusals, and slots fired through
the service `stoic serve` calls, with real `stoic run` processes and a clock passed in.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

import stoic
from stoic.services import schedules
from stoic.services.schedule_slots import slot_text
from tests.conftest import STOIC_BIN, run_cli, run_stoic_process
from tests.test_concurrency import SLOW, _charged, _runner, _wait_for
from tests.test_runner import assert_audit_clean, of_type

HELLO = 'meta: {name: hello}\ntasks:\n  - {id: hello, run: ["true"]}\n'
BROKEN = 'tasks:\n  - {id: a, run: ["true"], depends_on: [ghost]}\n'


def _plan(folder: Path, text: str = HELLO, name: str = "plan.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def _cli(ws_path: Path, *args: str, code: int = 0) -> str:
    result = run_cli("-w", str(ws_path), *args)
    assert result.exit_code == code, (result.stdout, result.stderr)
    return result.stdout if code == 0 else result.stderr


def _add(ws_path: Path, plan: Path, name: str = "nightly", cron: str = "0 2 * * *") -> None:
    _cli(ws_path, "schedule", "add", name, "--cron", cron, str(plan), "--as", "ann")


def _slot_after(now: datetime) -> datetime:
    """The first 02:00 UTC after `now` (the next slot of "0 2 * * *")."""
    slot = now.replace(hour=2, minute=0, second=0, microsecond=0)
    return slot if slot > now else slot + timedelta(days=1)


def _past_next_slot() -> datetime:
    """Half an hour past the next 02:00 UTC slot of a schedule added now, and past no other."""
    return _slot_after(datetime.now(UTC)) + timedelta(minutes=30)


def _real_launch(ws_path: Path) -> schedules.Launch:
    """What the server does, done by the test: a `stoic run` child, its run id read back."""

    def launch(plan: Path, name: str) -> str:
        done = run_stoic_process("-w", str(ws_path), "run", str(plan), "--json")
        assert done.returncode == 0, done.stderr
        return str(orjson.loads(done.stdout)["run_id"])

    return launch


def _never(plan: Path, name: str) -> str:
    raise AssertionError(f"launched {plan} for {name}: nothing should run")


def test_add_list_and_remove_are_a_persons_decisions_on_record(
    tmp_path: Path, ws_path: Path
) -> None:
    plan = _plan(tmp_path)
    added = orjson.loads(
        _cli(ws_path, "schedule", "add", "nightly", "--cron", "0 2 * * *", str(plan), "--json")
    )
    assert added["name"] == "nightly" and added["plan"] == str(plan.absolute())
    assert added["next_fire"] == slot_text(_slot_after(datetime.now(UTC)))
    assert added["last_fire"] is None and added["tz"] == "UTC"
    (record,) = of_type(ws_path, "schedule", "added")
    assert record["decision_source"] == "human" and str(record["actor"]).startswith("human:")

    details = record["details"]
    assert isinstance(details, dict)
    assert details["plan_sha256"] == hashlib.sha256(plan.read_bytes()).hexdigest()
    listed = _cli(ws_path, "schedule", "list")
    assert "nightly  '0 2 * * *' (UTC)" in listed and "last: never fired" in listed
    assert [row["name"] for row in orjson.loads(_cli(ws_path, "schedule", "list", "--json"))] == [
        "nightly"
    ]
    assert orjson.loads(_cli(ws_path, "schedule", "remove", "nightly", "--json"))["removed"] == (
        "nightly"
    )
    assert _cli(ws_path, "schedule", "list") == "no schedules\n"
    assert len(of_type(ws_path, "schedule", "removed")) == 1
    assert_audit_clean(ws_path)


def test_bad_input_is_refused_in_one_line_and_records_nothing(
    tmp_path: Path, ws_path: Path
) -> None:
    plan = _plan(tmp_path)
    err = _cli(ws_path, "schedule", "add", "n", "--cron", "0 25 * * *", str(plan), code=2)
    assert "invalid cron expression '0 25 * * *'" in err and err.count("\n") == 1
    err = _cli(ws_path, "schedule", "add", "n", "--cron", "0 2 * *", str(plan), code=2)
    assert "has 4 fields, not 5" in err
    err = _cli(ws_path, "schedule", "add", "n", "--cron", "0 2 * * *", "--tz", "Mars/Olympus",
               str(plan), code=2)  # fmt: skip
    assert "unknown time zone 'Mars/Olympus'" in err
    err = _cli(ws_path, "schedule", "add", "n", "--cron", "0 2 * * *", str(tmp_path / "no.yaml"),
               code=2)  # fmt: skip
    assert "does not pass plan check" in err and "no such file" in err
    broken = _plan(tmp_path, BROKEN, "bad.yaml")
    err = _cli(ws_path, "schedule", "add", "n", "--cron", "0 2 * * *", str(broken), code=2)
    assert "does not pass plan check" in err and "ghost" in err
    assert of_type(ws_path, "schedule") == []
    _add(ws_path, plan)
    err = _cli(ws_path, "schedule", "add", "nightly", "--cron", "0 3 * * *", str(plan), code=2)
    assert "a schedule named 'nightly' is in force already" in err
    assert "(`stoic schedule remove nightly` first)" in err
    err = _cli(ws_path, "schedule", "remove", "nightyl", code=2)
    assert "unknown schedule 'nightyl'; did you mean 'nightly'?" in err
    err = _cli(ws_path, "schedule", "add", "../x", "--cron", "0 2 * * *", str(plan), code=2)
    assert "invalid schedule name '../x'" in err
    assert len(of_type(ws_path, "schedule")) == 1


def test_what_the_list_shows_from_a_plan_path_is_escaped(tmp_path: Path, ws_path: Path) -> None:
    folder = tmp_path / "a\x1b[31mred"
    folder.mkdir()
    _add(ws_path, _plan(folder))
    listed = _cli(ws_path, "schedule", "list")
    assert "\x1b" not in listed and "red" in listed


def test_a_due_slot_fires_a_real_run_that_completes(tmp_path: Path, ws_path: Path) -> None:
    plan = _plan(tmp_path)
    _add(ws_path, plan)
    first_slot = _slot_after(datetime.now(UTC))
    now = _past_next_slot()
    with stoic.Workspace.open(ws_path) as workspace:
        assert schedules.run_due_schedules(workspace, datetime.now(UTC), _never) == []
        (fired,) = schedules.run_due_schedules(workspace, now, _real_launch(ws_path))
        assert fired.outcome == "started" and fired.run_id is not None
        assert schedules.run_due_schedules(workspace, now + timedelta(hours=1), _never) == []
    runs = orjson.loads(run_stoic_process("-w", str(ws_path), "runs", "--json").stdout)
    assert [(run["run_id"], run["status"]) for run in runs] == [(fired.run_id, "completed")]
    (claim,) = of_type(ws_path, "schedule", "fired")
    (link,) = of_type(ws_path, "schedule", "started")
    start = of_type(ws_path, "run_lifecycle", "started")[0]
    assert int(str(claim["seq"])) < int(str(start["seq"])) < int(str(link["seq"]))
    assert link["decision_inputs"] == {
        "schedule": "nightly",
        "schedule_seq": claim["decision_inputs"]["schedule_seq"],  # type: ignore[index]
        "slot": claim["decision_inputs"]["slot"],  # type: ignore[index]
        "run_id": fired.run_id,
    }
    assert "run_id" not in link  # the run's own records are the run's: this one is the schedule's
    (row,) = orjson.loads(_cli(ws_path, "schedule", "list", "--json"))
    assert row["last_fire"]["run_id"] == fired.run_id
    assert row["last_fire"]["outcome"] == "started"
    assert row["last_fire"]["slot"] == slot_text(first_slot)
    assert f"started run {fired.run_id}" in _cli(ws_path, "schedule", "list")
    assert_audit_clean(ws_path)


def test_slots_missed_while_down_run_once_with_their_count(tmp_path: Path, ws_path: Path) -> None:
    _add(ws_path, _plan(tmp_path))
    launched: list[str] = []

    def launch(plan: Path, name: str) -> str:
        launched.append(name)
        return f"run-of-{name}"

    now = _past_next_slot() + timedelta(days=2)  # three slots have come
    with stoic.Workspace.open(ws_path) as workspace:
        (fired,) = schedules.run_due_schedules(workspace, now, launch)
    assert launched == ["nightly"] and fired.slots_due == 3
    (claim,) = of_type(ws_path, "schedule", "fired")
    inputs = claim["decision_inputs"]
    assert isinstance(inputs, dict) and inputs["slots_due"] == 3
    assert "2 earlier missed slots not run" in str(claim["decision_reason"])
    assert_audit_clean(ws_path)


def test_a_missed_slot_older_than_the_bound_is_recorded_skipped(
    tmp_path: Path, ws_path: Path
) -> None:
    settings = ws_path / "stoic.toml"
    text = settings.read_text()
    settings.write_text(text.replace("# catch_up_seconds = 86400.0", "catch_up_seconds = 3600"))
    _add(ws_path, _plan(tmp_path))
    now = datetime.now(UTC) + timedelta(days=2)  # the latest slot is at least 2 h old
    now = _slot_after(now) - timedelta(hours=20)
    with stoic.Workspace.open(ws_path) as workspace:
        (skipped,) = schedules.run_due_schedules(workspace, now, _never)
        assert skipped.outcome == "skipped" and "older than the catch-up bound" in skipped.reason
        assert schedules.run_due_schedules(workspace, now, _never) == []
    assert_audit_clean(ws_path)


def test_a_plan_gone_or_invalid_at_fire_time_is_recorded_failed(
    tmp_path: Path, ws_path: Path
) -> None:
    gone, broken = _plan(tmp_path, name="gone.yaml"), _plan(tmp_path, name="broken.yaml")
    _add(ws_path, gone, "gone")
    _add(ws_path, broken, "broken")
    gone.unlink()
    broken.write_text(BROKEN)
    with stoic.Workspace.open(ws_path) as workspace:
        fired = schedules.run_due_schedules(workspace, _past_next_slot(), _never)
    by_name = {f.name: f for f in fired}
    assert by_name["gone"].outcome == "failed" and "no such file" in by_name["gone"].reason
    assert by_name["broken"].outcome == "failed" and "ghost" in by_name["broken"].reason
    assert "failed" in _cli(ws_path, "log", "--failures")
    assert_audit_clean(ws_path)


def test_a_launch_that_fails_is_recorded_and_the_slot_stays_claimed(
    tmp_path: Path, ws_path: Path
) -> None:
    _add(ws_path, _plan(tmp_path))

    def broken(plan: Path, name: str) -> str:
        raise OSError("no stoic on PATH")

    now = _past_next_slot()
    with stoic.Workspace.open(ws_path) as workspace:
        (fired,) = schedules.run_due_schedules(workspace, now, broken)
        assert fired.outcome == "failed" and "no stoic on PATH" in fired.reason
        assert schedules.run_due_schedules(workspace, now, _never) == []
    (failed,) = of_type(ws_path, "schedule", "failed")
    inputs = failed["decision_inputs"]
    assert isinstance(inputs, dict) and inputs["phase"] == "launch"
    assert_audit_clean(ws_path)


def test_a_slot_whose_plan_is_at_its_limit_is_skipped_naming_the_live_run(
    tmp_path: Path, ws_path: Path
) -> None:
    plan = _plan(tmp_path, SLOW.format(concurrency="", folder=tmp_path))
    _add(ws_path, plan)
    runner = _runner(ws_path, plan)
    try:
        _wait_for(lambda: _charged(tmp_path))
        (live,) = _charged(tmp_path)
        with stoic.Workspace.open(ws_path) as workspace:
            (skipped,) = schedules.run_due_schedules(workspace, _past_next_slot(), _never)
        assert skipped.outcome == "skipped" and live in skipped.reason
        (record,) = of_type(ws_path, "schedule", "skipped")
        inputs = record["decision_inputs"]
        assert isinstance(inputs, dict) and inputs["live_runs"] == [live]
    finally:
        (tmp_path / "go").touch()
        runner.communicate(timeout=60)
    assert runner.returncode == 0
    assert_audit_clean(ws_path)


def test_a_paused_workspace_skips_the_slot(tmp_path: Path, ws_path: Path) -> None:
    _add(ws_path, _plan(tmp_path))
    _cli(ws_path, "stop", "--reason", "maintenance", "--as", "ann")
    with stoic.Workspace.open(ws_path) as workspace:
        (skipped,) = schedules.run_due_schedules(workspace, _past_next_slot(), _never)
    assert skipped.outcome == "skipped" and "paused (maintenance)" in skipped.reason
    assert_audit_clean(ws_path)


# Two processes import stoic, wait for the same instant, then fire what is due at one moment.
_FIRE_AT_ONCE = """
import sys, time
from datetime import datetime
from pathlib import Path
import stoic
from stoic.services import schedules
at, ws, now, out = float(sys.argv[1]), sys.argv[2], datetime.fromisoformat(sys.argv[3]), sys.argv[4]
def launch(plan, name):
    with open(out, "a") as f:
        f.write(name + "\\n")
    return "run-fake"
with stoic.Workspace.open(ws) as workspace:
    time.sleep(max(0.0, at - time.time()))
    print(len(schedules.run_due_schedules(workspace, now, launch)))
"""


def test_two_processes_firing_at_once_fire_a_slot_once(tmp_path: Path, ws_path: Path) -> None:
    _add(ws_path, _plan(tmp_path))
    now = (_past_next_slot()).isoformat()
    out = tmp_path / "launched.txt"
    at = time.time() + 3.0
    callers = [
        subprocess.Popen(
            [sys.executable, "-c", _FIRE_AT_ONCE, str(at), str(ws_path), now, str(out)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    counts = []
    for caller in callers:
        stdout, stderr = caller.communicate(timeout=120)
        assert caller.returncode == 0, stderr
        counts.append(int(stdout))
    assert sorted(counts) == [0, 1]
    assert out.read_text() == "nightly\n"
    assert len(of_type(ws_path, "schedule", "fired")) == 1
    assert_audit_clean(ws_path)


def test_the_audit_names_a_slot_fired_twice(tmp_path: Path, ws_path: Path) -> None:
    _add(ws_path, _plan(tmp_path))
    with stoic.Workspace.open(ws_path) as workspace:
        schedules.run_due_schedules(workspace, _past_next_slot(), lambda p, n: "run-x")
        (claim,) = [r for r in workspace.records(decision_type="schedule") if r.decision_outcome
                    == "fired"]  # fmt: skip
        workspace.record(  # what a broken scheduler would write: the same slot again
            "schedule",
            "fired",
            "again",
            actor=schedules.ACTOR,
            trigger="autonomous",
            inputs=dict(claim.decision_inputs),
        )
    result = run_cli("-w", str(ws_path), "audit")
    assert result.exit_code != 0
    assert "schedule_slot_refired" in result.stdout + result.stderr
    assert "slot" in result.stdout and "claimed already" in result.stdout


@pytest.mark.parametrize("args", [("schedule", "--help"), ("schedule", "add", "--help")])
def test_the_commands_explain_themselves(args: tuple[str, ...]) -> None:
    done = subprocess.run([STOIC_BIN, *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and "cron" in done.stdout


# A caller killed (-9) between the claim and the launch.
_DIE_AT_LAUNCH = """
import os, signal, sys
from datetime import datetime
import stoic
from stoic.services import schedules
def launch(plan, name):
    os.kill(os.getpid(), signal.SIGKILL)
with stoic.Workspace.open(sys.argv[1]) as workspace:
    schedules.run_due_schedules(workspace, datetime.fromisoformat(sys.argv[2]), launch)
"""


def test_a_caller_killed_after_the_claim_leaves_the_slot_fired_once(
    tmp_path: Path, ws_path: Path
) -> None:
    _add(ws_path, _plan(tmp_path))
    now = _past_next_slot()
    died = subprocess.run(
        [sys.executable, "-c", _DIE_AT_LAUNCH, str(ws_path), now.isoformat()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert died.returncode == -9, died.stderr
    with stoic.Workspace.open(ws_path) as workspace:
        assert schedules.run_due_schedules(workspace, now, _never) == []
    (row,) = orjson.loads(_cli(ws_path, "schedule", "list", "--json"))
    assert row["last_fire"]["outcome"] == "fired" and row["last_fire"]["run_id"] is None
    assert "fired (no run on record" in _cli(ws_path, "schedule", "list")
    assert "fired (no run on record" in _cli(ws_path, "schedule", "list")
    assert len(of_type(ws_path, "schedule", "fired")) == 1
    assert_audit_clean(ws_path)


def test_the_servers_duty_starts_a_due_slots_run_as_one_of_its_runners(
    tmp_path: Path, ws_path: Path
) -> None:
    """`stoic serve` fires a due slot through `stoic run --run-id`: the run id is on the slot's
    record before the run exists, the runner is the plane's own (stopped with it), and the run
    completes."""
    from stoic.server.control import ControlPlane

    plan = _plan(tmp_path)
    _add(ws_path, plan)
    plane = ControlPlane(ws_path)
    plane.scheduled_runs(now=lambda: _past_next_slot())()
    (run_id,) = list(plane.runners)
    plane.runners[run_id].process.wait(timeout=60)
    (link,) = of_type(ws_path, "schedule", "started")
    assert link["decision_inputs"]["run_id"] == run_id  # type: ignore[index]
    runs = orjson.loads(run_stoic_process("-w", str(ws_path), "runs", "--json").stdout)
    assert [(run["run_id"], run["status"]) for run in runs] == [(run_id, "completed")]
    plane.scheduled_runs(now=lambda: _past_next_slot())()  # the slot is on record
    assert len(of_type(ws_path, "schedule", "fired")) == 1
    assert_audit_clean(ws_path)


def test_run_id_is_the_callers_choice_within_its_format(tmp_path: Path, ws_path: Path) -> None:
    plan = _plan(tmp_path)
    chosen = "run-20261202-020000-abc123"
    done = run_stoic_process("-w", str(ws_path), "run", str(plan), "--run-id", chosen, "--json")
    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout)["run_id"] == chosen
    again = run_stoic_process("-w", str(ws_path), "run", str(plan), "--run-id", chosen)
    assert again.returncode == 2
    assert again.stderr.strip() == (
        f"stoic: error: run {chosen} exists already: a new run needs a new id"
    )
    for bad in ("../escape", "run-1", "RUN-20261202-020000-ABC123"):
        refused = run_stoic_process("-w", str(ws_path), "run", str(plan), "--run-id", bad)
        assert refused.returncode == 2, refused.stderr
        assert "is not a run id" in refused.stderr
    assert len(of_type(ws_path, "run_lifecycle", "started")) == 1
    assert not (ws_path / "escape").exists()
    assert_audit_clean(ws_path)


HELD = (
    "meta: {name: held}\ntasks:\n"
    '  - {id: wait, run: ["sh", "-c", "while [ ! -f release ]; do sleep 0.05; done"]}\n'
)
"""A plan (limit 1) whose run stays live until the file `release` appears in its folder."""


def test_two_schedules_of_one_plan_due_at_once_start_one_run_and_skip_the_other(
    tmp_path: Path, ws_path: Path
) -> None:
    """The second slot's concurrency check counts the run the first just started, and the
    slot's `started` names a run whose own start is on record."""
    from stoic.server.control import ControlPlane

    plan = _plan(tmp_path, HELD)
    _add(ws_path, plan, "first")
    _add(ws_path, plan, "second")
    plane = ControlPlane(ws_path)
    plane.scheduled_runs(now=lambda: _past_next_slot())()
    (run_id,) = list(plane.runners)
    (started,) = of_type(ws_path, "schedule", "started")
    (skipped,) = of_type(ws_path, "schedule", "skipped")
    assert started["decision_inputs"]["run_id"] == run_id  # type: ignore[index]
    assert skipped["decision_inputs"]["live_runs"] == [run_id]  # type: ignore[index]
    assert [r["run_id"] for r in of_type(ws_path, "run_lifecycle", "started")] == [run_id]
    (tmp_path / "release").touch()
    assert plane.runners[run_id].process.wait(timeout=60) == 0
    assert of_type(ws_path, "schedule", "failed") == []
    assert_audit_clean(ws_path)


def test_a_scheduled_run_refused_at_its_start_is_recorded_failed_not_started(
    tmp_path: Path, ws_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pause recorded after the slot's check and before its run starts: `stoic run` is
    refused, and the slot says so with the child's exit and its last stderr line."""
    from stoic.server import control

    plan = _plan(tmp_path)
    _add(ws_path, plan)
    start = control.start_command

    def paused_first(workspace: Path, plan: Path, run_id: str) -> list[str]:
        pause = [STOIC_BIN, "-w", str(workspace), "stop", "--reason", "late", "--as", "ann"]
        run = " ".join(f"'{part}'" for part in start(workspace, plan, run_id))
        return ["sh", "-c", " ".join(f"'{part}'" for part in pause) + f" && exec {run}"]

    monkeypatch.setattr(control, "start_command", paused_first)
    plane = control.ControlPlane(ws_path)
    plane.scheduled_runs(now=lambda: _past_next_slot())()
    assert of_type(ws_path, "schedule", "started") == []
    assert of_type(ws_path, "run_lifecycle", "started") == []
    (failed,) = of_type(ws_path, "schedule", "failed")
    inputs = failed["decision_inputs"]
    assert isinstance(inputs, dict) and inputs["phase"] == "launch"
    assert inputs["exit_code"] == 4
    assert inputs["stderr"].startswith("stoic: error:") and "paused" in inputs["stderr"]
    assert "did not start: its starter exited 4 before the run started" in str(
        failed["decision_reason"]
    )
    assert_audit_clean(ws_path)
