"""Approval without a second command: `stoic approve ID --continue` and `stoic run --approve`."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.conftest import (
    STOIC_BIN,
    forge,
    kill_during,
    log_path,
    run_cli,
    run_stoic_process,
)
from tests.test_runner import assert_audit_clean, of_type, only_run, write_plan

GATED = """
meta: {name: release}
tasks:
  - id: build
    run: ["sh", "-c", "echo built >> steps"]
  - id: deploy
    run: ["sh", "-c", "echo deployed >> steps"]
    depends_on: [build]
    approval: required
  - id: announce
    run: ["sh", "-c", "echo announced >> steps"]
    depends_on: [deploy]
"""


def test_approve_continue_approves_and_runs_the_rest_of_the_run(
    tmp_path: Path, ws_path: Path
) -> None:
    plan = write_plan(tmp_path, GATED)
    first = run_stoic_process("-w", str(ws_path), "run", str(plan))
    assert first.returncode == 3, first.stdout + first.stderr
    run_id = only_run(ws_path)
    (created,) = of_type(ws_path, "proposal", "created")
    proposal_id = str(created["proposal_id"])
    done = run_stoic_process(
        "-w", str(ws_path), "approve", proposal_id, "--continue", "--as", "ada"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{proposal_id} is approved." in done.stdout
    assert (tmp_path / "steps").read_text().split() == ["built", "deployed", "announced"]
    (approved,) = of_type(ws_path, "proposal", "approved")
    assert (approved["proposal_id"], approved["actor"]) == (proposal_id, "human:ada")
    (start,) = [r for r in of_type(ws_path, "execution", "started") if r["task_id"] == "deploy"]
    assert start["run_id"] == run_id
    assert start["decision_inputs"]["approved_by"] == "human:ada"
    assert_audit_clean(ws_path)


def test_approve_continue_prints_what_was_recorded_and_how_the_run_ended_as_json(
    tmp_path: Path, ws_path: Path
) -> None:
    plan = write_plan(tmp_path, GATED)
    assert run_cli("-w", str(ws_path), "run", str(plan)).exit_code == 3
    (created,) = of_type(ws_path, "proposal", "created")
    result = run_cli(
        "-w", str(ws_path), "approve", str(created["proposal_id"]), "--continue", "--json"
    )
    assert result.exit_code == 0, result.stderr
    document = orjson.loads(result.stdout)
    assert document["proposal_id"] == created["proposal_id"]
    assert document["proposal_status"] == "approved"
    assert (document["run_id"], document["status"], document["exit_code"]) == (
        only_run(ws_path),
        "completed",
        0,
    )
    assert {task: row["status"] for task, row in document["tasks"].items()} == {
        "build": "succeeded",
        "deploy": "succeeded",
        "announce": "succeeded",
    }


def test_approve_continue_of_a_proposal_no_run_made_is_refused_before_anything_is_recorded(
    ws_path: Path,
) -> None:
    made = run_cli("-w", str(ws_path), "propose", "--title", "t", "--reasoning", "r", "--", "true")
    proposal_id = made.stdout.strip()
    before = log_path(ws_path).read_bytes()
    result = run_cli("-w", str(ws_path), "approve", proposal_id, "--continue")
    assert result.exit_code == 2
    assert "belongs to no run" in result.stderr
    assert f"`stoic approve {proposal_id}`" in result.stderr
    assert log_path(ws_path).read_bytes() == before
    assert run_cli("-w", str(ws_path), "approve", proposal_id).exit_code == 0  # alone: fine


def test_approve_continue_is_refused_while_paused_before_the_approval(
    tmp_path: Path, ws_path: Path
) -> None:
    plan = write_plan(tmp_path, GATED)
    assert run_cli("-w", str(ws_path), "run", str(plan)).exit_code == 3
    (created,) = of_type(ws_path, "proposal", "created")
    assert run_cli("-w", str(ws_path), "stop", "--reason", "incident").exit_code == 0
    before = log_path(ws_path).read_bytes()
    result = run_cli("-w", str(ws_path), "approve", str(created["proposal_id"]), "--continue")
    assert result.exit_code == 4
    assert "--continue` is refused until `stoic resume`" in result.stderr
    assert log_path(ws_path).read_bytes() == before


def test_run_approve_lets_a_gated_task_run_when_reached_with_no_proposal(
    tmp_path: Path, ws_path: Path
) -> None:
    plan = write_plan(tmp_path, GATED)
    done = run_stoic_process(
        "-w", str(ws_path), "run", str(plan), "--approve", "deploy", "--as", "ada"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "steps").read_text().split() == ["built", "deployed", "announced"]
    assert not of_type(ws_path, "proposal", "created")
    assert not of_type(ws_path, "policy_check")
    (approval,) = of_type(ws_path, "proposal", "approved")
    (started,) = of_type(ws_path, "run_lifecycle", "started")
    first_start = of_type(ws_path, "execution", "started")[0]
    assert started["seq"] < approval["seq"] < first_start["seq"]  # before the first start
    assert (approval["actor"], approval["decision_source"], approval["task_id"]) == (
        "human:ada",
        "human",
        "deploy",
    )
    assert approval["decision_inputs"]["kind"] == "start"
    (deploy,) = [r for r in of_type(ws_path, "execution", "started") if r["task_id"] == "deploy"]
    assert deploy["decision_inputs"]["approved_by"] == "human:ada"
    assert_audit_clean(ws_path)


@pytest.mark.parametrize(
    ("task", "said"),
    [
        ("deplyo", "plan release has no task 'deplyo' to approve (did you mean 'deploy'?)"),
        ("build", "task 'build' of plan release needs no approval"),
    ],
)
def test_run_approve_of_a_task_that_cannot_be_approved_is_refused_before_the_run_starts(
    tmp_path: Path, ws_path: Path, task: str, said: str
) -> None:
    plan = write_plan(tmp_path, GATED)
    before = log_path(ws_path).read_bytes()
    result = run_cli("-w", str(ws_path), "run", str(plan), "--approve", task)
    assert result.exit_code == 2
    assert said in result.stderr
    assert "tasks that wait for approval: deploy" in result.stderr or task == "deplyo"
    assert log_path(ws_path).read_bytes() == before
    assert not (ws_path / "runs").exists() or not list((ws_path / "runs").iterdir())


@pytest.mark.parametrize("actor", ["alice", "agent:bot", "human:"])
def test_run_approve_by_no_person_is_refused_before_the_run_starts(
    tmp_path: Path, ws_path: Path, actor: str
) -> None:
    import stoic
    from stoic.services import runs

    plan = write_plan(tmp_path, GATED)
    before = log_path(ws_path).read_bytes()
    with (
        stoic.Workspace.open(ws_path) as workspace,
        pytest.raises(stoic.UsageError, match="not human:NAME"),
    ):
        runs.start(workspace, plan, approve=["deploy"], actor=actor)
    assert log_path(ws_path).read_bytes() == before
    assert not (ws_path / "runs").exists() or not list((ws_path / "runs").iterdir())


def test_run_approve_from_inside_a_task_is_refused(tmp_path: Path, ws_path: Path) -> None:
    plan = write_plan(tmp_path, GATED)
    before = log_path(ws_path).read_bytes()
    result = run_cli(
        "-w", str(ws_path), "run", str(plan), "--approve", "deploy",
        env={"STOIC_RUN_ID": "run-x", "STOIC_TASK_ID": "t"},
    )  # fmt: skip
    assert result.exit_code == 2
    assert "a task cannot decide as a person" in result.stderr
    assert log_path(ws_path).read_bytes() == before


DONE_GATED = """
tasks:
  - {id: deploy, status: completed, approval: required, run: ["sh", "-c", "echo ran >> ran"]}
  - {id: after, depends_on: [deploy], run: ["true"]}
