"""Verifiers (DESIGN §10) and iterate loops (DESIGN §7), as pure rules over their outputs.

A verifier is fail-open: one that is not there is skipped silently (tier 1); one that fails or
prints something that is not a report is skipped with a visible warning (tiers 2 and 3) and the
work goes on. A valid report decides PASS, WARN or FAIL from its findings' severities.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

from stoic.core.text import counted

__all__ = [
    "BLOCKING_SEVERITIES",
    "Convergence",
    "Finding",
    "Report",
    "Severity",
    "VerificationOutcome",
    "VerificationStatus",
    "convergence",
    "parse_report",
]


class Severity(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    WARNING = "warning"
    INFO = "info"


BLOCKING_SEVERITIES = frozenset({Severity.CRITICAL, Severity.HIGH})
"""On a gate, a finding of these severities blocks what follows."""


class VerificationStatus(StrEnum):
    """The record outcome of one verifier run (DESIGN §4 `verification`)."""

    PASSED = "passed"
    WARNED = "warned"
    FAILED = "failed"
    INCOMPLETE = "incomplete"  # tiers 2 and 3: it ran but said nothing usable
    ABSENT = "absent"  # tier 1: it is not there


@dataclass(frozen=True, slots=True)
class Finding:
    id: str
    severity: Severity
    category: str
    description: str
    recommendation: str

    def to_json(self) -> dict[str, str]:
        return {
            "id": self.id,
            "severity": self.severity.value,
            "category": self.category,
            "description": self.description,
            "recommendation": self.recommendation,
        }

    def line(self) -> str:
        text = f"[{self.severity.value}] {self.id}: {self.description}"
        return text + (f" — {self.recommendation}" if self.recommendation else "")


@dataclass(frozen=True, slots=True)
class Report:
    """A valid verification report."""

    findings: tuple[Finding, ...]

    @property
    def status(self) -> str:
        """FAIL if any critical, WARN if any warning or high, else PASS."""
        severities = {finding.severity for finding in self.findings}
        if Severity.CRITICAL in severities:
            return "FAIL"
        if severities & {Severity.WARNING, Severity.HIGH}:
            return "WARN"
        return "PASS"

    @property
    def counts(self) -> dict[str, int]:
        counts = {severity.value: 0 for severity in Severity}
        for finding in self.findings:
            counts[finding.severity.value] += 1
        return counts

    @property
    def blocking(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity in BLOCKING_SEVERITIES)

    @property
    def outcome(self) -> VerificationStatus:
        return {
            "FAIL": VerificationStatus.FAILED,
            "WARN": VerificationStatus.WARNED,
            "PASS": VerificationStatus.PASSED,
        }[self.status]


def parse_report(data: object) -> Report:
    """A report from parsed JSON; ValueError says what is wrong with it (tier 3).

    The format: `{"verification_report": {"findings": [{"id", "severity", "category",
    "description", "recommendation"}]}}`, severity one of critical, high, warning, info.
    """
    if not isinstance(data, Mapping) or not isinstance(data.get("verification_report"), Mapping):
        raise ValueError('not a report: expected {"verification_report": {"findings": [...]}}')
    findings = data["verification_report"].get("findings")
    if not isinstance(findings, list):
        raise ValueError("not a report: `verification_report.findings` must be a list")
    parsed = []
    for number, item in enumerate(findings, start=1):
        if not isinstance(item, Mapping):
            raise ValueError(f"not a report: finding {number} is not an object")
        try:
            severity = Severity(str(item.get("severity", "")).lower())
        except ValueError:
            raise ValueError(
                f"not a report: finding {number} has severity {item.get('severity')!r}"
                " (allowed: critical, high, warning, info)"
            ) from None
        description = item.get("description")
        if not isinstance(description, str) or not description.strip():
            raise ValueError(f"not a report: finding {number} has no description")
        parsed.append(
            Finding(
                id=str(item.get("id") or f"F{number}"),
                severity=severity,
                category=str(item.get("category") or ""),
                description=description.strip(),
                recommendation=str(item.get("recommendation") or ""),
            )
        )
    return Report(tuple(parsed))


def report_from_output(output: bytes) -> Report:
    """A report printed as a verifier's whole output; ValueError when it is not one."""
    text = output.strip()
    if not text:
        raise ValueError("not a report: the verifier printed nothing")
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        shown = text[:60].decode(errors="replace")
        raise ValueError(f"not a report: its output is not JSON ({shown!r}…)") from None
    return parse_report(data)


