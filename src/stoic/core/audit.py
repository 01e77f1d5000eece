"""Audit of the decision log: chain, sequence, torn tail, projections (DESIGN §12).

Pure: the store feeds lines and projection snapshots in, violations come out as values. A
violation names where it is (seq or line), what is wrong, and what was expected versus found.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

from stoic.core import next_steps
from stoic.core.records import (
    GENESIS_HASH,
    REQUIRED_FIELDS,
    canonical_line_hash,
    hash_of_line,
)

__all__ = [
    "Anchor",
    "AuditReport",
    "ChainChecker",
    "Violation",
    "ViolationCode",
    "diff_states",
]


class ViolationCode(StrEnum):
    """What kind of rule a violation breaks."""

    TORN_TAIL = "torn_tail"  # the last line was cut off by a crash mid-write
    BAD_LINE = "bad_line"  # a line before the last is not JSON; never repaired
    BAD_RECORD = "bad_record"  # valid JSON but not a record (fields missing or of the wrong type)
    HASH_MISMATCH = "hash_mismatch"  # the content no longer matches the record's hash
    CHAIN_BREAK = "chain_break"  # prev_hash is not the hash of the record before
    SEQ_GAP = "seq_gap"  # records are missing
    SEQ_ORDER = "seq_order"  # records are out of order or repeated
    PROJECTION_MISSING = "projection_missing"
    PROJECTION_UNREADABLE = "projection_unreadable"
    PROJECTION_MISMATCH = "projection_mismatch"  # a projection disagrees with a replay of the log
    RECORDS_LOST = "records_lost"  # a file reflects a record the log does not hold; never repaired
    RUN_PLAN_CHANGED = (
        "run_plan_changed"  # a run's plan copy is not the plan it ran; never repaired
    )
    OUTPUTS_FILE_CHANGED = (
        "outputs_file_changed"  # a task's outputs file is not what its end record names
    )
    # Behavioural invariants (DESIGN §12).
    RETRY_WITHOUT_DECISION = "retry_without_decision"  # no recovery_applied or approval before it
    MISSING_EVALUATION = "missing_evaluation"  # a failure without its one recovery evaluation
    EVALUATION_WITHOUT_FAILURE = "evaluation_without_failure"
    RECOVERY_OF_RECOVERY = "recovery_of_recovery"  # a failed approved recovery was recovered
    SECOND_AUTOMATIC_RETRY = "second_automatic_retry"  # more than one automatic retry
    EXECUTION_AFTER_HALT = "execution_after_halt"  # ran after a policy/budget halt, no decision
    RETRY_UNFOUNDED = "retry_unfounded"  # a retry not a person's, or not of the failed attempt
    START_AFTER_PAUSE = "start_after_pause"  # a task started while the workspace was paused
    START_AFTER_DONE = "start_after_done"  # a task started after it was recorded done (skipped)
    CUSTOMER_VIEW_MECHANICS = "customer_view_mechanics"  # the customer view shows mechanics
    PERSON_INSIDE_TASK = "person_inside_task"  # a person's decision made from inside a task
    NOT_A_PERSONS_DECISION = "not_a_persons_decision"  # a proposal decided by no person
    SCHEDULE_SLOT_REFIRED = "schedule_slot_refired"  # a schedule's slot claimed a second time
    GATE_ALLOW_UNAPPROVED = "gate_allow_unapproved"  # an allow citing no approval of that call
    GATE_RESUME_UNDECIDED = "gate_resume_undecided"  # a session resumed before its call was decided
    QUEUE_MISMATCH = "queue_mismatch"  # queue folders or manifest disagree with the log
    SOURCE_MISSING = "source_missing"  # a proposal cites a source that no longer exists
    ESCALATION_MISMATCH = "escalation_mismatch"  # a briefing or the escalation log ≠ the log
    ANCHOR_MISMATCH = "anchor_mismatch"  # the log lacks a record whose hash was kept elsewhere
    USER_FILE_UNBACKED = "user_file_unbacked"  # a secret file no `user` record stands behind
    WORK_ITEM_MISMATCH = "work_item_mismatch"  # a database run's work item ≠ what the log says


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule, located as precisely as the log allows."""

    code: ViolationCode
    message: str
    seq: int | None = None
    line: int | None = None
    expected: str | None = None
    found: str | None = None
    path: str | None = None
    """The workspace file (relative) the violation is about, where it is about one."""

    @classmethod
    def reflects_lost(cls, path: str, reflected: int, last_seq: int) -> Violation:
        """A stamped file reflects a seq past the log's end: records were lost."""
        return cls(
            ViolationCode.RECORDS_LOST,
            f"{path} reflects seq {reflected}, which the log does not contain: records were lost",
            expected=f"last_seq ≤ {last_seq}",
            found=f"last_seq {reflected}",
            path=path,
        )

    @classmethod
    def other_record(cls, path: str, seq: int, digest: str, claimed: str) -> Violation:
        """A stamped file names another hash for its seq: the record it reflects is gone."""
        return cls(
            ViolationCode.RECORDS_LOST,
            f"{path} names a different record as seq {seq}: the record it reflects is no longer"
            " in the log",
            seq=seq,
            expected=digest,
            found=repr(claimed[:64]),
            path=path,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code.value,
            "message": self.message,
            "seq": self.seq,
            "line": self.line,
            "expected": self.expected,
            "found": self.found,
            "path": self.path,
        }

    def describe(self) -> str:
        """One line for a terminal: where, what, expected versus found."""
        where = []
        if self.seq is not None:
            where.append(f"seq {self.seq}")
        if self.line is not None:
            where.append(f"line {self.line}")
        place = f"{', '.join(where)}: " if where else ""
        versus = ""
        if self.expected is not None or self.found is not None:
            versus = f" (expected {self.expected}, found {self.found})"
        return f"{place}{self.code.value}: {self.message}{versus}"


