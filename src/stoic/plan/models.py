"""The plan format (DESIGN §5) as pydantic models: the schema editors use and the validator.

One format is read, whether a plan lists `tasks:` directly or groups them in `sections:`, as the
plan files of other agent orchestrators do. The bookkeeping keys those orchestrators write
(`attempts`, `completed_at`, `result_message` …) are read and kept but mean nothing to stoic;
any other unknown key is an error.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from stoic.core.gate_table import gate_rule
from stoic.core.graph import TaskState
from stoic.core.policy import SECRET_NAME_PATTERN, check_patterns

__all__ = [
    "FOREIGN_META_KEYS",
    "FOREIGN_TASK_KEYS",
    "Budget",
    "Concurrency",
    "HttpRequest",
    "Meta",
    "PlanDocument",
    "Section",
    "StatusWord",
    "TaskSpec",
    "Validation",
    "Verifier",
]

Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]
TaskId = Annotated[
    str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
]


class StatusWord(StrEnum):
    """Task statuses a plan file may carry: stoic's own words and other orchestrators'."""

    PENDING = "pending"
    RUNNING = "running"
    IN_PROGRESS = "in_progress"
    SUCCEEDED = "succeeded"
    COMPLETED = "completed"
    VERIFIED = "verified"
    FAILED = "failed"
    SKIPPED = "skipped"
    SUSPENDED = "suspended"
    INTERRUPTED = "interrupted"

    @property
    def state(self) -> TaskState:
        """The task state this word means."""
        return _STATE_OF_WORD[self]


_STATE_OF_WORD = {
    StatusWord.PENDING: TaskState.PENDING,
    StatusWord.RUNNING: TaskState.RUNNING,
    StatusWord.IN_PROGRESS: TaskState.RUNNING,
    StatusWord.SUCCEEDED: TaskState.SUCCEEDED,
    StatusWord.COMPLETED: TaskState.SUCCEEDED,
    StatusWord.VERIFIED: TaskState.SUCCEEDED,
    StatusWord.FAILED: TaskState.FAILED,
    StatusWord.SKIPPED: TaskState.SKIPPED,
    StatusWord.SUSPENDED: TaskState.SUSPENDED,
    StatusWord.INTERRUPTED: TaskState.INTERRUPTED,
}


SecretName = Annotated[str, Field(pattern=SECRET_NAME_PATTERN)]
"""An environment variable's name."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Budget(_Strict):
    """Limits on a task or a whole run; exhausting one stops the work (DESIGN §7)."""

    max_seconds: Seconds | None = Field(None, description="Wall-clock seconds allowed.")
    max_attempts: Annotated[int, Field(ge=1)] | None = Field(
        None, description="Attempts allowed, recoveries included."
    )
    max_cost: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = Field(
        None, description="Cost units allowed, as tasks report them in their result file."
    )


class PolicySpec(_Strict):
    """A plan's own policy: it can narrow the workspace's, never widen it."""

    allowed_executors: list[Literal["shell", "python", "http", "agent"]] | None = None
    forbidden_commands: list[str] = Field(
        default_factory=list, description="Regular expressions over the command line."
    )
    env_passthrough: list[str] | None = None
    allowed_modules: list[str] | None = Field(
        None, description="Narrows the packages `call:` may import besides the plan's folder."
    )
    require_approval: list[str] = Field(
        default_factory=list, description="Task-id globs or role:NAME needing approval."
    )

    _patterns_compile = field_validator("forbidden_commands")(check_patterns)


class HttpRequest(_Strict):
    """An HTTP call: 2xx succeeds, anything else is a failure."""

    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = "GET"
    url: Annotated[str, Field(pattern=r"^https?://")]
    headers: dict[str, str] = Field(default_factory=dict)
    json_body: Any = Field(None, alias="json", description="A JSON request body.")
    body: str | None = Field(None, description="A text request body.")
    timeout: Seconds | None = Field(None, description="Seconds before the call is abandoned.")


class Verifier(_Strict):
    """A check run after a task; fail-open unless it is a gate (DESIGN §10)."""

    id: TaskId
    run: list[str] | str | None = Field(
        None, description="A command (argv list, or a string run by /bin/sh)."
    )
    agent: str | None = Field(None, description="An agent role that verifies instead.")
    prompt: str | None = Field(None, description="What the verifying agent is asked.")
    agent_file: str | None = Field(
        None,
        description="The verifying agent's definition file (plan-relative); when it is not"
        " there, the verifier is skipped silently (tier 1).",
    )
    gate: bool = Field(
        False, description="A critical or high finding blocks what follows (an escalation)."
    )
    timeout: Seconds = Field(300.0, description="Seconds before the verifier is given up on.")

    @model_validator(mode="after")
    def _one_way_to_run(self) -> Verifier:
        if (self.run is None) == (self.agent is None):
            raise ValueError("a verifier needs exactly one of `run` and `agent`")
        return self