@dataclass(frozen=True, slots=True)
class VerificationOutcome:
    """One verifier run, as its record and the run's state keep it."""

    verifier: str
    status: VerificationStatus
    duration_s: float = 0.0
    reason: str = ""
    """Why it was skipped (tiers 1–3)."""
    report: Report | None = None
    gate: bool = False
    log: str | None = None

    @property
    def warning(self) -> bool:
        """Tiers 2 and 3: it must be seen, on stderr and in the run summary."""
        return self.status is VerificationStatus.INCOMPLETE

    @property
    def blocks(self) -> bool:
        """A gate with a critical or high finding blocks what follows."""
        return self.gate and self.report is not None and bool(self.report.blocking)

    def details(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "verifier": self.verifier,
            "gate": self.gate,
            "duration_s": round(self.duration_s, 6),
        }
        if self.reason:
            data["reason"] = self.reason
        if self.report is not None:
            data["status"] = self.report.status
            data["counts"] = self.report.counts
            data["findings"] = [finding.to_json() for finding in self.report.findings]
        if self.log:
            data["log"] = self.log
        return data


def state_entry(details: Mapping[str, Any], outcome: str) -> dict[str, Any] | None:
    """A verifier's sub-entry in state.json; none for an absent one (tier 1)."""
    if outcome == VerificationStatus.ABSENT:
        return None
    if outcome == VerificationStatus.INCOMPLETE:
        return {"status": "skipped", "reason": details.get("reason", "")}
    return {
        "status": details.get("status"),
        "counts": details.get("counts", {}),
        "duration_s": details.get("duration_s", 0.0),
        "gate": details.get("gate", False),
    }


# -- iterate loops ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Convergence:
    """Where an iterate loop stands after a check."""

    converged: bool
    go_on: bool
    why: str = ""


def convergence(
    failures: Sequence[int | None], *, max_iterations: int, stall_after: int | None
) -> Convergence:
    """Decide after each check: converged (no failures), iterate again, or escalate.

    Escalate when the bound is reached, or when the failure count has not dropped below its
    best for `stall_after` iterations in a row (an unknown count never counts as a drop).
    """
    last = failures[-1]
    if last == 0:
        return Convergence(converged=True, go_on=False)
    # "unknown", never "?": the why goes into a person's question, which asks exactly one.
    shown = ", ".join("unknown" if count is None else str(count) for count in failures)
    if len(failures) >= max_iterations:
        return Convergence(
            False,
            False,
            f"{counted(len(failures), 'iteration')} (the bound) left failures: {shown}",
        )
    if stall_after is not None:
        best: int | None = None
        since_drop = 0
        for count in failures:
            if count is not None and (best is None or count < best):
                best, since_drop = count, 0
            else:
                since_drop += 1
        if since_drop >= stall_after:
            return Convergence(
                False,
                False,
                f"the failure count has not dropped for {since_drop} iterations: {shown}",
            )
    return Convergence(converged=False, go_on=True)


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check of an iterate loop."""

    iteration: int
    failures: int | None
    exit_code: int | None
    duration_s: float
    log: str | None = None
    notes: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "iteration": self.iteration,
            "failures": self.failures,
            "duration_s": round(self.duration_s, 6),
        }
        if self.exit_code is not None:
            data["check_exit_code"] = self.exit_code
        if self.log:
            data["check_log"] = self.log
        return data


def failure_count(result: Mapping[str, Any] | None, exit_code: int | None) -> int | None:
    """The check's failure count: its result file's `failures`, else 0 on exit 0, else unknown."""
    if result is not None:
        count = result.get("failures")
        if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
            return count
    return 0 if exit_code == 0 else None
