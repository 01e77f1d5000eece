"""The time limit of an attempt whose task sets none: the workspace's default timeouts.

Without them a task that hangs hangs its run forever. `runner.default_timeout_seconds` bounds
shell, python and http tasks and iterate checks, `agents.default_timeout_seconds` agent tasks;
a plan's `timeout:` always wins. Verifiers keep their own (`timeout:`, 300 s unless set).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from stoic.core.failure import FailureKind
from stoic.plan.models import TaskSpec
from stoic.run.attempt import AttemptResult
from stoic.run.http import DEFAULT_HTTP_TIMEOUT

__all__ = ["AGENTS_SETTING", "TASKS_SETTING", "DefaultTimeouts", "default_timeout_view"]

TASKS_SETTING = "runner.default_timeout_seconds"
AGENTS_SETTING = "agents.default_timeout_seconds"


@dataclass(frozen=True, slots=True)
class DefaultTimeouts:
    """The defaults of one workspace, in seconds."""

    tasks: float
    agents: float

    def of(self, spec: TaskSpec) -> tuple[float | None, str | None]:
        """The attempt's timeout and, when a default is what bounds it, the setting's name."""
        if spec.timeout is not None:
            return spec.timeout, None
        if spec.agent is not None:
            return self.agents, AGENTS_SETTING
        if spec.http is not None and (spec.http.timeout or DEFAULT_HTTP_TIMEOUT) <= self.tasks:
            return None, None  # the request's own limit is the tighter one
        return self.tasks, TASKS_SETTING


def default_timeout_view(result: AttemptResult, setting: str) -> AttemptResult:
    """A timeout that came from a default says so, and where to change it."""
    failure = result.failure
    if failure is None or failure.kind is not FailureKind.TIMEOUT:
        return result
    message = (
        f"{failure.message} (the default timeout, {setting} in stoic.toml: the task sets no"
        " timeout:)"
    )
    return replace(result, failure=replace(failure, message=message))
