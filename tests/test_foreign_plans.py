"""Plans of another agent orchestrator run as it ran them (DESIGN §5): the tasks its file marks
done are recorded done and not run, the rest run one step at a time in file order (a
`parallel_group` together), and its `validation:` block becomes verifiers.

The corpus plans are read in place (`STOIC_CORPUS`, else `../shared/corpus/plans`); absent, the
tests that need them are skipped saying why.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from stoic.plan.loader import PlanInvalid, parse_plan
from tests.conftest import PROJECT_ROOT, log_path, run_cli, run_stoic_process

CORPUS = Path(os.environ.get("STOIC_CORPUS", PROJECT_ROOT.parent / "shared" / "corpus" / "plans"))
EXTRACT = "claude-plans__02-extract-shared-modules.yaml"
README = PROJECT_ROOT / "README.md"

RECORDING_AGENT = """#!/bin/sh
echo "start $STOIC_TASK_ID" >> "$AGENT_CALLS"
sleep 0.2
echo "end $STOIC_TASK_ID" >> "$AGENT_CALLS"
"""
AGENT_TOML = """
[policy]
env_passthrough = ["PATH", "HOME", "AGENT_CALLS"]
[agents]
agent_cli = ["recording-agent", "{prompt}"]
"""


def corpus_plan(name: str) -> Path:
    path = CORPUS / name
    if not path.is_file():
        pytest.skip(f"the plan corpus is not here ({CORPUS}); set STOIC_CORPUS to its folder")
    return path


@pytest.fixture
def agent_env(tmp_path: Path, ws_path: Path) -> dict[str, str]:
    """A harmless agent CLI on PATH that records each call's start and end."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "recording-agent"
    script.write_text(RECORDING_AGENT)
    script.chmod(0o755)
    (ws_path / "stoic.toml").write_text(AGENT_TOML)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "AGENT_CALLS": str(tmp_path / "calls")}


def records(ws: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in log_path(ws).read_bytes().splitlines()]


def starts(ws: Path) -> list[str]:
    return [
        r["task_id"]
        for r in records(ws)
        if r["decision_type"] == "execution" and r["decision_outcome"] == "started"
    ]


def audit_clean(ws: Path) -> None:
    result = run_cli("-w", str(ws), "audit")
    assert result.exit_code == 0, result.stdout


# -- the corpus plan that redid finished work ----------------------------------------------


def test_a_corpus_plan_runs_none_of_its_completed_tasks_and_the_rest_in_file_order(
    tmp_path: Path, ws_path: Path, agent_env: dict[str, str]
) -> None:
    plan = corpus_plan(EXTRACT)
    done = run_stoic_process("-w", str(ws_path), "run", str(plan), "--tasks", env=agent_env)
    assert done.returncode == 0, done.stderr
    # 1.1 … 3.2 are `completed` in the file: recorded done at the start, never started.
    skipped = [
        r
        for r in records(ws_path)
        if (r["decision_type"], r["decision_outcome"])
        == (
            "execution",
            "skipped",
        )
    ]
    assert [r["task_id"] for r in skipped] == ["1.1", "2.1", "2.2", "3.1", "3.2"]
    assert all(r["decision_inputs"] == {"plan_status": "completed"} for r in skipped)
    (started,) = [r for r in records(ws_path) if r["decision_type"] == "run_lifecycle"][:1]
    assert skipped[0]["seq"] == started["seq"] + 1  # on record before anything runs
    assert started["decision_inputs"]["plan_statuses"] == "done tasks recorded"
    # The rest (the file says failed: unfinished work) ran one at a time, in file order.
    assert starts(ws_path) == ["4.1", "4.2"]
    calls = (tmp_path / "calls").read_text().split("\n")[:-1]
    assert calls == ["start 4.1", "end 4.1", "start 4.2", "end 4.2"]
    assert re.search(r"1\.1\s+skipped\s+0\s+-\s+done in the plan file", done.stdout)
    state = orjson.loads(next((ws_path / "runs").iterdir()).joinpath("state.json").read_bytes())
    assert state["tasks"]["1.1"]["status"] == "skipped"
    audit_clean(ws_path)


def test_fresh_runs_every_task_and_says_so_on_record(
    tmp_path: Path, ws_path: Path, agent_env: dict[str, str]
) -> None:
    plan = corpus_plan(EXTRACT)
    done = run_stoic_process("-w", str(ws_path), "run", "--fresh", str(plan), env=agent_env)
    assert done.returncode == 0, done.stderr
    assert starts(ws_path) == ["1.1", "2.1", "2.2", "3.1", "3.2", "4.1", "4.2"]
    (started,) = [r for r in records(ws_path) if r["decision_outcome"] == "started"][:1]
    assert started["decision_inputs"]["plan_statuses"] == "ignored (--fresh)"
    assert "--fresh" in started["decision_reason"]
    audit_clean(ws_path)


