"""Escalations (DESIGN §9), as pure data and rules: the fold, the briefing, the log entry.

An escalation hands one decision to a person. Decision records are the truth: `escalation/raised`
opens one (or passes an open one on to someone else), `escalation/resolved` closes it with
routed, amended or aborted. The briefing `escalations/ESC-NNN.md` and `escalation-log.md` are
projections written from the records.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

import orjson

from stoic.core.text import escape_controls, flattened
from stoic.core.vocabulary import unknown_word

__all__ = [
    "PROCESS_ISSUE_AFTER",
    "Briefing",
    "BriefingForm",
    "Escalation",
    "EscalationDecision",
    "EscalationMode",
    "EscalationRequest",
    "EscalationState",
    "count_questions",
    "history_lines",
    "is_escalation_id",
    "parse_mode",
    "question_error",
    "render_briefing",
    "render_escalation_log",
]


class EscalationMode(StrEnum):
    """The failure modes that need a person (DESIGN §9's taxonomy)."""

    CONVERGENCE = "convergence"  # an iterate loop did not converge
    INFEASIBLE = "infeasible"  # the plan cannot be done as written
    AMBIGUITY = "ambiguity"
    SCOPE_CREEP = "scope-creep"
    DEPENDENCY_REJECTED = "dependency-rejected"
    SECURITY_ALERT = "security-alert"  # a critical or high verifier finding on a gate
    ARCHITECTURE_CONFLICT = "architecture-conflict"
    PRODUCTION_INCIDENT = "production-incident"
    PROCESS_ISSUE = "process-issue"  # the same mode three times: the process needs a look


class EscalationDecision(StrEnum):
    """What a person decided (the log entry's **Decision:**)."""

    ROUTED = "routed"  # go on as told: the task runs again with the note as guidance
    AMENDED = "amended"  # go on with an amended plan
    ESCALATED = "escalated"  # passed on to someone else; stays open
    ABORTED = "aborted"  # stop: the task fails


PROCESS_ISSUE_AFTER = 3
"""Escalations of one mode in a workspace after which a process-issue escalation is raised."""

_ID = re.compile(r"^ESC-\d{3,}$")
_QUESTION_END = re.compile(r"\?(?=\s|$|[\"')\]])")


def is_escalation_id(text: str) -> bool:
    """Whether `text` is an escalation id (and so safe as a file name)."""
    return bool(_ID.match(text))


def count_questions(text: str) -> int:
    """Sentences in `text` that end with a question mark."""
    return len(_QUESTION_END.findall(text.strip()))


def question_error(question: str | Sequence[str]) -> str | None:
    """Why `question` cannot be a briefing's one question, or None when it can."""
    if not isinstance(question, str):
        if len(question) != 1:
            return f"a briefing needs exactly one question, not {len(question)}"
        question = question[0]
    found = count_questions(question)
    if found == 1 and question.strip().endswith("?"):
        return None
    if found == 0:
        return (
            f"a briefing needs exactly one question; {question.strip()!r} asks none"
            " (end the question with '?')"
        )
    if found == 1:
        return (
            f"a briefing's question ends the request; {question.strip()!r} goes on after it"
            " (put what follows the '?' in the context)"
        )
    return (
        f"a briefing needs exactly one question; {question.strip()!r} asks {found}"
        " (split it: escalate the first, ask the rest once it is answered)"
    )


@dataclass(frozen=True, slots=True)
class EscalationRequest:
    """A task's (or a person's) request for a decision: one mode, one question."""

    mode: EscalationMode
    question: str
    context: str = ""
    title: str = ""

    def to_json(self) -> dict[str, str]:
        data = {"mode": self.mode.value, "question": self.question}
        if self.context:
            data["context"] = self.context
        if self.title:
            data["title"] = self.title
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EscalationRequest:
        """A request as a result file or a record holds it; ValueError says what is wrong."""
        if not isinstance(data, Mapping):
            raise ValueError('`escalate` must be an object like {"mode": …, "question": …}')
        mode = parse_mode(str(data.get("mode") or EscalationMode.AMBIGUITY.value))
        question = data.get("question")
        if isinstance(question, list) and all(isinstance(q, str) for q in question):
            problem = question_error(question)
            if problem is not None:
                raise ValueError(problem)
            question = question[0]
        if not isinstance(question, str):
            raise ValueError("`escalate` needs a `question` (one sentence ending with '?')")
        problem = question_error(question)
        if problem is not None:
            raise ValueError(problem)
        context = data.get("context") or ""
        return cls(
            mode=mode,
            question=question.strip(),
            context=context if isinstance(context, str) else orjson.dumps(context).decode(),
            title=str(data.get("title") or ""),
        )


def parse_mode(text: str) -> EscalationMode:
    """The mode named by `text` (`scope_creep` and `scope-creep` both work); ValueError if none."""
    try:
        return EscalationMode(text.strip().lower().replace("_", "-"))
    except ValueError:
        known = [mode.value for mode in EscalationMode]
        raise ValueError(unknown_word("escalation mode", text, known, listed="known")) from None


@dataclass(frozen=True, slots=True)
class Escalation:
    id: str
    mode: EscalationMode
    question: str
    title: str
    raised_at: str
    raised_by: str
    context: str = ""
    run_id: str | None = None
    task_id: str | None = None
    open: bool = True
    decision: EscalationDecision | None = None
    """The last decision: escalated while open, else how it was closed."""
    decided_by: str | None = None
    decided_at: str | None = None
    note: str = ""
    outcome: str = ""
    handed_to: tuple[str, ...] = ()
    for_mode: str | None = None
    """For a process issue: the mode that kept failing."""
    seq: int = 0
    """The seq of the record that raised it."""
    risks: tuple[str, ...] = ()
    """The risks its raiser named for the briefing (none: the standing risks of its kind)."""
    status_line: str | None = None
    """The Status sentence its raiser gave the briefing, if not the default one."""
    project: str | None = None
    """The project its briefing names (kept in its record since the briefing is audited)."""

    def request(self) -> EscalationRequest:
        return EscalationRequest(self.mode, self.question, self.context, self.title)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "mode": self.mode.value,
            "status": "open" if self.open else "resolved",
            "title": self.title,
            "question": self.question,
            "context": self.context,
            "run_id": self.run_id,
            "task_id": self.task_id,
            "raised_at": self.raised_at,
            "raised_by": self.raised_by,
            "decision": self.decision.value if self.decision else None,
            "decided_by": self.decided_by,
            "decided_at": self.decided_at,
            "note": self.note,
            "outcome": self.outcome,
            "handed_to": list(self.handed_to),
            "briefing": f"escalations/{self.id}.md",
        }


