"""The closed vocabulary of decision records (DESIGN §4).

A record's type says what kind of decision it is; each type admits a fixed set of outcomes.
Adding a type or an outcome is a design change: each one needs a reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum

from stoic.core.graph import GRAPH_STATUSES, RunStatus

__all__ = [
    "FAILURE_OUTCOMES",
    "LIFECYCLE_OUTCOME",
    "OUTCOMES",
    "PLAN_CHECK_WORD",
    "CausalRole",
    "DecisionSource",
    "DecisionTrigger",
    "DecisionType",
    "closest",
    "is_failure",
    "unknown_word",
]


class DecisionType(StrEnum):
    """What kind of decision a record holds."""

    RUN_LIFECYCLE = "run_lifecycle"
    EXECUTION = "execution"
    RECOVERY_EVALUATION = "recovery_evaluation"
    POLICY_CHECK = "policy_check"
    BUDGET_CHECK = "budget_check"
    PROPOSAL = "proposal"
    VERIFICATION = "verification"
    ESCALATION = "escalation"
    PAUSE = "pause"
    RED_FLAG = "red_flag"
    AUDIT = "audit"
    NOTIFICATION = "notification"
    SCHEDULE = "schedule"
    USER = "user"
    GATE = "gate"


class DecisionSource(StrEnum):
    """Who made the decision."""

    SYSTEM = "system"
    HUMAN = "human"
    HYBRID = "hybrid"


class DecisionTrigger(StrEnum):
    """Why the decision was made now."""

    EXPLICIT = "explicit"  # a person asked
    AUTONOMOUS = "autonomous"  # the system chose
    REACTIVE = "reactive"  # a response to a failure


class CausalRole(StrEnum):
    """Where the decision sits relative to a run."""

    PRE_RUN = "pre_run"
    IN_RUN = "in_run"
    POST_RUN = "post_run"


OUTCOMES: Mapping[DecisionType, frozenset[str]] = {
    DecisionType.RUN_LIFECYCLE: frozenset(
        {"started", "completed", "failed", "stuck", "awaiting_approval", "paused"}
    ),
    # `skipped`: at a run's start, a task its plan file marks done (completed, verified, skipped)
    # is recorded done instead of being run.
    DecisionType.EXECUTION: frozenset(
        {"started", "succeeded", "failed", "halted", "interrupted", "skipped"}
    ),
    DecisionType.RECOVERY_EVALUATION: frozenset(
        {"recovery_applied", "recovery_suggested", "recovery_skipped"}
    ),
    DecisionType.POLICY_CHECK: frozenset({"passed", "blocked"}),
    DecisionType.BUDGET_CHECK: frozenset({"passed", "exhausted"}),
    DecisionType.PROPOSAL: frozenset(
        # `undeferred`: a deferral is taken back (deferred → pending); it must be on record too.
        # `execution_started`: on record before an approved action (or a rollback) runs, so two
        # people cannot run it twice and a run that died is known to have begun.
        {
            "created",
            "approved",
            "rejected",
            "deferred",
            "undeferred",
            "execution_started",
            "executed",
            "rolled_back",
        }
    ),
    DecisionType.VERIFICATION: frozenset({"passed", "warned", "failed", "incomplete", "absent"}),
    DecisionType.ESCALATION: frozenset({"raised", "resolved"}),
    DecisionType.PAUSE: frozenset({"paused", "resumed", "refused"}),
    # `noted`: a reviewer's calibration note after trust issues, kept on record with the flags.
    DecisionType.RED_FLAG: frozenset({"raised", "noted"}),
    DecisionType.AUDIT: frozenset({"passed", "failed", "repaired"}),
    DecisionType.NOTIFICATION: frozenset({"sent", "failed"}),
    # A schedule is a person's decision (`added`, `removed`); each of its slots is then claimed
    # once, before anything happens, as `fired`, `skipped` or `failed`; `started` links a fired
    # slot to the run it started (or `failed` says why none started).
    DecisionType.SCHEDULE: frozenset({"added", "removed", "fired", "skipped", "failed", "started"}),
    # Who may use the console, and with which role; a new secret is on record too, because
    # only the secret file naming the latest such record logs in. Never a hash or a secret.
    DecisionType.USER: frozenset({"added", "removed", "role_changed", "secret_reset"}),
    # The agent gate's answer to one tool call (DESIGN §15): `proposed` is on record before the
    # wait for a person, and the answer the agent was given follows it.
    DecisionType.GATE: frozenset(
        {"allowed", "denied", "proposed", "deferred", "suspended", "resumed"}
    ),
}

FAILURE_OUTCOMES: frozenset[tuple[str, str]] = frozenset(
    {
        ("run_lifecycle", "failed"),
        ("run_lifecycle", "stuck"),
        ("execution", "failed"),
        ("execution", "halted"),
        ("execution", "interrupted"),
        ("policy_check", "blocked"),
        ("budget_check", "exhausted"),
        ("verification", "failed"),
        ("verification", "incomplete"),
        ("audit", "failed"),
        ("notification", "failed"),
        ("schedule", "failed"),
    }
)
"""The (type, outcome) pairs `stoic log --failures` shows: something did not go as intended."""


LIFECYCLE_OUTCOME: Mapping[RunStatus, str] = {
    RunStatus.COMPLETED: "completed",
    RunStatus.FAILED: "failed",
    RunStatus.AWAITING_HUMAN: "awaiting_approval",
    RunStatus.PAUSED: "paused",
    # A stopped run goes on with `stoic continue`, as a paused one does; the record's
    # `decision_inputs.status` says which it was.
    RunStatus.INTERRUPTED: "paused",
    # A runner that ends while its graph says work can go on is stuck (never "done").
    RunStatus.RUNNING: "stuck",
}
"""The run_lifecycle outcome (DESIGN §4) that records a run ending with each status."""

PLAN_CHECK_WORD: Mapping[RunStatus, str] = {
    **{status: status.value for status in GRAPH_STATUSES},
    RunStatus.RUNNING: "runnable",  # a plan file is not being run: its tasks could run
}
"""The word `stoic plan check` says for each status the graph analysis gives (DESIGN §6)."""


def is_failure(decision_type: str, decision_outcome: str) -> bool:
    """True when a record reports that something did not go as intended."""
    return (decision_type, decision_outcome) in FAILURE_OUTCOMES


_LONGEST_GUESSED = 100


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice a misspelt or shortened word most likely meant, for "did you mean" hints."""
    if len(word) > _LONGEST_GUESSED:
        return None  # no misspelling is that long, and comparing it would take long
    options = sorted(choices)
    import difflib  # only when a word is wrong: the gate's hook imports this module

    matches = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if matches:
        return matches[0]
    extended = [option for option in options if word and option.startswith(word)]
    return extended[0] if len(extended) == 1 else None


def unknown_word(what: str, word: str, choices: Iterable[str], *, listed: str = "allowed") -> str:
    """The one-line refusal of a word outside a closed vocabulary, with the closest choice:
    "unknown decision 'aproved'; did you mean 'approved'? (allowed: approved, rejected)"."""
    options = list(choices)
    guess = closest(word, options)
    hint = f"; did you mean {guess!r}?" if guess else ""
    return f"unknown {what} {word!r}{hint} ({listed}: {', '.join(options)})"