@dataclass(slots=True)
class _PendingGap:
    line: int
    expected_seq: int
    found_seq: int
    found_hash: str
    violation: Violation


@dataclass
class ChainChecker:
    """Checks complete log lines one at a time, in file order.

    Holds only the previous record's seq and hash, so memory stays flat on any log size. A gap of
    exactly one record is held back for one line: if the missing record turns up right after,
    the two lines were swapped and are reported as one out-of-order violation.
    """

    expected_seq: int = 1
    prev_hash: str = GENESIS_HASH
    records: int = 0
    last_seq: int = 0
    last_hash: str = GENESIS_HASH
    _pending: _PendingGap | None = field(default=None, repr=False)

    def feed_chunk(
        self, first_line_no: int, lines: Sequence[bytes], *, ends_log: bool
    ) -> tuple[list[dict[str, Any]], list[Violation]]:
        """Check consecutive complete lines; returns the records among them and violations.

        The loop handles the healthy case inline — it runs once per record of every audit —
        and hands any line that is not a clean continuation of the chain to `feed`.
        """
        records: list[dict[str, Any]] = []
        violations: list[Violation] = []
        loads, required, line_hash = orjson.loads, REQUIRED_FIELDS, canonical_line_hash
        expected, prev, last = self.expected_seq, self.prev_hash, len(lines) - 1
        accepted = 0
        for index, line in enumerate(lines):
            if self._pending is None:
                try:
                    parsed = loads(line)
                except orjson.JSONDecodeError:
                    parsed = None
                if type(parsed) is dict and parsed.keys() >= required:
                    seq, digest = parsed["seq"], parsed["hash"]
                    if (
                        type(seq) is int
                        and seq == expected
                        and parsed["prev_hash"] == prev
                        and type(digest) is str
                        and len(digest) == 64
                        and line_hash(line, digest) == digest
                    ):
                        records.append(parsed)
                        expected += 1
                        prev = digest
                        accepted += 1
                        continue
            self._accept(accepted, expected, prev)
            accepted = 0
            record, found = self.feed(
                first_line_no + index, line, is_last=ends_log and index == last
            )
            if record is not None:
                records.append(record)
            violations.extend(found)
            expected, prev = self.expected_seq, self.prev_hash
        self._accept(accepted, expected, prev)
        return records, violations

    def _accept(self, accepted: int, expected: int, prev: str) -> None:
        """Account for the records the fast loop accepted since it last handed over."""
        if accepted:
            self.records += accepted
            self.last_seq = expected - 1
            self.last_hash = prev
        self.expected_seq, self.prev_hash = expected, prev

    def feed(
        self, line_no: int, line: bytes, *, is_last: bool = False
    ) -> tuple[dict[str, Any] | None, list[Violation]]:
        """Check one complete line; returns the parsed record (when it is one) and violations."""
        violations: list[Violation] = []
        try:
            parsed = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            violations.extend(self._flush_pending())
            if is_last:
                violations.append(
                    Violation(
                        ViolationCode.TORN_TAIL,
                        f"the last line is not valid JSON ({exc}); a write was cut off —"
                        f" {next_steps.audit(repair=True)} removes it",
                        line=line_no,
                    )
                )
            else:
                violations.append(
                    Violation(
                        ViolationCode.BAD_LINE,
                        f"not valid JSON ({exc}); lines before the last are never repaired",
                        line=line_no,
                    )
                )
            return None, violations
        problem = _record_problem(parsed)
        if problem is not None:
            violations.extend(self._flush_pending())
            claimed = parsed.get("seq") if isinstance(parsed, dict) else None
            violations.append(
                Violation(
                    ViolationCode.BAD_RECORD,
                    problem,
                    seq=claimed if isinstance(claimed, int) else None,
                    line=line_no,
                )
            )
            return None, violations

        seq: int = parsed["seq"]
        stored_hash: str = parsed["hash"]
        if hash_of_line(line, parsed) != stored_hash:
            violations.append(
                Violation(
                    ViolationCode.HASH_MISMATCH,
                    "the record's content does not match its hash: it was changed after writing",
                    seq=seq,
                    line=line_no,
                )
            )
        violations.extend(self._check_sequence(line_no, seq, parsed["prev_hash"], stored_hash))
        self.records += 1
        self.last_seq = seq
        self.last_hash = stored_hash
        return parsed, violations

    def finish(self) -> list[Violation]:
        """Violations still held back when the log ends."""
        return self._flush_pending()

    def _check_sequence(
        self, line_no: int, seq: int, prev_hash: str, stored_hash: str
    ) -> list[Violation]:
        out: list[Violation] = []
        link_to, self.prev_hash = self.prev_hash, stored_hash
        pending = self._pending
        if pending is not None:
            self._pending = None
            if seq == pending.expected_seq and pending.found_seq == seq + 1:
                out.append(
                    Violation(
                        ViolationCode.SEQ_ORDER,
                        f"seq {seq + 1} (line {pending.line}) and seq {seq} (line {line_no})"
                        " are swapped",
                        seq=seq,
                        line=line_no,
                        expected=f"seq {seq} at line {pending.line}",
                        found=f"seq {seq + 1}",
                    )
                )
                self.expected_seq = seq + 2
                # The record after the pair links to the later of the two.
                self.prev_hash = pending.found_hash
                return out
            out.append(pending.violation)
        if seq == self.expected_seq:
            if prev_hash != link_to:
                out.append(
                    Violation(
                        ViolationCode.CHAIN_BREAK,
                        "prev_hash is not the hash of the record before it",
                        seq=seq,
                        line=line_no,
                        expected=link_to,
                        found=prev_hash,
                    )
                )
            self.expected_seq = seq + 1
        elif seq > self.expected_seq:
            missing = (
                f"seq {self.expected_seq}"
                if seq == self.expected_seq + 1
                else f"seqs {self.expected_seq}–{seq - 1}"
            )
            gap = Violation(
                ViolationCode.SEQ_GAP,
                f"{missing} missing: the log has a gap before this record",
                seq=seq,
                line=line_no,
                expected=f"seq {self.expected_seq}",
                found=f"seq {seq}",
            )
            if seq == self.expected_seq + 1:
                self._pending = _PendingGap(line_no, self.expected_seq, seq, stored_hash, gap)
            else:
                out.append(gap)
            self.expected_seq = seq + 1
        else:
            out.append(
                Violation(
                    ViolationCode.SEQ_ORDER,
                    f"seq {seq} appears after seq {self.expected_seq - 1}:"
                    " records are out of order or repeated",
                    seq=seq,
                    line=line_no,
                    expected=f"seq {self.expected_seq}",
                    found=f"seq {seq}",
                )
            )
        return out

    def _flush_pending(self) -> list[Violation]:
        if self._pending is None:
            return []
        pending, self._pending = self._pending, None
        return [pending.violation]