def test_plan_check_says_what_the_run_would_do(ws_path: Path, agent_env: dict[str, str]) -> None:
    plan = corpus_plan(EXTRACT)
    ws = ("-w", str(ws_path))
    result = run_cli(*ws, "plan", "check", str(plan), "--json", env=agent_env)
    verdict = orjson.loads(result.stdout)
    assert verdict["run"] == {
        "fresh": False,
        "done": [{"id": t, "status": "completed"} for t in ("1.1", "2.1", "2.2", "3.1", "3.2")],
        "waves": [["4.1"], ["4.2"]],
    }
    text = run_cli(*ws, "plan", "check", str(plan), env=agent_env).stdout
    assert "record done, not run: 1.1 (completed), 2.1 (completed)" in text
    assert "  wave 1: 4.1\n  wave 2: 4.2\n" in text
    fresh = run_cli(*ws, "plan", "check", str(plan), "--json", "--fresh", env=agent_env)
    fresh = orjson.loads(fresh.stdout)
    assert fresh["run"]["done"] == [] and len(fresh["run"]["waves"]) == 7


# -- file order and parallel groups ---------------------------------------------------------

STEP = "echo start {id} >> {out}; sleep 0.3; echo end {id} >> {out}"


def sectioned(out: Path, *tasks: tuple[str, str | None]) -> str:
    lines = ["sections:", "  - id: one", "    tasks:"]
    for task_id, group in tasks:
        step = STEP.format(id=task_id, out=out)
        lines += [f"      - id: {task_id}", f"        run: {step!r}"]
        lines.append("        shell: true")
        if group:
            lines.append(f"        parallel_group: {group}")
    return "\n".join(lines) + "\n"


def test_without_dependencies_tasks_run_one_at_a_time_and_a_parallel_group_together(
    tmp_path: Path, ws_path: Path
) -> None:
    plan = tmp_path / "plan.yaml"
    out = tmp_path / "order"
    plan.write_text(sectioned(out, ("a", None), ("b", "g"), ("c", "g"), ("d", None)))
    done = run_stoic_process("-w", str(ws_path), "run", str(plan), "--workers", "4")
    assert done.returncode == 0, done.stderr
    order = (tmp_path / "order").read_text().split("\n")[:-1]
    assert order[:2] == ["start a", "end a"]
    assert sorted(order[2:4]) == ["start b", "start c"]  # together
    assert sorted(order[4:6]) == ["end b", "end c"]
    assert order[6:] == ["start d", "end d"]
    audit_clean(ws_path)


def test_file_order_is_the_graph_plan_check_and_the_run_share() -> None:
    plan = parse_plan(
        "sections:\n  - tasks:\n"
        "    - {id: a, run: ['true']}\n"
        "    - {id: b, run: ['true'], parallel_group: g}\n"
        "    - {id: c, run: ['true'], parallel_group: g}\n"
        "    - {id: d, run: ['true'], depends_on: [a]}\n"
        "    - {id: e, run: ['true'], parallel_group: g}\n"
    )
    # d names a, and still follows the step before it; e's group is not d's neighbour: its own.
    assert plan.graph.dependencies == ((), (0,), (0,), (0, 1, 2), (3,))
    native = parse_plan("tasks:\n  - {id: a, run: ['true']}\n  - {id: b, run: ['true']}\n")
    assert native.graph.dependencies == ((), ())  # `tasks:` plans: only what they name


def test_a_group_whose_tasks_share_an_exclusive_resource_runs_one_at_a_time() -> None:
    plan = parse_plan(
        "sections:\n  - tasks:\n"
        "    - {id: a, run: ['true'], parallel_group: g, exclusive_resources: [db]}\n"
        "    - {id: b, run: ['true'], parallel_group: g, exclusive_resources: [db, cache]}\n"
        "    - {id: c, run: ['true'], parallel_group: h, exclusive_resources: [db]}\n"
        "    - {id: d, run: ['true'], parallel_group: h, exclusive_resources: [web]}\n"
    )
    assert plan.graph.dependencies == ((), (0,), (1,), (1,))