@dataclass(slots=True)
class EscalationState:
    """Every escalation of a workspace, folded from the escalation records in log order."""

    escalations: dict[str, Escalation] = field(default_factory=dict)
    by_mode: dict[str, int] = field(default_factory=dict)
    """Escalations raised per mode (passing one on does not count)."""
    process_issues: set[str] = field(default_factory=set)
    """Modes that already have their process-issue escalation."""

    def feed(self, records: Iterable[Mapping[str, Any]]) -> None:
        for record in records:
            if record["decision_type"] != "escalation":
                continue
            escalation_id = record.get("escalation_id")
            if not escalation_id:
                continue
            details = record["details"]
            current = self.escalations.get(escalation_id)
            if record["decision_outcome"] == "raised":
                if current is None:
                    self._raised(escalation_id, record, details)
                else:  # passed on to someone else: still open
                    self.escalations[escalation_id] = replace(
                        current,
                        decision=EscalationDecision.ESCALATED,
                        decided_by=record["actor"],
                        decided_at=record["decided_at"],
                        note=str(details.get("note", "")),
                        handed_to=(*current.handed_to, str(details.get("to") or "someone else")),
                    )
            elif current is not None:
                self.escalations[escalation_id] = replace(
                    current,
                    open=False,
                    decision=EscalationDecision(details.get("decision", "routed")),
                    decided_by=record["actor"],
                    decided_at=record["decided_at"],
                    note=str(details.get("note", "")),
                    outcome=str(details.get("outcome", "")),
                )

    def _raised(self, escalation_id: str, record: Mapping[str, Any], details: Any) -> None:
        mode = EscalationMode(details.get("mode", "ambiguity"))
        self.escalations[escalation_id] = Escalation(
            id=escalation_id,
            mode=mode,
            question=str(details.get("question", "")),
            title=str(details.get("title", "")),
            raised_at=record["decided_at"],
            raised_by=record["actor"],
            context=str(details.get("context", "")),
            run_id=record.get("run_id"),
            task_id=record.get("task_id"),
            for_mode=details.get("for_mode"),
            seq=record["seq"],
            risks=tuple(map(str, details.get("risks") or ())),
            status_line=str(details["status"]) if details.get("status") else None,
            project=str(details["project"]) if details.get("project") else None,
        )
        if mode is EscalationMode.PROCESS_ISSUE:
            self.process_issues.add(str(details.get("for_mode")))
        else:
            self.by_mode[mode.value] = self.by_mode.get(mode.value, 0) + 1

    def next_id(self) -> str:
        return f"ESC-{len(self.escalations) + 1:03d}"

    def needs_process_issue(self, mode: EscalationMode) -> bool:
        """The mode has failed often enough and has no process-issue escalation yet."""
        return (
            mode is not EscalationMode.PROCESS_ISSUE
            and self.by_mode.get(mode.value, 0) >= PROCESS_ISSUE_AFTER
            and mode.value not in self.process_issues
        )

    def process_issue_for(self, mode: EscalationMode) -> EscalationRequest | None:
        """The process-issue escalation due now that `mode` was escalated once more, if any:
        raised once per mode, at its third escalation."""
        if not self.needs_process_issue(mode):
            return None
        count = self.by_mode.get(mode.value, 0)
        return EscalationRequest(
            mode=EscalationMode.PROCESS_ISSUE,
            title=f"{mode.value} keeps happening",
            question=(
                f"The failure mode {mode.value} has been escalated {count} times in this"
                " workspace: what should change in the process that produces it?"
            ),
            context=", ".join(item.id for item in self.escalations.values() if item.mode is mode)
            + f" were all escalated as {mode.value}.",
        )

    def open_for(self, run_id: str, task_id: str) -> Escalation | None:
        for escalation in self.escalations.values():
            if escalation.open and escalation.run_id == run_id and escalation.task_id == task_id:
                return escalation
        return None