"""


def test_run_approve_of_a_task_the_file_marks_done_is_refused_and_fresh_runs_it(
    tmp_path: Path, ws_path: Path
) -> None:
    """An approval of a task the run records done would start it anyway: refused, with
    nothing recorded; with --fresh the task runs, and the approval lets it."""
    plan = write_plan(tmp_path, DONE_GATED)
    before = log_path(ws_path).read_bytes()
    result = run_cli("-w", str(ws_path), "run", str(plan), "--approve", "deploy")
    assert result.exit_code == 2
    assert "task 'deploy' is marked completed in the plan file" in result.stderr
    assert "--fresh" in result.stderr
    assert log_path(ws_path).read_bytes() == before
    assert not (tmp_path / "ran").exists()
    done = run_stoic_process("-w", str(ws_path), "run", str(plan), "--fresh", "--approve", "deploy")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "ran").read_text() == "ran\n"
    assert_audit_clean(ws_path)


def test_an_approval_no_person_made_starts_nothing(tmp_path: Path, ws_path: Path) -> None:
    import stoic

    plan = write_plan(tmp_path, GATED)
    assert run_stoic_process("-w", str(ws_path), "run", str(plan)).returncode == 3
    run_id = only_run(ws_path)
    (created,) = of_type(ws_path, "proposal", "created")
    forge(  # what stoic never records (it refuses a decision by anyone but a person)
        ws_path,
        stoic.Decision(
            "proposal", "approved", "forged", actor="agent:bot", decision_source="system",
            proposal_id=str(created["proposal_id"]), run_id=run_id, task_id="deploy",
            decision_inputs={"from": "pending", "kind": "start"},
        ),
    )  # fmt: skip
    continued = run_stoic_process("-w", str(ws_path), "continue", run_id)
    assert continued.returncode == 3, continued.stdout + continued.stderr  # still waiting
    assert (tmp_path / "steps").read_text() == "built\n"  # deploy never ran
    audited = run_cli("-w", str(ws_path), "audit", "--json")
    codes = {v["code"] for v in orjson.loads(audited.stdout)["violations"]}
    assert "not_a_persons_decision" in codes


def test_approving_what_a_task_proposed_runs_no_task_again(tmp_path: Path, ws_path: Path) -> None:
    """A task that ran `stoic propose` made a proposal of its run and task; approving it is a
    person's yes to the action proposed, not to running the task again (it succeeded, and is
    not idempotent)."""
    plan = write_plan(
        tmp_path,
        f"""
