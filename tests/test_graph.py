"""Plan graph analysis: readiness, root blockers and run status, checked on random graphs."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from stoic.core.graph import (
    DONE_STATES,
    GraphTask,
    Readiness,
    RunStatus,
    TaskState,
    analyse,
    find_cycle,
    topological_order,
)

S = TaskState


def _plan(*specs: tuple[str, str, str]) -> list[GraphTask]:
    return [GraphTask(i, tuple(d.split()) if d else (), TaskState(s)) for i, d, s in specs]


def test_chain_behind_a_failure_names_the_root() -> None:
    result = analyse(_plan(("a", "", "failed"), ("b", "a", "pending"), ("c", "b", "pending")))
    assert result.status is RunStatus.FAILED
    assert result.blocked == {"b": ("a",), "c": ("a",)}


def test_stuck_is_not_done() -> None:
    """The plan an orchestrator once called "all tasks completed"."""
    result = analyse(_plan(("a", "", "succeeded"), ("b", "a", "failed"), ("c", "b", "pending")))
    assert result.status is RunStatus.FAILED and result.runnable == ()


def test_running_and_runnable() -> None:
    result = analyse(
        _plan(
            ("a", "", "succeeded"),
            ("b", "a", "pending"),
            ("c", "", "running"),
            ("d", "c", "pending"),
        )
    )
    assert result.status is RunStatus.RUNNING
    assert result.runnable == ("b",) and result.active == ("c",)
    assert result.readiness["d"] is Readiness.WAITING


def test_suspended_task_makes_the_run_await_a_human() -> None:
    result = analyse(_plan(("a", "", "suspended"), ("b", "a", "pending"), ("c", "", "skipped")))
    assert result.status is RunStatus.AWAITING_HUMAN
    assert result.awaiting_human == ("a",)
    assert result.readiness["b"] is Readiness.AWAITING_HUMAN


def test_several_roots_in_plan_order() -> None:
    result = analyse(
        _plan(
            ("x", "", "failed"), ("y", "", "failed"), ("z", "y x", "pending"), ("w", "z", "pending")
        )
    )
    assert result.blocked == {"z": ("x", "y"), "w": ("x", "y")}


def test_cycles_are_found_as_a_path() -> None:
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"], "d": []}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["a"]}) == ["a", "a"]
    assert find_cycle({"a": [], "b": ["a"]}) is None
    assert topological_order({"a": ["b"], "b": ["a"]}) is None


def test_a_large_graph_is_analysed() -> None:
    n = 20_000
    tasks = [
        GraphTask(f"t{i}", tuple(f"t{j}" for j in (i - 1, i - 7, i - 101) if j >= 0), S.PENDING)
        for i in range(n)
    ]
    tasks[0] = GraphTask("t0", (), S.FAILED)
    result = analyse(tasks)
    assert result.status is RunStatus.FAILED and len(result.blocked) == n - 1


@st.composite
def dags(draw: st.DrawFn) -> list[GraphTask]:
    n = draw(st.integers(1, 14))
    tasks = []
    for i in range(n):
        deps = draw(st.sets(st.integers(0, i - 1), max_size=3)) if i else set()
        state = draw(st.sampled_from(list(TaskState)))
        tasks.append(GraphTask(f"t{i}", tuple(f"t{j}" for j in sorted(deps)), state))
    return tasks


def _failed_ancestors(tasks: list[GraphTask], task_id: str) -> set[str]:
    """Brute force: failed tasks reachable upstream through pending tasks only."""
    by_id = {task.id: task for task in tasks}
    found: set[str] = set()
    stack = list(by_id[task_id].depends_on)
    while stack:
        dep = by_id[stack.pop()]
        if dep.state is S.FAILED:
            found.add(dep.id)
        elif dep.state is S.PENDING:
            stack.extend(dep.depends_on)
    return found


@settings(max_examples=400)
@given(dags())
def test_graph_properties(tasks: list[GraphTask]) -> None:
    result = analyse(tasks)
    by_id = {task.id: task for task in tasks}
    if result.status is RunStatus.COMPLETED:
        assert all(task.state in DONE_STATES for task in tasks)
    if result.status is RunStatus.FAILED:
        assert not result.runnable and not result.active and not result.awaiting_human
        assert all(
            r in (Readiness.DONE, Readiness.FAILED, Readiness.BLOCKED)
            for r in result.readiness.values()
        )
        assert any(r is not Readiness.DONE for r in result.readiness.values())
    for task_id, roots in result.blocked.items():
        assert roots, task_id
        assert all(by_id[root].state is S.FAILED for root in roots)
        assert set(roots) == _failed_ancestors(tasks, task_id)
    for task_id in result.runnable:
        assert by_id[task_id].state is S.PENDING
        assert all(by_id[dep].state in DONE_STATES for dep in by_id[task_id].depends_on)
    # Every pending task whose dependencies are all done is offered to run.
    for task in tasks:
        if task.state is S.PENDING and all(by_id[d].state in DONE_STATES for d in task.depends_on):
            assert task.id in result.runnable