class Iterate(_Strict):
    """Run the task, then its check, until the check reports no failures (DESIGN §7).

    Not recovery: a failing check sends the task round again within the bound; a loop that
    does not converge escalates (DESIGN §9).
    """

    check: list[str] = Field(
        ...,
        min_length=1,
        description="The check's argv; its failure count comes from its"
        ' result file ({"failures": n}), else exit 0 means none.',
    )
    max_iterations: Annotated[int, Field(ge=1)] | None = Field(
        None, description="Bound on rounds (default: meta.max_attempts_default, else 3)."
    )
    stall_after: Annotated[int, Field(ge=1)] | None = Field(
        None, description="Escalate when the failure count has not dropped for this many rounds."
    )
    timeout: Seconds | None = Field(None, description="Seconds before one check is stopped.")


_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE"})

FOREIGN_TASK_KEYS = frozenset(
    {
        "attempts",
        "last_attempt",
        "completed_at",
        "result_message",
        "model_used",
        "validation_attempts",
        "validation_findings",
        "target_acs",
        "parallel_group",
        "max_attempts",
        "last_error",
        "exclusive_resources",
    }
)
"""Keys other orchestrators keep on a task: read and kept; `parallel_group` orders the run
(`stoic.plan.file_order`), the rest is bookkeeping stoic ignores (the README says why)."""

FOREIGN_META_KEYS = frozenset(
    {
        "validation",
        "source_item",
        "plan_doc",
        "created",
        "requirements_path",
        "design",
        "design_doc",
        "status",
        "title",
        "id",
        "item_type",
        "type",
        "failure_reason",
        "notification_email",
    }
)
"""Keys other orchestrators keep on a plan: read and kept; `validation` becomes verifiers
(`stoic.plan.validation`), the rest is bookkeeping stoic ignores (the README says why)."""


class TaskSpec(_Strict):
    """One task. What it runs is given by exactly one of `run`, `call`, `http` or `agent`."""

    id: TaskId
    name: str | None = None
    description: str | None = None
    status: StatusWord | None = Field(None, description="Where the task stands (plan files).")
    run: list[str] | str | None = Field(
        None, description="A command as an argv list; a string only with `shell: true`."
    )
    shell: bool = Field(False, description="Run the `run` string through /bin/sh.")
    call: Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")] | None = Field(
        None, description='A Python function, "module:function", run in a worker process.'
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments for the `call` function."
    )
    http: HttpRequest | None = None
    agent: str | None = Field(None, description="An agent role (DESIGN §11).")
    prompt: str | None = None
    gate: bool | None = Field(
        None,
        description="Gate the agent's tool calls (DESIGN §15): each is allowed, denied or"
        " proposed by the workspace's [gate] rules (narrowed by meta.gate); a call that waits"
        " for a person suspends the task, and its session resumes once it is decided.",
    )
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment variables.")
    secrets: list[SecretName] | None = Field(
        None,
        description="Secrets this task's processes are given (from stoic's environment or"
        " [secrets] in stoic.toml), masked wherever stoic records them.",
    )
    depends_on: list[str] | None = None
    dependencies: list[str] | None = Field(None, description="Another name for `depends_on`.")
    idempotent: bool | None = Field(
        None, description="Running it twice does no harm (HTTP GET/HEAD/PUT/DELETE: true)."
    )
    timeout: Seconds | None = Field(None, description="Seconds before the attempt is stopped.")
    budget: Budget | None = None
    approval: Literal["required", "none"] | None = None
    verify: list[Verifier] | None = None
    iterate: Iterate | None = None
    doc: str | None = Field(
        None, description="A markdown file (plan-relative) whose summary the task reports."
    )
    # Other orchestrators' bookkeeping (FOREIGN_TASK_KEYS): kept, ignored.
    attempts: Any = Field(None, json_schema_extra={"deprecated": True})
    last_attempt: Any = Field(None, json_schema_extra={"deprecated": True})
    completed_at: Any = Field(None, json_schema_extra={"deprecated": True})
    result_message: Any = Field(None, json_schema_extra={"deprecated": True})
    model_used: Any = Field(None, json_schema_extra={"deprecated": True})
    validation_attempts: Any = Field(None, json_schema_extra={"deprecated": True})
    validation_findings: Any = Field(None, json_schema_extra={"deprecated": True})
    target_acs: Any = Field(None, json_schema_extra={"deprecated": True})
    parallel_group: Any = Field(None, json_schema_extra={"deprecated": True})
    max_attempts: Annotated[int, Field(ge=1)] | None = Field(
        None, description="Another orchestrator's bound on attempts: read as budget.max_attempts."
    )
    last_error: Any = Field(None, json_schema_extra={"deprecated": True})
    exclusive_resources: Any = Field(None, json_schema_extra={"deprecated": True})

    @property
    def dependency_ids(self) -> tuple[str, ...]:
        """The tasks this one waits for, under whichever key the plan used."""
        return tuple(self.depends_on or self.dependencies or ())

    @property
    def state(self) -> TaskState:
        return self.status.state if self.status is not None else TaskState.PENDING

    @property
    def is_idempotent(self) -> bool:
        """Safe to run twice: as the task says, else true for HTTP GET, HEAD, PUT and DELETE."""
        if self.idempotent is not None:
            return self.idempotent
        return self.http is not None and self.http.method in _IDEMPOTENT_METHODS