def _record_problem(parsed: object) -> str | None:
    # The common case first, in as few operations as possible: this runs once per record.
    if type(parsed) is dict and parsed.keys() >= REQUIRED_FIELDS:
        seq, digest, prev = parsed["seq"], parsed["hash"], parsed["prev_hash"]
        if (
            type(seq) is int
            and seq >= 1
            and type(digest) is str
            and len(digest) == 64
            and type(prev) is str
            and len(prev) == 64
        ):
            return None
    if not isinstance(parsed, dict):
        return "not a JSON object"
    missing = REQUIRED_FIELDS - parsed.keys()
    if missing:
        return f"not a decision record: lacks {', '.join(sorted(missing))}"
    seq = parsed["seq"]
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        return f"seq must be a whole number ≥ 1, not {seq!r}"
    for name in ("hash", "prev_hash"):
        value = parsed[name]
        if not isinstance(value, str) or len(value) != 64:
            return f"{name} must be 64 hex characters"
    return None


def diff_states(
    expected: Mapping[str, Any], found: Mapping[str, Any], prefix: str = ""
) -> Iterator[tuple[str, Any, Any]]:
    """Paths at which two JSON-like states differ, with the value each holds there."""
    for key in sorted(expected.keys() | found.keys()):
        path = f"{prefix}{key}"
        left, right = expected.get(key), found.get(key)
        if isinstance(left, Mapping) and isinstance(right, Mapping):
            yield from diff_states(left, right, prefix=f"{path}.")
        elif left != right:
            yield path, left, right


