"""What to run next: every stoic command a message, a notice or a file tells a person to run.

They are spelled here and nowhere else, so a renamed command or option is renamed once, and the
test suite checks that each one still names a command the CLI has (`tests/test_next_steps.py`).
A message puts a step in backticks by formatting it (`f"run {audit()}"`); `.text` is the bare
command, for JSON and for lines meant to be copied.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "NextStep",
    "answer_escalation",
    "approve",
    "audit",
    "continue_run",
    "execute",
    "init",
    "plan_schema",
    "propose",
    "queue",
    "resume",
    "retry",
    "rollback",
    "run",
    "run_alongside",
    "run_status",
    "runs",
    "schedule_remove",
    "show_proposal",
    "users_add",
    "users_list",
    "users_reset",
    "users_role",
]


@dataclass(frozen=True)
class NextStep:
    """One stoic command, as a message names it."""

    command: tuple[str, ...]
    """The command's words after `stoic`, as the CLI names them: `("queue", "show")`."""
    arguments: tuple[str, ...] = ()
    """What follows them, as the message shows it: ids, options and placeholders."""
    global_options: tuple[str, ...] = ()
    """Options of `stoic` itself, before the command: `("--local",)`."""

    @property
    def text(self) -> str:
        """The command as typed: stoic audit --repair."""
        return " ".join(("stoic", *self.global_options, *self.command, *self.arguments))

    def __str__(self) -> str:
        return f"`{self.text}`"


def audit(*, repair: bool = False) -> NextStep:
    """Check the log and its views; with `repair`, mend what can be mended."""
    return NextStep(("audit",), ("--repair",) if repair else ())


def resume(
    *,
    procedure: str | None = None,
    reason: str | None = None,
    local: bool = False,
    database: bool = False,
) -> NextStep:
    """Resume a paused workspace (a message may show its options with placeholders); `local`:
    the workspace's own pause, not its database's; `database`: a database's, named."""
    arguments: tuple[str, ...] = ()
    if procedure is not None:
        arguments += ("--procedure", procedure)
    if reason is not None:
        arguments += ("--reason", reason)
    return NextStep(("resume",), arguments + _database(database), _local(local))


def queue(*, local: bool = False) -> NextStep:
    """List the review queue; `local`: the workspace's own, not its database's."""
    return NextStep(("queue",), (), _local(local))


def open_escalations(*, local: bool = False) -> NextStep:
    """List the open escalations; `local`: the workspace's own, not its database's."""
    return NextStep(("escalations",), ("--open",), _local(local))


def _local(local: bool) -> tuple[str, ...]:
    return ("--local",) if local else ()


def _database(database: bool) -> tuple[str, ...]:
    """A database's command, from anywhere: its URL is a placeholder, never the URL itself (it
    may hold a password)."""
    return ("--db", "URL") if database else ()


def run(plan_file: str | None = None) -> NextStep:
    """Run a plan."""
    return NextStep(("run",), () if plan_file is None else (plan_file,))


def run_alongside(plan_file: str) -> NextStep:
    """Run a plan although as many runs of it as it allows are live (recorded as an override)."""
    return NextStep(("run",), (plan_file, "--allow-concurrent"))


def runs(*, plan: str | None = None, status: str | None = None) -> NextStep:
    """The runs of the workspace, newest first: of one plan, or with one status."""
    arguments: tuple[str, ...] = ()
    if plan is not None:
        arguments += ("--plan", plan)
    if status is not None:
        arguments += ("--status", status)
    return NextStep(("runs",), arguments)


def continue_run(run_id: str | None = None) -> NextStep:
    """Continue a run (`run_id` may be a placeholder such as RUN_ID)."""
    return NextStep(("continue",), () if run_id is None else (run_id,))


def retry(run_id: str, task_id: str, *, reason: str = "WHY") -> NextStep:
    """Run a failed task again in its run, a person's decision with its reason (shown in
    double quotes, as a shell needs it)."""
    return NextStep(("retry",), (run_id, task_id, "--reason", f'"{reason}"'))


def approve(proposal_id: str, *, continue_run: bool = False) -> NextStep:
    """Approve a pending proposal; with `continue_run`, continue the run it belongs to."""
    return NextStep(("approve",), (proposal_id, "--continue") if continue_run else (proposal_id,))


def run_status(run_id: str, *, tasks: bool = False) -> NextStep:
    """Show one run; with `tasks`, every task's row."""
    return NextStep(("status",), (run_id, "--tasks") if tasks else (run_id,))


def init(path: str) -> NextStep:
    """Create a workspace at `path`."""
    return NextStep(("init",), (path,))


def schedule_remove(name: str) -> NextStep:
    """Remove a schedule, so that one of its name can be added."""
    return NextStep(("schedule", "remove"), (name,))


def gate_hook() -> NextStep:
    """The agent gate's Claude Code hook."""
    return NextStep(("gate", "claude-code"))


def propose() -> NextStep:
    """Put a proposal in the review queue."""
    return NextStep(("propose",))


def show_proposal(proposal_id: str) -> NextStep:
    """Show one proposal of the review queue."""
    return NextStep(("queue", "show"), (proposal_id,))


def execute(
    proposal_id: str | None = None, *, again: bool = False, confirm: str | None = None
) -> NextStep:
    """Run an approved proposal's action: once more with `again`, confirmed with `confirm`."""
    return NextStep(("execute",), _proposal_arguments(proposal_id, again, confirm))


def rollback(proposal_id: str | None = None, *, again: bool = False) -> NextStep:
    """Run an executed proposal's rollback: once more with `again`."""
    return NextStep(("rollback",), _proposal_arguments(proposal_id, again, None))


def plan_schema() -> NextStep:
    """Print the JSON Schema of the plan format."""
    return NextStep(("plan", "schema"))


def answer_escalation(
    escalation_id: str,
    decision: str,
    *,
    plan: str | None = None,
    to: str | None = None,
    note: str | None = None,
    database: bool = False,
) -> NextStep:
    """Answer an escalation (`database`: a database's); the note is shown in double quotes,
    as a shell needs it."""
    arguments: tuple[str, ...] = (escalation_id, "--decision", decision)
    if plan is not None:
        arguments += ("--plan", plan)
    if to is not None:
        arguments += ("--to", to)
    if note is not None:
        arguments += ("--note", f'"{note}"')
    return NextStep(("escalations", "answer"), arguments + _database(database))


def users_add(name: str = "NAME", role: str = "reviewer") -> NextStep:
    """Let a person use the review console."""
    return NextStep(("users", "add"), (name, "--role", role))


def users_list() -> NextStep:
    """The people who may use the review console."""
    return NextStep(("users", "list"))


def users_reset(name: str = "NAME") -> NextStep:
    """Issue a user a new one-time secret."""
    return NextStep(("users", "reset"), (name,))


def users_role(name: str, role: str) -> NextStep:
    """Give a user another role."""
    return NextStep(("users", "role"), (name, "--role", role))


def _proposal_arguments(
    proposal_id: str | None, again: bool, confirm: str | None
) -> tuple[str, ...]:
    arguments: tuple[str, ...] = () if proposal_id is None else (proposal_id,)
    if confirm is not None:
        arguments += ("--confirm", confirm)
    if again:
        arguments += ("--again",)
    return arguments
