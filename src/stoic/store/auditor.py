"""Drives the pure audit over the files of a workspace, and repairs what may be repaired.

The audit reads the log itself from the first byte; a damaged record is listed, never raised.
Repair is deliberately narrow: it removes a torn last line and rebuilds projection files from the
log. It refuses when the log is damaged before its last line, and when any file reflects a record
the log does not hold (records were lost: a rebuild from the shorter log would launder that).
What it would remove or replace is moved to `quarantine/<time>/` first, never deleted.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from stoic.core import next_steps
from stoic.core.audit import AuditReport, ChainChecker, Violation, ViolationCode
from stoic.core.invariants import InvariantChecker
from stoic.core.records import Decision
from stoic.core.text import counted
from stoic.exceptions import WorkspaceNotWritable
from stoic.store.log import FileDecisionLog, TornTail
from stoic.store.quarantine import Quarantine

if TYPE_CHECKING:
    from stoic.store.handle import WorkspaceHandle

__all__ = ["REPAIRABLE", "audit_workspace", "repair_workspace"]

REPAIRABLE = frozenset(
    {
        ViolationCode.TORN_TAIL,
        ViolationCode.PROJECTION_MISSING,
        ViolationCode.PROJECTION_UNREADABLE,
        ViolationCode.PROJECTION_MISMATCH,
        ViolationCode.QUEUE_MISMATCH,
        ViolationCode.ESCALATION_MISMATCH,
        ViolationCode.USER_FILE_UNBACKED,  # moved aside: it could never log in anyway
    }
)
"""What `stoic audit --repair` mends; anything else makes it refuse and change nothing."""

_MAX_LISTED = 10_000


def _consistent_end(log: FileDecisionLog) -> int:
    """The log's size with no write half-done: taken under a shared lock where one is possible."""
    if log.held_here():  # a repair holds the writer lock: nobody else is writing
        return log.size()
    try:
        with log.locked(shared=True):
            return log.size()
    except WorkspaceNotWritable:
        return log.size()


class _Folds:
    """The folds an audit feeds, each guarded: a record no fold can take is listed, and a fold
    that fails anyway stops (named) while the audit goes on."""

    def __init__(self, workspace: WorkspaceHandle) -> None:
        self.invariants = InvariantChecker()
        self.views = [(view.title, view.check()) for view in workspace.views]
        self.broken: dict[str, str] = {}

    def feed(self, records: list[dict[str, Any]], first_line_no: int) -> list[Violation]:
        found: list[Violation] = []
        if not all(_foldable(record) is None for record in records):
            kept = []
            for record in records:
                problem = _foldable(record)
                if problem is None:
                    kept.append(record)
                else:
                    found.append(
                        Violation(
                            ViolationCode.BAD_RECORD,
                            f"not a record stoic can replay: {problem}",
                            seq=record["seq"],
                        )
                    )
            records = kept
        steps: list[tuple[str, Callable[[list[dict[str, Any]]], object]]] = [
            ("the behavioural invariants", self.invariants.feed),
            *((title, check.feed) for title, check in self.views),
        ]
        for name, step in steps:
            if name in self.broken:
                continue
            try:
                step(records)
            except Exception as exc:  # any input: listed, never an internal error
                where = f" (from line {first_line_no})" if first_line_no else ""
                self.broken[name] = f"{type(exc).__name__}: {exc}"
                found.append(
                    Violation(
                        ViolationCode.BAD_RECORD,
                        f"a record{where} cannot be replayed into {name}"
                        f" ({self.broken[name][:200]!r}); it is not checked past that point",
                        seq=records[0]["seq"] if records else None,
                    )
                )
        return found

    def finish(self, name: str, check: Callable[[], list[Violation]]) -> list[Violation]:
        """The violations a fold's final comparison finds; none when the fold stopped early."""
        if name in self.broken:
            return []
        try:
            return check()
        except Exception as exc:  # any input: listed, never an internal error
            return [
                Violation(
                    ViolationCode.BAD_RECORD,
                    f"the log cannot be compared with {name}: {type(exc).__name__}:"
                    f" {str(exc)[:200]!r}",
                )
            ]


_TEXT_FIELDS = ("decision_type", "decision_outcome", "actor", "decided_at", "decision_reason")


def _foldable(record: dict[str, Any]) -> str | None:
    """Why the folds cannot take this record (its fields are not of their types), or None.

    The fields every fold reads; anything odder is left to the guard around each fold.
    """
    if (
        type(record["decision_type"]) is str
        and type(record["decision_outcome"]) is str
        and type(record["decision_inputs"]) is dict
        and type(record["details"]) is dict
        and type(record["actor"]) is str
        and type(record["decided_at"]) is str
        and type(record["decision_reason"]) is str
    ):
        return None
    for name in _TEXT_FIELDS:
        if type(record[name]) is not str:
            return f"{name} is not text"
    return "decision_inputs and details must be objects"


