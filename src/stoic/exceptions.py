"""Errors stoic raises to the code that calls it.

Every error stoic raises on purpose derives from `StoicError` and carries the exit code the CLI
uses for it, so the command line can turn any of them into one clear line::

    StoicError                      exit 1 unless a subclass says otherwise
    ├── UsageError                  exit 2: the caller asked for something that cannot be done
    │   ├── WorkspaceNotFound       no workspace where one was expected
    │   ├── WorkspaceExists         `init` over an existing workspace
    │   ├── InvalidDecision         a record that does not fit the vocabulary
    │   ├── RunLimitReached         the plan has as many live runs as it allows
    │   └── ActingAsPerson          a task (or its worker) tried to decide as a person
    ├── ConfigError                 exit 2: `stoic.toml` is invalid (file, line, hint)
    ├── ProposalNotFound            no proposal has that id
    ├── EscalationNotFound          no escalation has that id
    ├── TransitionRefused           a proposal or escalation cannot take that decision now
    ├── PolicyRefused               the workspace's policy forbids the process (on record)
    ├── WorkspacePaused             exit 4: new work is refused until a person resumes
    ├── WaitTimedOut                a run was still running when a wait for it gave up
    └── WorkspaceError              the workspace cannot do what was asked
        ├── WorkspaceNotWritable    read-only folder, full disk, failed fsync
        ├── LogTornTail             the last line of the log was cut off; appends are refused
        ├── LogCorrupt              a bad line before the last; never repaired automatically
        ├── ProjectionMismatch      a projection file does not line up with the log
        └── SchemaTooNew            a newer stoic made this database; this one refuses it

The failures a *task* raises to tell stoic what went wrong are another tree: `stoic.failures`
(also importable as `stoic.errors`).
"""

from __future__ import annotations

__all__ = [
    "ActingAsPerson",
    "ConfigError",
    "EscalationNotFound",
    "InvalidDecision",
    "LogCorrupt",
    "LogTornTail",
    "PolicyRefused",
    "ProjectionMismatch",
    "ProposalNotFound",
    "RunLimitReached",
    "SchemaTooNew",
    "StoicError",
    "TransitionRefused",
    "UsageError",
    "WaitTimedOut",
    "WorkspaceError",
    "WorkspaceExists",
    "WorkspaceNotFound",
    "WorkspaceNotWritable",
    "WorkspacePaused",
]


class StoicError(Exception):
    """Base of every error stoic raises on purpose."""

    exit_code: int = 1


class UsageError(StoicError):
    """The caller asked for something that cannot be done as asked."""

    exit_code = 2


class WorkspaceNotFound(UsageError):
    """There is no workspace at the given path."""


class WorkspaceExists(UsageError):
    """`init` was asked to create a workspace where one already exists."""


class InvalidDecision(UsageError):
    """A decision record that does not fit the record vocabulary."""


class RunLimitReached(UsageError):
    """A run of a plan was refused: as many runs of it as it allows are live (DESIGN §6)."""

    def __init__(self, message: str, live_run_ids: tuple[str, ...]) -> None:
        super().__init__(message)
        self.live_run_ids = live_run_ids
        """The live runs of the plan, for a caller that shows them its own way."""


class ActingAsPerson(UsageError):
    """A process a run started for a task tried to make a person's decision."""


class ConfigError(StoicError):
    """`stoic.toml` cannot be read or holds an invalid setting."""

    exit_code = 2


class WorkspaceError(StoicError):
    """The workspace is in a state that prevents the operation."""


class WorkspaceNotWritable(WorkspaceError):
    """A write failed (read-only folder, full disk, failed fsync); nothing partial was kept."""


class LogTornTail(WorkspaceError):
    """The last line of the decision log is incomplete; appends wait for `stoic audit --repair`."""


class LogCorrupt(WorkspaceError):
    """A line before the last is not a valid record. It is never repaired or skipped."""


class ProjectionMismatch(WorkspaceError):
    """A projection file does not line up with the decision log."""


class SchemaTooNew(WorkspaceError):
    """The database holds a migration this stoic does not know: a newer stoic made it, and an
    older one must not write records by rules it does not know."""


class ProposalNotFound(StoicError):
    """No proposal has that id."""


class EscalationNotFound(StoicError):
    """No escalation has that id."""


class TransitionRefused(StoicError):
    """The proposal or escalation cannot take that decision from where it stands."""


class PolicyRefused(StoicError):
    """The workspace's policy forbids starting that process; the refusal is on record."""


class WorkspacePaused(StoicError):
    """The workspace is paused: new work is refused until a person resumes it."""

    exit_code = 4


class WaitTimedOut(StoicError):
    """A run was still running when the time given to wait for it ran out."""