# -- the briefing ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Briefing:
    """What a person needs to decide without asking anything back (DESIGN §9)."""

    escalation_id: str
    title: str
    project: str
    date: str
    run_id: str | None
    task_id: str | None
    status: str
    what_happened: tuple[str, ...]
    question: str
    risks: tuple[str, ...]
    to_proceed: tuple[str, ...]


class BriefingForm(StrEnum):
    """How a briefing or the escalation log is written. `SHOWN` is how stoic writes them now;
    an audit also accepts the two earlier forms for a file written then."""

    SHOWN = "shown"
    """`CONTAINED`, and every control character written as its escape (`\\x1b`): the file
    is read with `cat` too, and must not instruct the terminal."""
    CONTAINED = "contained"
    """What a task, an agent or a proposer wrote stays inside its place: an item of a list is
    one line (its newlines written `\\n`), a question of several lines is quoted (`> `)."""
    AS_IS = "as_is"
    """Each text as it came."""


def render_briefing(briefing: Briefing, *, form: BriefingForm = BriefingForm.SHOWN) -> str:
    """The briefing's markdown; refused (ValueError) unless it holds exactly one question.

    Written `SHOWN`, nothing a task wrote can be a heading or a step of To Proceed, nor an
    instruction to the terminal of whoever reads the file (see `BriefingForm`).
    """
    problem = question_error(briefing.question)
    if problem is not None:
        raise ValueError(problem)
    contained = form is not BriefingForm.AS_IS
    item = flattened if contained else _as_is
    happened = [item(line) for line in briefing.what_happened] or [
        "Nothing is on record for it yet."
    ]
    risks = [item(line) for line in briefing.risks] or ["None known beyond what is above."]
    question = briefing.question.strip()
    if contained and "\n" in question:
        question = "\n".join(f"> {line}".rstrip() for line in question.splitlines())
    text = "\n".join(
        [
            f"# Briefing — {briefing.escalation_id}: {briefing.title}",
            "",
            f"**Project:** {briefing.project} | **Date:** {briefing.date} | "
            f"**Run:** {briefing.run_id or '—'} | **Task:** {briefing.task_id or '—'}",
            "",
            "## Status",
            "",
            item(briefing.status),
            "",
            "## What Happened",
            "",
            *[f"- {line}" for line in happened],
            "",
            "## What Needs Your Decision",
            "",
            question,
            "",
            "## Risks or Concerns",
            "",
            *[f"- {line}" for line in risks],
            "",
            "## To Proceed",
            "",
            *[f"- {line}" for line in briefing.to_proceed],
            "",
        ]
    )
    return escape_controls(text) if form is BriefingForm.SHOWN else text