def test_a_task_max_attempts_is_its_budget_bound() -> None:
    plan = parse_plan(
        "sections:\n  - tasks:\n"
        "    - {id: a, run: ['true'], max_attempts: 5}\n"
        "    - {id: b, run: ['true'], max_attempts: 5, budget: {max_attempts: 2}}\n"
        "    - {id: c, run: ['true'], max_attempts: 5, budget: {max_seconds: 60}}\n"
    )
    bounds = [(t.budget.max_attempts, t.budget.max_seconds) for t in plan.tasks if t.budget]
    assert bounds == [(5, None), (2, None), (5, 60)]
    with pytest.raises(PlanInvalid, match="max_attempts must be a number of at least 1, not 0"):
        parse_plan("sections:\n  - tasks: [{id: a, run: ['true'], max_attempts: 0}]\n")


def test_a_dependency_against_file_order_is_a_cycle_with_a_hint() -> None:
    with pytest.raises(PlanInvalid) as caught:
        parse_plan(
            "sections:\n  - tasks:\n"
            "    - {id: a, run: ['true'], depends_on: [b]}\n"
            "    - {id: b, run: ['true']}\n"
        )
    (error,) = caught.value.errors
    assert "dependency cycle" in error.message
    assert "also run in file order: move the dependency above the task" in error.hint


def test_an_in_progress_task_behind_a_failed_dependency_is_blocked(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "sections:\n  - tasks:\n"
        "    - {id: a, status: failed, run: ['true']}\n"
        "    - {id: b, status: in_progress, depends_on: [a], run: ['true']}\n"
        "    - {id: c, status: pending, run: ['true']}\n"
    )
    result = run_cli("plan", "check", str(plan), "--json")
    verdict = orjson.loads(result.stdout)
    assert (result.exit_code, verdict["status"]) == (1, "failed")
    assert verdict["runnable"] == []
    assert verdict["blocked"] == [
        {"id": "b", "blocked_by": ["a"]},
        {"id": "c", "blocked_by": ["a"]},
    ]


# -- the validation block --------------------------------------------------------------------


def test_the_validation_block_adds_a_verifier_per_validator_after_the_named_agents() -> None:
    plan = parse_plan(
        "meta:\n  validation:\n    enabled: true\n    run_after: [coder]\n"
        "    validators: [validator, issue-verifier]\n    max_validation_attempts: 2\n"
        "sections:\n  - tasks:\n"
        "    - {id: '1', agent: coder, description: Build it}\n"
        "    - {id: '2', agent: code-reviewer, description: Review it}\n"
    )
    coder, reviewer = plan.tasks
    assert [(v.id, v.agent, v.agent_file) for v in coder.verify or ()] == [
        ("validation-validator", "validator", "../agents/validator.md"),
        ("validation-issue-verifier", "issue-verifier", "../agents/issue-verifier.md"),
    ]
    assert reviewer.verify is None
    off = parse_plan(
        "meta: {validation: {enabled: false}}\nsections:\n  - tasks:\n"
        "    - {id: '1', agent: coder, description: Build it}\n"
    )
    assert off.tasks[0].verify is None


def test_a_misspelt_validation_key_is_an_error_not_ignored() -> None:
    with pytest.raises(PlanInvalid) as caught:
        parse_plan(
            "meta: {validation: {enabled: true, validator: [v]}}\n"
            "sections:\n  - tasks: [{id: '1', run: ['true']}]\n"
        )
    assert "unknown key 'validator'" in str(caught.value)
    assert "did you mean 'validators'?" in str(caught.value)


# -- the README's mapping covers every key the corpus uses -----------------------------------


def corpus_keys() -> dict[str, set[str]]:
    if not CORPUS.is_dir():
        pytest.skip(f"the plan corpus is not here ({CORPUS}); set STOIC_CORPUS to its folder")
    keys: dict[str, set[str]] = {"plan": set(), "meta": set(), "validation": set()}
    keys |= {"section": set(), "task": set()}
    for path in sorted(CORPUS.glob("*.yaml")):
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError:
            continue  # the two files that are not YAML: refused, see test_plan.py
        keys["plan"] |= set(data)
        meta = data.get("meta") or {}
        keys["meta"] |= set(meta)
        keys["validation"] |= set(meta.get("validation") or {})
        for section in data.get("sections") or []:
            keys["section"] |= set(section)
            for task in section.get("tasks") or []:
                keys["task"] |= set(task)
    return keys


def test_the_readme_maps_every_key_the_corpus_plans_use() -> None:
    text = README.read_text(encoding="utf-8")
    mapping = text.split("### Plans of other orchestrators", 1)[1].split("\n## ", 1)[0]
    missing = [
        f"{where}.{key}"
        for where, keys in corpus_keys().items()
        for key in sorted(keys)
        if f"`{key}`" not in mapping
    ]
    assert not missing, f"README's mapping does not say what stoic does with {missing}"
