"""`stoic retry`: a person runs a failed task again in its run (DESIGN §6, §7)."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest

import stoic
from stoic.core.audit import ViolationCode as V
from tests.conftest import STOIC_BIN, log_path, run_cli, run_stoic_process
from tests.test_invariants import RUN, audit_codes, ev, ex
from tests.test_runner import (
    _wait_for,
    assert_audit_clean,
    of_type,
    only_run,
    records,
    write_plan,
)

# Not idempotent: each attempt leaves a line in `ran`; it finishes only once `go` exists.
CUT = """
meta: {name: nightly}
tasks:
  - id: charge
    run: ["sh", "-c", "echo ran >> ran; [ -f go ] && exit 0; echo $$ > slow.pid; exec sleep 60"]
  - id: notify
    run: ["sh", "-c", "echo notified > notified"]
    depends_on: [charge]
"""


def _interrupted_run(tmp_path: Path, ws_path: Path) -> str:
    """A real `stoic run` of CUT, stopped by Ctrl-C while `charge` runs."""
    plan = write_plan(tmp_path, CUT)
    runner = subprocess.Popen(
        [STOIC_BIN, "-w", str(ws_path), "run", str(plan)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(lambda: (tmp_path / "slow.pid").is_file() and (tmp_path / "slow.pid").read_text())
    runner.send_signal(signal.SIGINT)
    out, err = runner.communicate(timeout=30)
    assert runner.returncode == 130, out + err
    run_id = only_run(ws_path)
    # Cut and not idempotent: a continue alone never runs it again, and the summary says so.
    assert "charge failed: it runs again only when a person says so" in out
    assert f'`stoic retry {run_id} charge --reason "WHY"`' in out
    return run_id


def test_a_non_idempotent_task_cut_by_ctrl_c_runs_again_in_its_run_after_a_retry(
    tmp_path: Path, ws_path: Path
) -> None:
    run_id = _interrupted_run(tmp_path, ws_path)
    (tmp_path / "go").touch()
    # Without a person's decision it can never run again: its side effects are unknown.
    continued = run_stoic_process("-w", str(ws_path), "continue", run_id)
    assert continued.returncode == 1, continued.stdout + continued.stderr
    assert f'`stoic retry {run_id} charge --reason "WHY"`' in continued.stdout
    assert (tmp_path / "ran").read_text().count("ran") == 1
    (skipped,) = of_type(ws_path, "recovery_evaluation", "recovery_skipped")
    assert "non-idempotent" in str(skipped["decision_reason"])

    retried = run_stoic_process(
        "-w", str(ws_path), "retry", run_id, "charge", "--reason", "the card was not charged",
        "--as", "ada", "--json",
    )  # fmt: skip
    assert retried.returncode == 0, retried.stdout + retried.stderr
    document = orjson.loads(retried.stdout)
    assert (document["run_id"], document["status"], document["exit_code"]) == (
        run_id,
        "completed",
        0,
    )
    assert {task: row["status"] for task, row in document["tasks"].items()} == {
        "charge": "succeeded",
        "notify": "succeeded",
    }
    (entry,) = document["retried"]
    (interrupted,) = of_type(ws_path, "execution", "interrupted")
    assert (entry["task_id"], entry["attempt_id"], entry["attempt"]) == (
        "charge",
        interrupted["attempt_id"],
        1,
    )
    (decision,) = [r for r in of_type(ws_path, "proposal", "approved") if r["seq"] == entry["seq"]]
    assert decision["decision_id"] == entry["decision_id"]
    assert (decision["actor"], decision["decision_source"]) == ("human:ada", "human")
    assert decision["decision_inputs"]["kind"] == "retry"
    assert "the card was not charged" in str(decision["decision_reason"])
    # The same run went on: the task ran a second time, as an approved recovery, and its
    # dependent ran after it.
    assert (tmp_path / "ran").read_text().count("ran") == 2
    assert (tmp_path / "notified").is_file()
    starts = [r for r in of_type(ws_path, "execution", "started") if r["task_id"] == "charge"]
    assert [s["run_id"] for s in starts] == [run_id, run_id]
    assert starts[-1]["decision_inputs"]["attempt_kind"] == "approved_recovery"
    assert starts[-1]["decision_inputs"]["recovery_approved_by"] == "human:ada"
    assert len(list((ws_path / "runs").iterdir())) == 1
    assert_audit_clean(ws_path)


FLAKY = """
meta: {name: flaky}
tasks:
  - id: upload
    run:
      - sh
      - -c
      - |
        n=$(cat n 2>/dev/null || echo 0); n=$((n+1)); echo $n > n
        [ $n -ge 3 ] && exit 0
        echo '{"failure": {"kind": "tool_error"}}' > "$STOIC_RESULT"; exit 1
  - id: after
    run: ["true"]
    depends_on: [upload]
