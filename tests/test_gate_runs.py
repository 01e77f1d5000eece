"""A gated agent task in a real run (DESIGN §15), its agent a stand-in for Claude Code that
speaks the hook protocol (examples/gated/stand_in_claude.py): safe calls go through, a risky one
becomes a proposal and suspends the task (the run waits, exit 3), and once a person decides
it the session resumes where it stopped — approved, the call is made; rejected, the agent is
told why and goes on another way. Everything on record; the audit holds."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

import stoic
from stoic.services import queue
from tests.conftest import kill_during, run_stoic_process

STAND_IN_CLAUDE = Path(__file__).parent.parent / "examples" / "gated" / "stand_in_claude.py"

GATED_TOML = """
[policy]
env_passthrough = ["PATH", "HOME", "STAND_IN_CLAUDE_SCRIPT", "STAND_IN_CLAUDE_STATE"]
[gate]
wait_seconds = 0
"""

PLAN = """
meta:
  name: gated
tasks:
  - id: ship
    agent: coder
    gate: true
    prompt: Ship the fix.
"""


@pytest.fixture
def agent(tmp_path: Path, ws_path: Path) -> dict[str, Any]:
    bin_dir, state, repo = tmp_path / "bin", tmp_path / "state", tmp_path / "repo"
    for folder in (bin_dir, state, repo):
        folder.mkdir()
    claude = bin_dir / "claude"
    claude.write_text(f'#!/bin/sh\nexec {sys.executable} {STAND_IN_CLAUDE} "$@"\n')
    claude.chmod(0o755)
    (ws_path / "stoic.toml").write_text(GATED_TOML)
    script = tmp_path / "calls.json"
    (repo / "plan.yaml").write_text(PLAN)
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "STAND_IN_CLAUDE_SCRIPT": str(script),
        "STAND_IN_CLAUDE_STATE": str(state),
    }
    return {"env": env, "script": script, "state": state, "repo": repo, "ws": ws_path}


def _calls(agent: dict[str, Any], *calls: tuple[str, dict[str, Any]]) -> None:
    script = [{"tool_name": tool, "tool_input": tool_input} for tool, tool_input in calls]
    agent["script"].write_text(json.dumps(script))


def _stoic(agent: dict[str, Any], *args: str) -> Any:
    return run_stoic_process("-w", str(agent["ws"]), *args, env=agent["env"])


def _actions(agent: dict[str, Any]) -> list[str]:
    return (agent["state"] / "actions.log").read_text().splitlines()


def _run_id(agent: dict[str, Any]) -> str:
    with stoic.Workspace.open(agent["ws"]) as workspace:
        (record,) = [
            r
            for r in workspace.records(decision_type="run_lifecycle")
            if r.decision_outcome == "started"
        ]
        assert record.run_id is not None
        return record.run_id


RISKY = ("Bash", {"command": "git push origin main"})
SAFE = ("Bash", {"command": "pwd"})


def test_a_risky_call_suspends_the_task_and_after_approval_the_session_goes_on(
    agent: dict[str, Any],
) -> None:
    _calls(agent, SAFE, RISKY, ("Bash", {"command": "ls"}))
    first = _stoic(agent, "run", str(agent["repo"] / "plan.yaml"))
    assert first.returncode == 3, first.stdout + first.stderr
    actions = _actions(agent)
    assert actions[1].startswith("allow Bash") and actions[2] == "ran pwd -> 0"
    assert actions[3].startswith("defer Bash") and "waits for a person" in actions[3]
    run_id = _run_id(agent)
    with stoic.Workspace.open(agent["ws"]) as workspace:
        (proposal,) = queue.list_proposals(workspace)
        assert proposal.type == "tool_call" and run_id in proposal.sources
        assert "ship" in proposal.sources
        (suspended,) = [
            r for r in workspace.records(decision_type="gate") if r.decision_outcome == "suspended"
        ]
        assert (suspended.run_id, suspended.task_id) == (run_id, "ship")
        assert suspended.proposal_id == proposal.id
    status = _stoic(agent, "status", run_id, "--json")
    assert json.loads(status.stdout)["tasks"]["ship"]["status"] == "suspended", status.stdout
    assert "ran git push" not in " ".join(_actions(agent))

    approved = _stoic(agent, "approve", proposal.id, "--reason", "release day")
    assert approved.returncode == 0, approved.stderr
    done = _stoic(agent, "continue", run_id)
    assert done.returncode == 0, done.stdout + done.stderr
    actions = _actions(agent)
    resumed = actions.index(next(a for a in actions if a.endswith("resumed")))
    assert actions[resumed + 1].startswith("allow Bash") and "approved" in actions[resumed + 1]
    assert actions[resumed + 2].startswith("ran git push origin main")
    assert actions[-1] == "ran ls -> 0"
    with stoic.Workspace.open(agent["ws"]) as workspace:
        gated = list(workspace.records(decision_type="gate"))
        assert {(r.run_id, r.task_id) for r in gated} == {(run_id, "ship")}  # all in the task
        outcomes = [r.decision_outcome for r in gated]
        assert outcomes == [
            "allowed",
            "proposed",
            "deferred",
            "suspended",
            "resumed",
            "allowed",
            "allowed",
        ]
        starts = [
            r.decision_inputs.get("attempt_kind")
            for r in workspace.records(run_id=run_id, decision_type="execution")
            if r.decision_outcome == "started"
        ]
        assert starts == ["first", "resumed"]
        assert workspace.audit().ok, workspace.audit().violations


def test_a_rejected_call_resumes_the_session_with_the_reason_and_the_agent_goes_on(
    agent: dict[str, Any],
) -> None:
    _calls(agent, RISKY, SAFE)
    assert _stoic(agent, "run", str(agent["repo"] / "plan.yaml")).returncode == 3
    run_id = _run_id(agent)
    with stoic.Workspace.open(agent["ws"]) as workspace:
        (proposal,) = queue.list_proposals(workspace)
    rejected = _stoic(agent, "reject", proposal.id, "--reason", "no pushes on Friday")
    assert rejected.returncode == 0, rejected.stderr
    done = _stoic(agent, "continue", run_id)
    assert done.returncode == 0, done.stdout + done.stderr
    actions = _actions(agent)
    denied = next(a for a in actions if a.startswith("deny Bash"))
    assert "no pushes on Friday" in denied
    assert not any(a.startswith("ran git push") for a in actions)
    assert actions[-1] == "ran pwd -> 0"
    with stoic.Workspace.open(agent["ws"]) as workspace:
        assert workspace.audit().ok


def test_undecided_the_run_still_waits_and_continuing_it_changes_nothing(
    agent: dict[str, Any],
) -> None:
    _calls(agent, RISKY)
    assert _stoic(agent, "run", str(agent["repo"] / "plan.yaml")).returncode == 3
    run_id = _run_id(agent)
    before = _actions(agent)
    again = _stoic(agent, "continue", run_id)
    assert again.returncode == 3, again.stdout + again.stderr
    assert _actions(agent) == before  # no session was started or resumed


def test_the_hook_is_given_through_a_settings_file_never_the_users(
    agent: dict[str, Any], tmp_path: Path
) -> None:
    home = tmp_path / "home"
    (home / ".claude").mkdir(parents=True)
    user_settings = home / ".claude" / "settings.json"
    user_settings.write_text('{"permissions": {}}')
    agent["env"]["HOME"] = str(home)
    _calls(agent, SAFE)
    assert _stoic(agent, "run", str(agent["repo"] / "plan.yaml")).returncode == 0
    assert user_settings.read_text() == '{"permissions": {}}'
    (written,) = list((agent["ws"] / "runs").rglob("ship-1.gate.json"))
    hooks = json.loads(written.read_text())["hooks"]["PreToolUse"]
    command = hooks[0]["hooks"][0]["command"]
    assert "gate claude-code --defer --repo" in command and str(agent["repo"]) in command


def test_a_plans_meta_gate_rules_narrow_what_its_agent_may_do(agent: dict[str, Any]) -> None:
    (agent["repo"] / "plan.yaml").write_text(
        PLAN.replace(
            "meta:\n  name: gated\n",
            'meta:\n  name: gated\n  gate:\n    - {verdict: deny, tool: Bash, command: "^pwd$"}\n',
        )
    )
    _calls(agent, SAFE)
    assert _stoic(agent, "run", str(agent["repo"] / "plan.yaml")).returncode == 0
    denied = _actions(agent)[1]
    assert denied.startswith("deny Bash") and "the plan's meta.gate[0]" in denied


def test_a_plan_gate_rule_that_cannot_apply_is_refused_before_the_run(
    agent: dict[str, Any],
) -> None:
    (agent["repo"] / "plan.yaml").write_text(
        PLAN.replace(
            "meta:\n  name: gated\n",
            'meta:\n  name: gated\n  gate:\n    - {verdict: deny, command: "("}\n',
        )
    )
    refused = _stoic(agent, "run", str(agent["repo"] / "plan.yaml"))
    assert (
        refused.returncode == 2 and "meta.gate[0]" in refused.stderr and "regex" in refused.stderr
    )


def test_gate_on_a_task_without_an_agent_is_refused(agent: dict[str, Any]) -> None:
    (agent["repo"] / "plan.yaml").write_text(
        "tasks:\n  - id: build\n    run: [echo, hi]\n    gate: true\n"
    )
    refused = _stoic(agent, "run", str(agent["repo"] / "plan.yaml"))
    assert refused.returncode == 2 and "runs no agent" in refused.stderr


def test_a_runner_killed_between_the_deferral_and_the_suspension_owes_it_at_continue(
    agent: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    _calls(agent, RISKY, SAFE)
    for name, value in agent["env"].items():
        monkeypatch.setenv(name, value)
    plan = str(agent["repo"] / "plan.yaml")
    # Killed (-9) as it goes to record the suspension: the deferred end is on record.
    run_it = f"from stoic.cli.app import main; main(['-w', root, 'run', {plan!r}])"
    kill_during(agent["ws"], run_it, "suspend")
    run_id = _run_id(agent)
    with stoic.Workspace.open(agent["ws"]) as workspace:
        outcomes = [r.decision_outcome for r in workspace.records(decision_type="gate")]
        assert outcomes == ["proposed", "deferred"]  # no suspension yet
        failed = [
            r
            for r in workspace.records(run_id=run_id, decision_type="execution")
            if r.decision_outcome == "failed"
        ]
        assert failed[-1].decision_inputs["failure_kind"] == "deferred"
        (proposal,) = queue.list_proposals(workspace)
    waiting = _stoic(agent, "continue", run_id)
    assert waiting.returncode == 3, waiting.stdout + waiting.stderr  # owed, then waits
    assert "ran git push" not in " ".join(_actions(agent))
    assert _stoic(agent, "approve", proposal.id, "--reason", "ok").returncode == 0
    done = _stoic(agent, "continue", run_id)
    assert done.returncode == 0, done.stdout + done.stderr
    assert _actions(agent)[-1] == "ran pwd -> 0"
    with stoic.Workspace.open(agent["ws"]) as workspace:
        outcomes = [r.decision_outcome for r in workspace.records(decision_type="gate")]
        assert outcomes == ["proposed", "deferred", "suspended", "resumed", "allowed", "allowed"]
        assert workspace.audit().ok, workspace.audit().violations


@pytest.mark.optional_component("Claude Code's CLI, installed by its own installer")
def test_the_flags_stoic_passes_claude_exist_in_its_help() -> None:
    """The flags a gated task's command line relies on (`--permission-prompt-tool`, for
    `stoic mcp`, is in the CLI reference but not in every version's `--help`)."""
    import shutil
    import subprocess

    claude = shutil.which("claude")
    if claude is None:
        pytest.skip("no `claude` on PATH: Claude Code's own CLI is not installed here")
    shown = subprocess.run(
        [claude, "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert shown.returncode == 0, shown.stderr
    for flag in (
        "--print",
        "--settings",
        "--resume",
        "--allowedTools",
        "--permission-mode",
        "--output-format",
    ):
        assert flag in shown.stdout, flag


SECRET_VALUE = "dc-4f9a1b7e5c0d"


def test_a_secret_the_agent_puts_in_a_call_is_masked_in_its_proposal_and_the_call_matches(
    agent: dict[str, Any],
) -> None:
    # DEPLOY_CODE matches no `policy.secret_names` pattern: only the plan's `secrets:` names it.
    agent["repo"].joinpath("plan.yaml").write_text(PLAN + "    secrets: [DEPLOY_CODE]\n")
    agent["env"]["DEPLOY_CODE"] = SECRET_VALUE
    call = ("Bash", {"command": f"echo {SECRET_VALUE} > /dev/null"})
    _calls(agent, call)
    first = _stoic(agent, "run", str(agent["repo"] / "plan.yaml"))
    assert first.returncode == 3, first.stdout + first.stderr
    run_id = _run_id(agent)
    with stoic.Workspace.open(agent["ws"]) as workspace:
        (proposal,) = queue.list_proposals(workspace)
    assert proposal.action is not None
    assert json.loads(proposal.action[2]) == {"command": "echo [DEPLOY_CODE masked] > /dev/null"}
    approved = _stoic(agent, "approve", proposal.id, "--reason", "fine")
    assert approved.returncode == 0, approved.stderr
    done = _stoic(agent, "continue", run_id)
    assert done.returncode == 0, done.stdout + done.stderr
    # The agent made the very call it asked for, secret and all: approved as it was shown.
    assert f"ran echo {SECRET_VALUE} > /dev/null -> 0" in _actions(agent)
    for path in agent["ws"].rglob("*"):
        if path.is_file():
            assert SECRET_VALUE.encode() not in path.read_bytes(), path
    assert SECRET_VALUE not in first.stdout + done.stdout + approved.stdout
    with stoic.Workspace.open(agent["ws"]) as workspace:
        assert workspace.audit().ok, workspace.audit().violations