@dataclass(frozen=True, slots=True)
class AuditReport:
    """What an audit found; `ok` when there is nothing to report."""

    records: int
    last_seq: int
    violations: tuple[Violation, ...]
    repaired: Mapping[str, Any] | None = None
    head: Anchor | None = None
    """The last whole record when the audit ended: what a person keeps elsewhere as an anchor."""

    @property
    def ok(self) -> bool:
        return not self.violations

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "records": self.records,
            "last_seq": self.last_seq,
            "violations": [violation.to_dict() for violation in self.violations],
            "repaired": dict(self.repaired) if self.repaired is not None else None,
            "head": str(self.head) if self.head is not None else None,
        }


_HASH_DIGITS = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True)
class Anchor:
    """A record's seq and hash kept outside the workspace (`SEQ:HASH`).

    The chain proves the log was not edited in place; only an anchor kept elsewhere proves it
    was not rewritten whole and re-hashed by someone who can write the workspace.
    """

    seq: int
    hash: str

    @classmethod
    def parse(cls, text: str) -> Anchor:
        """`SEQ:HASH` as `stoic audit --head` prints it; ValueError saying what is wrong."""
        seq_text, colon, digest = text.strip().partition(":")
        if not colon or not seq_text.isdigit() or len(seq_text) > 18 or int(seq_text) < 1:
            raise ValueError(f"{text[:80]!r} is not SEQ:HASH (a seq of 1 or more, a colon, …)")
        digest = digest.lower()
        if len(digest) != 64 or not set(digest) <= _HASH_DIGITS:
            raise ValueError(f"{text[:80]!r}: the hash must be 64 hex digits (sha256)")
        return cls(int(seq_text), digest)

    def __str__(self) -> str:
        return f"{self.seq}:{self.hash}"


def check_anchor(anchor: Anchor, found_hash: str | None, last_seq: int) -> Violation | None:
    """Whether the log still holds exactly the anchored record.

    `found_hash` is the hash of the log's record with the anchor's seq (None: no readable
    record has it); `last_seq` is where the log ends.
    """
    if found_hash == anchor.hash:
        return None
    if found_hash is None:
        where = (
            f"the log ends at seq {last_seq}: records were lost"
            if anchor.seq > last_seq
            else "no readable record has that seq"
        )
        message = f"the anchored record seq {anchor.seq} is not in the log ({where})"
    else:
        message = (
            f"the log's record seq {anchor.seq} is not the anchored one: the log was"
            " rewritten from there on (or the anchor was copied wrong)"
        )
    return Violation(
        ViolationCode.ANCHOR_MISMATCH,
        message,
        seq=anchor.seq,
        expected=anchor.hash,
        found=found_hash,
    )