"""


def test_an_approved_recovery_that_failed_succeeds_after_a_retry(
    tmp_path: Path, ws_path: Path
) -> None:
    plan = write_plan(tmp_path, FLAKY)
    first = run_stoic_process("-w", str(ws_path), "run", str(plan))
    assert first.returncode == 3, first.stdout + first.stderr  # R2: a person decides
    run_id = only_run(ws_path)
    (created,) = of_type(ws_path, "proposal", "created")
    proposal_id = str(created["proposal_id"])
    # Approved and continued in one command: the approved recovery fails, and stands (R3).
    approved = run_stoic_process(
        "-w", str(ws_path), "approve", proposal_id, "--continue", "--as", "ada", "--json"
    )
    assert approved.returncode == 1, approved.stdout + approved.stderr
    document = orjson.loads(approved.stdout)
    assert (document["proposal_id"], document["proposal_status"]) == (proposal_id, "approved")
    assert (document["run_id"], document["status"]) == (run_id, "failed")
    loop = of_type(ws_path, "recovery_evaluation", "recovery_skipped")[-1]
    assert "loop prevention" in str(loop["decision_reason"])

    retried = run_stoic_process(
        "-w", str(ws_path), "retry", run_id, "upload", "--reason", "fixed the tool config"
    )
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert "retry of task upload" in retried.stdout
    assert (tmp_path / "n").read_text().strip() == "3"
    assert {r["task_id"] for r in of_type(ws_path, "execution", "succeeded")} == {
        "upload",
        "after",
    }
    assert_audit_clean(ws_path)


ALWAYS_FAILS = """
meta: {name: broken}
tasks:
  - id: build
    run: ["sh", "-c", "echo tried >> tried; exit 1"]
  - id: ship
    run: ["true"]
    depends_on: [build]
"""


def test_a_retried_attempt_that_fails_stands_and_the_run_fails(
    tmp_path: Path, ws_path: Path
) -> None:
    plan = write_plan(tmp_path, ALWAYS_FAILS)
    assert run_cli("-w", str(ws_path), "run", str(plan)).exit_code == 1
    run_id = only_run(ws_path)
    with stoic.Workspace.open(ws_path) as ws:
        retried = ws.retry(run_id, ["build"], reason="try once more", actor="human:ada")
    assert (retried.report.status, retried.report.exit_code) == ("failed", 1)
    (record,) = retried.records
    assert record.task_id == "build" and record.attempt == 1
    assert (tmp_path / "tried").read_text().count("tried") == 2
    last = of_type(ws_path, "recovery_evaluation")[-1]
    assert last["decision_outcome"] == "recovery_skipped"
    assert last["decision_inputs"]["attempt_kind"] == "approved_recovery"
    assert "loop prevention" in str(last["decision_reason"])
    assert not of_type(ws_path, "execution", "succeeded")
    assert_audit_clean(ws_path)
    # A failure that stands after a retry can be retried again: it is a new person's decision.
    again = run_cli("-w", str(ws_path), "retry", run_id, "build", "--reason", "one more")
    assert again.exit_code == 1
    assert (tmp_path / "tried").read_text().count("tried") == 3
    assert_audit_clean(ws_path)


BUDGETED = """
meta: {name: budgeted}
tasks:
  - id: build
    run: ["sh", "-c", "echo tried >> tried; exit 1"]
    budget: {max_attempts: 1}
"""


def test_a_retry_after_a_retry_its_budget_halted_names_the_halted_attempt(
    tmp_path: Path, ws_path: Path
) -> None:
    plan = write_plan(tmp_path, BUDGETED)
    assert run_cli("-w", str(ws_path), "run", str(plan)).exit_code == 1
    run_id = only_run(ws_path)
    for reason in ("one", "two", "three"):
        failures = [r for r in records(ws_path) if r["decision_outcome"] in ("failed", "halted")]
        failed = [r for r in failures if r["decision_type"] == "execution"][-1]
        retried = run_cli("-w", str(ws_path), "retry", run_id, "build", "--reason", reason)
        assert retried.exit_code == 1, retried.stdout + retried.stderr
        # A retry lifts no budget: the attempt is halted before it starts, and on record.
        assert (tmp_path / "tried").read_text().count("tried") == 1
        retry = [r for r in records(ws_path) if r["decision_inputs"].get("kind") == "retry"][-1]
        assert retry["attempt_id"] == failed["attempt_id"] is not None  # the failure it lifts
        assert_audit_clean(ws_path)
    assert len(of_type(ws_path, "execution", "halted")) == 3


TWO = """
meta: {name: two}
tasks:
  - id: fine
    run: ["true"]
  - id: broken
    run: ["false"]
  - id: later
    run: ["true"]
    depends_on: [broken]