def audit_workspace(workspace: WorkspaceHandle) -> AuditReport:
    """Check chain, sequence, torn tail and every projection; memory stays flat."""
    log = workspace.log
    # The views read up front are read before the log's end is taken: each reflects at most
    # what the log holds by then (a record is durable before any file shows it).
    folds = _Folds(workspace)
    end = _consistent_end(log)
    checker = ChainChecker()
    violations: list[Violation] = []
    dropped = 0

    def note(found: list[Violation]) -> None:
        nonlocal dropped
        room = max(0, _MAX_LISTED - len(violations))
        violations.extend(found[:room])
        dropped += len(found) - len(found[:room])

    for chunk in log.chunks(0, end):
        records, found = checker.feed_chunk(
            chunk.first_line_no, chunk.lines, ends_log=chunk.final and not chunk.fragment
        )
        note(found)
        note(folds.feed(records, chunk.first_line_no))
        if chunk.fragment:
            note(checker.finish())
            note(
                [
                    Violation(
                        ViolationCode.TORN_TAIL,
                        f"the last line is cut off ({len(chunk.fragment)} bytes without a"
                        " newline): a write was interrupted —"
                        f" {next_steps.audit(repair=True)} removes it",
                        line=chunk.first_line_no + len(chunk.lines),
                    )
                ]
            )
    note(checker.finish())
    last_seq = checker.last_seq

    def newest() -> int:
        """Where the log ends now: the queue's and escalations' files are read after it."""
        return max(last_seq, log.tail_state().last_seq)

    note(folds.finish("the behavioural invariants", folds.invariants.finish))
    for title, view in folds.views:
        note(folds.finish(title, functools.partial(view.finish, last_seq, newest)))
    if dropped:
        violations.append(
            Violation(ViolationCode.BAD_LINE, f"{dropped} further violations are not listed")
        )
    return AuditReport(records=checker.records, last_seq=last_seq, violations=tuple(violations))


def repair_workspace(workspace: WorkspaceHandle) -> AuditReport:
    """Remove a torn last line and rebuild projections, record that it did, then audit again.

    Under the writer lock throughout. It changes nothing when the log is damaged before its
    end or records were lost. What it replaces or removes goes to `quarantine/<time>/` first
    (the torn bytes too), and the `audit/repaired` record names each path there.
    """
    with workspace.log.locked():
        before = audit_workspace(workspace)
        refused = [v for v in before.violations if v.code not in REPAIRABLE]
        if before.ok or refused:
            return before
        quarantine = Quarantine(workspace.root)
        for path in sorted({v.path for v in before.violations if v.path is not None}):
            quarantine.move(path)
        log_name = workspace.log.path.relative_to(workspace.root)
        codes = sorted({v.code.value for v in before.violations})

        def decide(torn: TornTail | None) -> Decision:
            parts = []
            details: dict[str, Any] = {"bytes_removed": 0}
            if torn is not None:
                parts.append(
                    f"removed a torn last line of {torn.length} bytes after seq {torn.after_seq}"
                )
                details.update(
                    bytes_removed=torn.length,
                    after_seq=torn.after_seq,
                    removed_prefix=torn.fragment.decode("utf-8", "backslashreplace"),
                )
            parts.append(
                f"rebuilt the {workspace.status_file.projection.name} projection, queue folders,"
                " manifest, escalation files, runs' state.json and execution_log.md from the log"
            )
            if quarantine.kept:
                parts.append(
                    f"moved {counted(len(quarantine.kept), 'file')} aside to {quarantine.relative}"
                )
                details["quarantine"] = str(quarantine.relative)
                details["quarantined"] = list(quarantine.kept)
            details["projections_rebuilt"] = [view.name for view in workspace.views]
            details["violations_before"] = codes
            return Decision.from_mapping(
                {
                    "type": "audit",
                    "outcome": "repaired",
                    "reason": "; ".join(parts).capitalize() + ".",
                    "source": "system",
                    "actor": "system:stoic",
                    "trigger": "explicit",
                    "inputs": {"violations": len(before.violations)},
                    "details": details,
                }
            )

        # The cut and its record are one write; without a torn tail, an ordinary append.
        done = workspace.record_over_torn_tail(
            lambda data: quarantine.keep_bytes(f"{log_name}.torn-tail", data), decide
        )
        record = done[1] if done is not None else workspace.record_many([decide(None)])[0]
        details = dict(record.details)
        workspace.rebuild_projections(quarantine)
        after = audit_workspace(workspace)
    return AuditReport(
        records=after.records,
        last_seq=after.last_seq,
        violations=after.violations,
        repaired={**details, "seq": record.seq},
    )
