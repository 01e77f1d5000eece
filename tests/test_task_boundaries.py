"""What a task can reach: it never decides as a person, runs only what policy allows, imports
only from its plan's folder, and sees only the environment it is allowed (issue 12)."""

from __future__ import annotations

import shlex
from pathlib import Path

import orjson

import stoic
from tests.conftest import STOIC_BIN, log_path, run_cli


def records(ws_path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in log_path(ws_path).read_bytes().splitlines()]


def of_type(ws_path: Path, kind: str, outcome: str | None = None) -> list[dict[str, object]]:
    return [
        r
        for r in records(ws_path)
        if r["decision_type"] == kind and (outcome is None or r["decision_outcome"] == outcome)
    ]


def propose(ws_path: Path, *command: str) -> str:
    result = run_cli(
        "-w", str(ws_path), "propose", "--title", "t", "--reasoning", "r", "--", *command
    )
    assert result.exit_code == 0, result.stderr
    return result.stdout.strip().splitlines()[0]


def shell_task(task_id: str, command: str) -> str:
    return f"tasks:\n  - {{id: {task_id}, run: {orjson.dumps(command).decode()}, shell: true}}\n"


def run_plan(ws_path: Path, folder: Path, body: str) -> tuple[int, str]:
    plan = folder / "plan.yaml"
    plan.write_text(body)
    result = run_cli("-w", str(ws_path), "run", str(plan))
    return result.exit_code, result.stdout + result.stderr


def attempt_log(ws_path: Path, task: str) -> str:
    (run,) = list((ws_path / "runs").iterdir())
    path = run / "tasks" / task / "attempt-1.log"
    return path.read_text() if path.exists() else ""


def assert_audit_clean(ws_path: Path) -> None:
    result = run_cli("-w", str(ws_path), "audit")
    assert result.exit_code == 0, result.stdout


# -- item 9: a task cannot act as a person ---------------------------------------------------

APPROVER = """
import os
from pathlib import Path
import stoic

def approve(proposal):
    root = Path(os.environ["STOIC_RESULT"]).parents[3]
    for name in [n for n in os.environ if n.startswith("STOIC_")]:
        del os.environ[name]  # the worker process is a task's, whatever its environment says
    with stoic.Workspace.open(root) as ws:
        ws.approve(proposal, by="human:alice", reason="looks fine")
"""


def test_a_python_task_cannot_approve_as_a_person(tmp_path: Path, ws_path: Path) -> None:
    proposal = propose(ws_path, "true")
    (tmp_path / "approver.py").write_text(APPROVER)
    code, out = run_plan(
        ws_path,
        tmp_path,
        f'tasks:\n  - {{id: sneak, call: "approver:approve", params: {{proposal: {proposal}}}}}\n',
    )
    assert code == 1, out
    assert of_type(ws_path, "proposal", "approved") == []
    (failed,) = of_type(ws_path, "execution", "failed")
    assert "a task cannot act as a person" in failed["decision_inputs"]["message"]  # type: ignore[index]
    assert (ws_path / "queue" / "pending" / f"{proposal}.json").exists()
    assert_audit_clean(ws_path)


def test_a_shell_task_cannot_execute_as_a_person(tmp_path: Path, ws_path: Path) -> None:
    marker = tmp_path / "ran"
    proposal = propose(ws_path, "touch", str(marker))
    assert run_cli("-w", str(ws_path), "approve", proposal, "--as", "bob").exit_code == 0
    command = shlex.join([STOIC_BIN, "-w", str(ws_path), "execute", proposal, "--as", "alice"])
    code, out = run_plan(
        ws_path,
        tmp_path,
        f"tasks:\n  - {{id: sneak, run: {orjson.dumps(command).decode()}, shell: true}}\n",
    )
    assert code == 1, out
    assert not marker.exists()
    assert of_type(ws_path, "proposal", "execution_started") == []
    assert "a task cannot decide as a person" in attempt_log(ws_path, "sneak")
    assert_audit_clean(ws_path)


def test_a_task_proposes_as_itself_with_its_run_and_task(tmp_path: Path, ws_path: Path) -> None:
    command = shlex.join(
        [STOIC_BIN, "-w", str(ws_path), "propose", "--title", "t", "--reasoning", "r"]
    )
    code, out = run_plan(
        ws_path,
        tmp_path,
        f"tasks:\n  - {{id: asker, run: {orjson.dumps(command).decode()}, shell: true}}\n",
    )
    assert code == 0, out
    (created,) = of_type(ws_path, "proposal", "created")
    assert created["decision_source"] == "system"
    assert created["actor"] == "system:task"
    from_task = created["details"]["from_task"]  # type: ignore[index]
    assert from_task["task_id"] == "asker"
    assert from_task["run_id"] == (ws_path / "runs").iterdir().__next__().name
    assert_audit_clean(ws_path)


def test_audit_names_a_human_decision_made_from_inside_a_task(ws_path: Path) -> None:
    with stoic.Workspace.open(ws_path) as ws:
        ws.record(
            "pause",
            "paused",
            "Stopped by alice.",
            source="human",
            actor="human:alice",
            details={"from_task": {"run_id": "run-1", "task_id": "sneak"}},
        )
    result = run_cli("-w", str(ws_path), "audit", "--json")
    assert result.exit_code == 1
    assert "person_inside_task" in result.stdout
    assert "inside task sneak of run run-1" in result.stdout