"""


@pytest.fixture
def failed_run(tmp_path: Path, ws_path: Path) -> str:
    plan = write_plan(tmp_path, TWO)
    assert run_cli("-w", str(ws_path), "run", str(plan)).exit_code == 1
    return only_run(ws_path)


def _refused(ws_path: Path, *args: str, env: dict[str, str] | None = None) -> str:
    before = log_path(ws_path).read_bytes()
    result = run_cli("-w", str(ws_path), "retry", *args, env=env)
    assert result.exit_code == 2, result.stdout + result.stderr
    assert log_path(ws_path).read_bytes() == before  # nothing recorded
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("run-nope", "broken", "--reason", "r"), "no run 'run-nope'"),
        (("{run}", "brokn", "--reason", "r"), "has no task 'brokn' (did you mean 'broken'?)"),
        (("{run}", "fine", "--reason", "r"), "did not fail: it succeeded"),
        (("{run}", "later", "--reason", "r"), "did not fail: it is blocked by broken"),
        (("{run}", "broken"), "needs its reason"),
        (("{run}", "broken", "--reason", "  "), "needs its reason"),
    ],
)
def test_a_retry_that_cannot_be_is_refused_in_one_line_before_anything_is_recorded(
    ws_path: Path, failed_run: str, args: tuple[str, ...], said: str
) -> None:
    assert said in _refused(ws_path, *(a.format(run=failed_run) for a in args))


def test_a_pending_task_is_not_a_failure_to_retry(tmp_path: Path, ws_path: Path) -> None:
    plan = write_plan(
        tmp_path,
        "tasks:\n  - id: gate\n    run: ['true']\n    approval: required\n"
        "  - id: next\n    run: ['true']\n    depends_on: [gate]\n",
    )
    assert run_cli("-w", str(ws_path), "run", str(plan)).exit_code == 3
    run_id = only_run(ws_path)
    said = _refused(ws_path, run_id, "gate", "--reason", "r")
    assert "did not fail: it is suspended, waiting for its proposal" in said
    (created,) = of_type(ws_path, "proposal", "created")
    assert f"`stoic approve {created['proposal_id']} --continue`" in said
    assert "did not fail: it is pending and has not run yet" in _refused(
        ws_path, run_id, "next", "--reason", "r"
    )


def test_a_retry_from_inside_a_task_is_refused(
    ws_path: Path, failed_run: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"STOIC_RUN_ID": failed_run, "STOIC_TASK_ID": "fine"}
    said = _refused(ws_path, failed_run, "broken", "--reason", "r", env=env)
    assert "a task cannot decide as a person" in said
    # The Python API refuses it too, whatever actor it is handed.
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    before = log_path(ws_path).read_bytes()
    with (
        stoic.Workspace.open(ws_path) as ws,
        pytest.raises(stoic.UsageError, match="a task cannot act as a person"),
    ):
        ws.retry(failed_run, ["broken"], reason="r", actor="human:ada")
    assert log_path(ws_path).read_bytes() == before


def test_a_retry_is_refused_while_the_workspace_is_paused(ws_path: Path, failed_run: str) -> None:
    assert run_cli("-w", str(ws_path), "stop", "--reason", "incident").exit_code == 0
    before = log_path(ws_path).read_bytes()
    result = run_cli("-w", str(ws_path), "retry", failed_run, "broken", "--reason", "r")
    assert result.exit_code == 4, result.stderr
    assert "is refused until `stoic resume`" in result.stderr
    assert log_path(ws_path).read_bytes() == before


def test_the_python_api_refuses_an_actor_that_is_not_a_person(
    ws_path: Path, failed_run: str
) -> None:
    with stoic.Workspace.open(ws_path) as ws, pytest.raises(stoic.UsageError, match="human:NAME"):
        ws.retry(failed_run, ["broken"], reason="r", actor="system:cron")


# -- the audit: exactly this decision lets a failed task run again ------------------------------


def retry_of(attempt_id: str | None, **overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "type": "proposal",
        "outcome": "approved",
        "reason": "human:ada decided to run task t again.",
        "run_id": RUN,
        "task_id": "t",
        "attempt": 1,
        "attempt_id": attempt_id,
        "source": "human",
        "actor": "human:ada",
        "inputs": {"kind": "retry", "recovery_approved_by": "human:ada"},
    }
    return {**record, **overrides}


def failed_once(outcome: str = "failed") -> list[dict[str, Any]]:
    return [{**ex("started"), "attempt_id": "a1"}, {**ex(outcome), "attempt_id": "a1"}]


HALT = [
    {"type": "policy_check", "outcome": "blocked", "reason": "no.", "run_id": RUN, "task_id": "t"},
    {**ex("halted"), "attempt_id": "a1"},
]
FAILED_END = {"type": "run_lifecycle", "outcome": "failed", "reason": "failed.", "run_id": RUN}


AUDIT_CASES: list[tuple[str, list[dict[str, Any]], list[tuple[V, int]]]] = [
    ("retry-accepted", [*failed_once(), ev("recovery_skipped"), retry_of("a1")], []),
    (
        "retry-after-halt-accepted",
        [*HALT, ev("recovery_skipped"), retry_of("a1")],
        [],
    ),
    (
        "retry-after-the-run-ended-accepted",
        [*failed_once(), ev("recovery_skipped"), FAILED_END, retry_of("a1")],
        [],
    ),
    (
        "absent-after-the-run-ended",
        [*failed_once(), ev("recovery_skipped"), FAILED_END],
        [(V.RETRY_WITHOUT_DECISION, 5)],
    ),
    (
        "forged-by-the-system",
        [
            *failed_once(),
            ev("recovery_skipped"),
            retry_of("a1", source="system", actor="system:runner"),
        ],
        [(V.RETRY_UNFOUNDED, 4), (V.RETRY_WITHOUT_DECISION, 5)],
    ),
    (
        "forged-for-another-attempt",
        [*HALT, ev("recovery_skipped"), retry_of("zz")],
        [(V.RETRY_UNFOUNDED, 4), (V.EXECUTION_AFTER_HALT, 5)],
    ),
    (
        "before-the-evaluation",
        [*failed_once(), retry_of("a1"), ev("recovery_skipped")],
        [(V.RETRY_UNFOUNDED, 3), (V.RETRY_WITHOUT_DECISION, 5)],
    ),
    (
        "from-inside-a-task",
        [
            *failed_once(),
            ev("recovery_skipped"),
            retry_of("a1", details={"from_task": {"run_id": RUN, "task_id": "u"}}),
        ],
        [(V.PERSON_INSIDE_TASK, 4), (V.RETRY_UNFOUNDED, 4), (V.RETRY_WITHOUT_DECISION, 5)],
    ),
]


@pytest.mark.parametrize(
    ("name", "decisions", "expected"), AUDIT_CASES, ids=[case[0] for case in AUDIT_CASES]
)
def test_the_audit_accepts_a_persons_retry_and_nothing_else(
    ws_path: Path, name: str, decisions: list[dict[str, Any]], expected: list[tuple[V, int]]
) -> None:
    started = {
        **ex("started", 2),
        "attempt_id": "a2",
        "inputs": {"attempt_kind": "approved_recovery"},
    }
    found = audit_codes(ws_path, [*decisions, started])
    assert found == expected, name


def test_a_task_that_runs_stoic_retry_is_refused_as_a_person(tmp_path: Path, ws_path: Path) -> None:
    # A real task of a real run tries to retry a failed task of its own run.
    plan = write_plan(
        tmp_path,
        f"""