def _as_is(text: str) -> str:
    return text


def history_lines(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """Everything the log says about one task, one line per record, oldest first.

    This is "What Happened": every attempt, recovery, result and earlier decision, so nobody
    has to ask what was already tried.
    """
    lines = []
    for record in records:
        kind, outcome = record["decision_type"], record["decision_outcome"]
        when = str(record["decided_at"])[:19].replace("T", " ")
        details = record.get("details") or {}
        line = f"{when} — {kind}/{outcome}: {record['decision_reason']}"
        result = details.get("result")
        if kind == "execution" and isinstance(result, Mapping) and result:
            shown = {k: v for k, v in result.items() if k != "escalate"}
            if shown:
                line += f" Result file: {_short(shown)}"
        iterations = details.get("iterations")
        if isinstance(iterations, list) and iterations:
            counts = ", ".join(str(item.get("failures")) for item in iterations)
            line += f" Check failures per iteration: {counts}."
        lines.append(line)
    return lines


def _short(value: Any, limit: int = 200) -> str:
    text = orjson.dumps(value).decode()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_escalation_log(
    escalations: Iterable[Escalation], *, form: BriefingForm = BriefingForm.SHOWN
) -> str:
    """`escalations/escalation-log.md`: one entry per escalation, in order. Each field is one
    line (as in `render_briefing`), so no question, note or name can start an entry or a
    heading of its own, nor instruct a terminal (`form`: see `BriefingForm`)."""
    line = _as_is if form is BriefingForm.AS_IS else flattened
    parts = ["# Escalation log", ""]
    for item in escalations:
        decision = item.decision.value if item.decision else "(open)"
        if item.decision is EscalationDecision.ESCALATED:
            decision += f" to {line(', '.join(item.handed_to))} (still open)"
        where = f" | **Run:** {item.run_id}" if item.run_id else ""
        where += f" | **Task:** {item.task_id}" if item.task_id else ""
        parts += [
            f"## {item.id} — {item.raised_at[:10]}",
            "",
            f"**From:** {line(item.raised_by)} | **Type:** {item.mode.value}{where}",
            "",
            f"**Description:** {line(item.title)}. {line(item.question)}",
            "",
            f"**Decision:** {decision}"
            + (f" by {line(item.decided_by)}" if item.decided_by else ""),
            "",
            f"**Outcome:** {line(item.outcome or item.note or '(waiting)')}",
            "",
        ]
    text = "\n".join(parts)
    return escape_controls(text) if form is BriefingForm.SHOWN else text
