"""Policy and budgets (DESIGN §7) as pure functions: a plan narrows, never widens."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from stoic.core.policy import (
    BudgetLimits,
    Policy,
    Spent,
    approval_rule,
    budget_violation,
    policy_violation,
    remaining_seconds,
)

EXECUTORS = ["shell", "python", "http", "agent"]
executor_sets = st.frozensets(st.sampled_from(EXECUTORS))
patterns = st.lists(st.sampled_from(["rm -rf", "^curl ", "drop table", "sudo"]), max_size=3)
env_globs = st.lists(st.sampled_from(["*", "AWS_*", "HOME", "PATH", "CI*"]), min_size=1, max_size=3)
policies = st.builds(
    Policy,
    allowed_executors=executor_sets,
    forbidden_commands=patterns.map(lambda found: tuple(re.compile(p) for p in found)),
    env_passthrough=st.lists(env_globs.map(tuple), min_size=1, max_size=2).map(tuple),
    require_approval=st.lists(st.sampled_from(["deploy-*", "role:coder", "db"])).map(tuple),
)
commands = st.sampled_from(
    ["rm -rf /tmp/x", "curl https://x", "make build", "sudo reboot", "echo drop table t"]
)
names = st.sampled_from(["AWS_KEY", "HOME", "PATH", "CI", "CI_TOKEN", "SECRET"])


@given(policies, policies, st.sampled_from(EXECUTORS), commands)
def test_a_second_policy_can_only_refuse_more(
    first: Policy, second: Policy, executor: str, command: str
) -> None:
    both = first.tighten(second)
    if policy_violation(first, executor, command) or policy_violation(second, executor, command):
        assert policy_violation(both, executor, command) is not None
    else:
        assert policy_violation(both, executor, command) is None


@given(policies, policies, names)
def test_a_second_policy_can_only_pass_fewer_variables(
    first: Policy, second: Policy, name: str
) -> None:
    assert first.tighten(second).passes_env(name) == (
        first.passes_env(name) and second.passes_env(name)
    )


@given(policies, policies, st.sampled_from(["deploy-web", "db", "build"]), st.none() | names)
def test_a_second_policy_can_only_ask_for_more_approvals(
    first: Policy, second: Policy, task_id: str, role: str | None
) -> None:
    asked = approval_rule(first, task_id, role, None) or approval_rule(second, task_id, role, None)
    assert (approval_rule(first.tighten(second), task_id, role, None) is not None) == bool(asked)


def test_approval_rules_by_mark_glob_and_role() -> None:
    policy = Policy(require_approval=("deploy-*", "role:coder"))
    assert approval_rule(policy, "build", None, "required") == (
        "the task is marked approval: required"
    )
    assert "policy require_approval 'deploy-*'" in (
        approval_rule(policy, "deploy-web", None, None) or ""
    )
    assert "role 'coder' requires approval" in (approval_rule(policy, "fix", "coder", None) or "")
    assert approval_rule(policy, "fix", "reviewer", None) is None
    assert approval_rule(policy, "role:coder", None, None) is None  # a task named so is no role


limits = st.builds(
    BudgetLimits,
    max_seconds=st.none() | st.floats(0, 100),
    max_attempts=st.none() | st.integers(1, 10),
    max_cost=st.none() | st.floats(0, 100),
)
spendings = st.builds(
    Spent, seconds=st.floats(0, 200), attempts=st.integers(0, 20), cost=st.floats(0, 200)
)


@given(limits, spendings)
def test_a_budget_refuses_exactly_when_a_limit_is_reached_naming_it(
    limit: BudgetLimits, spent: Spent
) -> None:
    reached = [
        name
        for name, cap, used in (
            ("max_attempts", limit.max_attempts, spent.attempts),
            ("max_seconds", limit.max_seconds, spent.seconds),
            ("max_cost", limit.max_cost, spent.cost),
        )
        if cap is not None and used >= cap
    ]
    said = budget_violation(limit, spent, "run")
    assert (said is None) == (not reached)
    if said is not None:
        assert said.startswith(f"run budget {reached[0]}=")


@given(spendings, spendings, spendings)
def test_spending_adds_up(a: Spent, b: Spent, c: Spent) -> None:
    assert a + Spent() == a
    assert (a + b).attempts == a.attempts + b.attempts
    assert ((a + b) + c).attempts == (a + (b + c)).attempts


@given(limits, spendings)
def test_more_spent_never_lifts_a_refusal(limit: BudgetLimits, spent: Spent) -> None:
    if budget_violation(limit, spent, "task") is not None:
        assert budget_violation(limit, spent + Spent(1.0, 1, 1.0), "task") is not None


@given(st.lists(st.tuples(limits, spendings), max_size=4))
def test_the_time_left_is_the_least_any_budget_allows(
    pairs: list[tuple[BudgetLimits, Spent]],
) -> None:
    timed = [
        limit.max_seconds - spent.seconds for limit, spent in pairs if limit.max_seconds is not None
    ]
    assert remaining_seconds(pairs) == (min(timed) if timed else None)
