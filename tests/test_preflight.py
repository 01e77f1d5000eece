"""`stoic plan check` is the run's pre-flight: what `stoic run` refuses, it refuses in the same
words (one function serves both), and what would leave a run less checked is a warning."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import pytest

import stoic
from tests.conftest import run_cli

NOTHING_TO_RUN = "tasks:\n  - id: a\n    run: ['true']\n  - id: b\n    description: later\n"
AGENT_TASK = "tasks:\n  - id: a\n    agent: coder\n    prompt: Fix it\n"


def refusals(ws: Path, plan: Path, *extra: str) -> tuple[list[str], list[str]]:
    """The error lines of `plan check` and of `run` on one plan (both refuse: exit 2)."""
    checked = run_cli("-w", str(ws), "plan", "check", str(plan), *extra)
    ran = run_cli("-w", str(ws), "run", str(plan), *extra)
    assert (checked.exit_code, ran.exit_code) == (2, 2), (checked.stderr, ran.stderr)
    located = re.compile(rf"^{re.escape(str(plan))}:\d+:\d+: ")
    return (
        [line for line in checked.stderr.splitlines() if located.match(line)],
        [line for line in ran.stderr.splitlines() if located.match(line)],
    )


def test_a_task_with_nothing_to_run_is_refused_by_plan_check_in_runs_words(
    tmp_path: Path, ws_path: Path
) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(NOTHING_TO_RUN)
    checked, ran = refusals(ws_path, plan)
    assert checked == ran
    assert checked == [
        f"{plan}:4:9: task 'b' has nothing to run"
        " (hint: add run: [argv], call: module:function or http: {url: …})"
    ]
    verdict = orjson.loads(run_cli("-w", str(ws_path), "plan", "check", str(plan), "--json").stdout)
    assert verdict["status"] == "invalid"
    assert verdict["errors"][0]["message"] == "task 'b' has nothing to run"


def test_an_agent_cli_not_on_path_is_refused_by_plan_check_in_runs_words(
    tmp_path: Path, ws_path: Path
) -> None:
    (ws_path / "stoic.toml").write_text('[agents]\nagent_cli = ["no-such-agent-cli", "{prompt}"]\n')
    plan = tmp_path / "plan.yaml"
    plan.write_text(AGENT_TASK)
    checked, ran = refusals(ws_path, plan)
    assert checked == ran
    assert checked == [
        f"{plan}:2:9: the agent CLI 'no-such-agent-cli' (for agent tasks) is not on PATH"
        " (hint: install it, or set [agents] agent_cli in stoic.toml)"
    ]


def test_a_task_the_file_marks_done_needs_nothing_to_run_unless_fresh(
    tmp_path: Path, ws_path: Path
) -> None:
    (ws_path / "stoic.toml").write_text('[agents]\nagent_cli = ["no-such-agent-cli", "{prompt}"]\n')
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "tasks:\n  - {id: a, status: completed, agent: coder, prompt: Fix it}\n"
        "  - {id: b, status: verified}\n  - {id: c, run: ['true'], depends_on: [a, b]}\n"
    )
    checked = run_cli("-w", str(ws_path), "plan", "check", str(plan), "--json")
    assert checked.exit_code == 0, checked.stdout
    assert orjson.loads(checked.stdout)["run"]["waves"] == [["c"]]
    ran = run_cli("-w", str(ws_path), "run", str(plan))
    assert ran.exit_code == 0, ran.stderr
    checked_fresh, ran_fresh = refusals(ws_path, plan, "--fresh")
    assert checked_fresh == ran_fresh
    assert any("the agent CLI 'no-such-agent-cli'" in line for line in ran_fresh)
    assert any("task 'b' has nothing to run" in line for line in ran_fresh)


def test_a_verifier_not_found_is_a_warning_in_plan_check(tmp_path: Path, ws_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "meta:\n  verify: [{id: everywhere, run: 'nosuchlinter-xyz --all'}]\n"
        "tasks:\n  - id: a\n    run: ['true']\n    verify:\n"
        "      - {id: lint, run: [shellchek, build.sh]}\n"
        "      - {id: fine, run: 'exit 0'}\n"
    )
    checked = run_cli("-w", str(ws_path), "plan", "check", str(plan))
    assert checked.exit_code == 0  # verifiers fail open: the plan can run
    assert f"WARNING: {plan}:4:9: task 'a': verifier 'lint': command not found: shellchek" in (
        checked.stderr
    )
    assert "plan verifier 'everywhere': command not found: nosuchlinter-xyz" in checked.stderr
    assert "fine" not in checked.stderr
    verdict = orjson.loads(run_cli("-w", str(ws_path), "plan", "check", str(plan), "--json").stdout)
    assert [w["message"] for w in verdict["warnings"]] == [
        "plan verifier 'everywhere': command not found: nosuchlinter-xyz",
        "task 'a': verifier 'lint': command not found: shellchek",
    ]
    assert "verification incomplete" in verdict["warnings"][0]["hint"]


def test_what_the_policy_halts_is_said_by_plan_check_in_the_runs_words(
    tmp_path: Path, ws_path: Path
) -> None:
    settings = ws_path / "stoic.toml"
    text = settings.read_text()
    assert "# forbidden_commands = []" in text
    forbidding = 'forbidden_commands = ["^curl "]'
    settings.write_text(text.replace("# forbidden_commands = []", forbidding))
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "tasks:\n  - {id: fetch, run: [curl, https://example.org]}\n"
        "  - {id: spawn, call: 'os:popen'}\n  - {id: fine, run: ['true']}\n"
    )
    checked = run_cli("-w", str(ws_path), "plan", "check", str(plan), "--json")
    assert checked.exit_code == 0  # the rest of the plan runs
    warned = {w["line"]: w["message"] for w in orjson.loads(checked.stdout)["warnings"]}
    assert set(warned) == {2, 3}
    assert warned[2].startswith("task 'fetch': a run halts it before it starts: command matches")
    assert warned[3].startswith("task 'spawn': a run halts it before it starts: module 'os'")
    ran = run_cli("-w", str(ws_path), "run", str(plan))
    assert ran.exit_code == 1
    with stoic.Workspace.open(ws_path) as workspace:
        halted = {
            r.task_id: r.decision_reason
            for r in workspace.records(decision_type="execution")
            if r.decision_outcome == "halted"
        }
    assert set(halted) == {"fetch", "spawn"}
    for line, task in ((2, "fetch"), (3, "spawn")):
        rule = warned[line].split("before it starts: ", 1)[1]
        assert rule in str(halted[task])  # the same words


def _references(node: Any, key: str) -> list[str]:
    if isinstance(node, dict):
        found = [str(node[key])] if key in node else []
        return found + [ref for value in node.values() for ref in _references(value, key)]
    if isinstance(node, list):
        return [ref for value in node for ref in _references(value, key)]
    return []


@pytest.mark.parametrize("key", ["$ref", "$id", "$schema", "$dynamicRef"])
def test_the_schema_cites_nothing_outside_the_repo(key: str) -> None:
    schema = orjson.loads(run_cli("plan", "schema").stdout)
    cited = _references(schema, key)
    if key == "$ref":
        assert cited and all(ref.startswith("#/$defs/") for ref in cited)
    elif key == "$schema":
        # The dialect's identifier, which every JSON Schema names; nothing is fetched from it.
        assert cited == ["https://json-schema.org/draft/2020-12/schema"]
    else:
        assert cited == []
    urls = [
        text
        for text in _references({"s": schema}, "description")
        if "http://" in text or "https://" in text
    ]
    assert urls == []