class Section(_Strict):
    """A named group of tasks."""

    id: str | None = None
    name: str | None = None
    status: Any = Field(None, json_schema_extra={"deprecated": True})
    tasks: list[TaskSpec] = Field(default_factory=list)


CONCURRENCY_LIMIT_MAX = 1000
"""More live runs of one plan than this is a typo, not a plan."""


class Concurrency(_Strict):
    """How many runs of this plan may be live at once in one workspace; without it, one.

    A start past the limit is refused, naming the live runs.
    """

    limit: Annotated[int, Field(ge=1, le=CONCURRENCY_LIMIT_MAX, strict=True)] = Field(
        1,
        description="Live runs of this plan allowed at once (a run is live while a runner"
        " holds it).",
    )


class Validation(_Strict):
    """Another orchestrator's per-task validation: its validator agents after some tasks.

    Read as stoic verifiers (`stoic.plan.validation`); the defaults are that orchestrator's.
    """

    enabled: bool = Field(False, description="Validate at all.")
    run_after: list[str] = Field(
        default_factory=lambda: ["coder"],
        description="Validate tasks whose agent is one of these.",
    )
    validators: list[str] = Field(
        default_factory=lambda: ["validator"],
        description="The validator agents, each a verifier (its file: ../agents/NAME.md).",
    )
    max_validation_attempts: Annotated[int, Field(ge=1)] = Field(
        1, description="Read, bounds nothing: a stoic verifier never re-runs its task."
    )


class Meta(_Strict):
    """What the plan is."""

    name: str | None = None
    description: str | None = None
    max_attempts_default: Annotated[int, Field(ge=1)] | None = Field(
        None, description="Bound for iterate loops; recovery retries follow DESIGN §7."
    )
    budget: Budget | None = Field(None, description="Limits on the whole run.")
    policy: PolicySpec | None = Field(None, description="Narrows the workspace's policy.")
    verify: list[Verifier] | None = Field(
        None, description="Verifiers run after every task, before the task's own."
    )
    concurrency: Concurrency | None = Field(
        None,
        description="Live runs of this plan allowed at once in a workspace (default: one);"
        " runs of one plan share its meta.name, or its file when it has none.",
    )
    secrets: list[SecretName] | None = Field(
        None, description="Secrets every task is given (see a task's `secrets:`)."
    )
    gate: list[dict[str, Any]] | None = Field(
        None,
        description="Gate rules for this plan's gated agents, as [[gate.rules]] in stoic.toml:"
        " they only narrow the workspace's (a stricter verdict wins, a looser one is ignored).",
    )

    @field_validator("gate")
    @classmethod
    def _gate_rules(cls, value: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        for index, entry in enumerate(value or ()):
            rule = gate_rule(entry, f"meta.gate[{index}]")
            if isinstance(rule, str):
                raise ValueError(rule)
        return value

    validation: Validation | None = Field(
        None, description="Another orchestrator's validation block, run as verifiers."
    )
    source_item: Any = Field(None, json_schema_extra={"deprecated": True})
    plan_doc: Any = Field(None, json_schema_extra={"deprecated": True})
    created: Any = Field(None, json_schema_extra={"deprecated": True})
    requirements_path: Any = Field(None, json_schema_extra={"deprecated": True})
    design: Any = Field(None, json_schema_extra={"deprecated": True})
    design_doc: Any = Field(None, json_schema_extra={"deprecated": True})
    status: Any = Field(None, json_schema_extra={"deprecated": True})
    title: Any = Field(None, json_schema_extra={"deprecated": True})
    id: Any = Field(None, json_schema_extra={"deprecated": True})
    item_type: Any = Field(None, json_schema_extra={"deprecated": True})
    type: Any = Field(None, json_schema_extra={"deprecated": True})
    failure_reason: Any = Field(None, json_schema_extra={"deprecated": True})
    notification_email: Any = Field(None, json_schema_extra={"deprecated": True})


class PlanDocument(_Strict):
    """A whole plan file: `meta` and either `tasks` or `sections`."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        populate_by_name=True,
        title="stoic plan",
        json_schema_extra={"$schema": "https://json-schema.org/draft/2020-12/schema"},
    )

    meta: Meta = Field(default_factory=Meta)
    tasks: list[TaskSpec] | None = None
    sections: list[Section] | None = None

    def all_tasks(self) -> list[TaskSpec]:
        """Every task in plan order, sections flattened."""
        if self.tasks is not None:
            return list(self.tasks)
        return [task for section in self.sections or () for task in section.tasks]