tasks:
  - id: broken
    run: ["false"]
  - id: sneaky
    run: ["sh", "-c", '"$0" -w "$1" retry "$STOIC_RUN_ID" broken --reason x', "{STOIC_BIN}",
          "{ws_path}"]
""",
    )
    assert run_cli("-w", str(ws_path), "run", str(plan)).exit_code == 1
    run_id = only_run(ws_path)
    (ended,) = [r for r in of_type(ws_path, "execution", "failed") if r["task_id"] == "sneaky"]
    assert ended["decision_inputs"]["exit_code"] == 2
    log = (ws_path / "runs" / run_id / "tasks" / "sneaky" / "attempt-1.log").read_text()
    assert "a task cannot decide as a person" in log
    assert not of_type(ws_path, "proposal", "approved")
    assert_audit_clean(ws_path)


def test_a_task_that_is_running_is_not_a_failure_to_retry(tmp_path: Path, ws_path: Path) -> None:
    plan = write_plan(tmp_path, CUT)
    runner = subprocess.Popen(
        [STOIC_BIN, "-w", str(ws_path), "run", str(plan)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(lambda: (tmp_path / "slow.pid").is_file())
        said = _refused(ws_path, only_run(ws_path), "charge", "--reason", "r")
        assert "did not fail: it is running right now" in said
    finally:
        runner.send_signal(signal.SIGINT)
        runner.communicate(timeout=30)


def test_the_audit_flags_a_task_started_after_the_run_recorded_it_done(ws_path: Path) -> None:
    """A task its plan file marks done is recorded done at the start; no decision after that,
    not even a person's approval, lets an attempt of it start in that run."""
    skipped = {**ex("skipped"), "inputs": {"plan_status": "completed"}}
    approved = {
        **retry_of(None),
        "reason": "human:ada approved starting task t before the run reached it.",
        "inputs": {"kind": "start"},
    }
    started = {**ex("started"), "attempt_id": "a1"}
    found = audit_codes(ws_path, [skipped, approved, started])
    assert (V.START_AFTER_DONE, 3) in found