tasks:
  - id: proposer
    idempotent: false
    shell: true
    run: >-
      echo ran >> "{tmp_path}/runs.txt";
      "{STOIC_BIN}" -w "{ws_path}" propose --title "clean cache" --reasoning stale -- echo hi
  - id: gate
    approval: required
    depends_on: [proposer]
    run: ["true"]
""",
    )
    assert run_stoic_process("-w", str(ws_path), "run", str(plan)).returncode == 3
    created = [r for r in of_type(ws_path, "proposal", "created") if r["actor"] == "system:task"]
    (proposal_id,) = [str(r["proposal_id"]) for r in created]
    approved = run_stoic_process(
        "-w", str(ws_path), "approve", proposal_id, "--continue", "--as", "ann", "--reason", "ok"
    )
    assert approved.returncode == 3, approved.stdout + approved.stderr  # gate still waits
    assert (tmp_path / "runs.txt").read_text() == "ran\n"
    (decision,) = of_type(ws_path, "proposal", "approved")
    assert decision["task_id"] == "proposer"
    assert decision["decision_inputs"]["kind"] == "task_proposal"
    starts = [r for r in of_type(ws_path, "execution", "started") if r["task_id"] == "proposer"]
    assert len(starts) == 1
    assert_audit_clean(ws_path)


FLAKY_TOOL = """
tasks:
  - id: tool
    idempotent: false
    shell: true
    run: >-
      if [ "$STOIC_ATTEMPT" = 1 ]; then
      printf '{"failure": {"kind": "tool_error", "message": "flaky tool"}}' > "$STOIC_RESULT";
      exit 1; fi
"""


@pytest.mark.parametrize(("body", "task_id"), [(GATED, "deploy"), (FLAKY_TOOL, "tool")])
def test_a_proposal_a_killed_runner_owed_is_made_on_continue(
    tmp_path: Path, ws_path: Path, body: str, task_id: str
) -> None:
    """Killed (-9) after the task's wait for a person is on record (its approval gate, its
    suggested recovery) and before the proposal is in the queue: `continue` makes it, once."""
    plan = write_plan(tmp_path, body)
    run_it = f"from stoic.cli.app import main; main(['-w', root, 'run', {str(plan)!r}])"
    kill_during(ws_path, run_it, "propose")
    run_id = only_run(ws_path)
    assert of_type(ws_path, "proposal", "created") == []
    waiting = run_stoic_process("-w", str(ws_path), "continue", run_id)
    assert waiting.returncode == 3, waiting.stdout + waiting.stderr
    (created,) = of_type(ws_path, "proposal", "created")
    assert created["task_id"] == task_id
    assert f"{task_id} ({created['proposal_id']})" in waiting.stdout
    assert run_stoic_process("-w", str(ws_path), "continue", run_id).returncode == 3
    assert len(of_type(ws_path, "proposal", "created")) == 1  # made once
    approved = run_stoic_process(
        "-w", str(ws_path), "approve", str(created["proposal_id"]), "--continue", "--as", "ann",
        "--reason", "ok",
    )  # fmt: skip
    assert approved.returncode == 0, approved.stdout + approved.stderr
    assert_audit_clean(ws_path)
