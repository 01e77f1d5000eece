"""Escalations in a workspace (DESIGN §9): raised, passed on and answered, on record.

The records are the truth; `escalations/ESC-NNN.md` (the briefing, written when it is raised)
and `escalations/escalation-log.md` (rewritten from the fold after every change) are
projections of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from stoic.core import next_steps
from stoic.core.escalations import (
    Briefing,
    BriefingForm,
    Escalation,
    EscalationDecision,
    EscalationMode,
    EscalationRequest,
    EscalationState,
    history_lines,
    is_escalation_id,
    question_error,
    render_briefing,
    render_escalation_log,
)
from stoic.core.notifications import Event
from stoic.core.records import Decision
from stoic.core.vocabulary import unknown_word
from stoic.exceptions import (
    EscalationNotFound,
    TransitionRefused,
    UsageError,
    WorkspaceError,
)
from stoic.store.atomic import atomic_write
from stoic.store.confined import LinkRefused, read_confined

if TYPE_CHECKING:
    from stoic.store.handle import WorkspaceHandle as Workspace

__all__ = [
    "Escalations",
    "answer_decision",
    "answer_lines",
    "briefing_text",
    "check_answer",
    "escalation_in",
    "raised_decision",
    "title_of",
]

_NEEDLE = b'"decision_type":"escalation"'
_RISKS = {
    EscalationMode.CONVERGENCE: "Another round without a change of approach will likely fail the"
    " same way.",
    EscalationMode.SECURITY_ALERT: "What follows the gate stays blocked until this is decided.",
    EscalationMode.SCOPE_CREEP: "Going on as is grows the work beyond what the plan asked for.",
    EscalationMode.PRODUCTION_INCIDENT: "Users may be affected until a track is chosen.",
    EscalationMode.PROCESS_ISSUE: "The same failure will keep coming back until the process"
    " that produces it changes.",
}


def answer_lines(escalation_id: str, run_id: str | None, *, database: bool = False) -> list[str]:
    """The exact commands that answer an escalation ("To Proceed"). A database's are named
    with `--db`; its runs take no amended plan, and a worker takes an answered task up."""

    def answer(decision: str, **options: str) -> next_steps.NextStep:
        return next_steps.answer_escalation(escalation_id, decision, database=database, **options)

    runs_again = " (the task runs again with it in $STOIC_GUIDANCE)"
    if database:
        runs_again = " (a worker runs the task again with it in $STOIC_GUIDANCE)"
    lines = [
        f"{answer('routed', note='…')} — go on as the note says" + (runs_again if run_id else "")
    ]
    if run_id and not database:
        lines.append(f"{answer('amended', plan='FILE')} — go on with an amended plan")
    stops = ": the task fails and what depends on it is blocked"
    lines += [
        f"{answer('escalated', to='NAME', note='…')} — pass it on; it stays open",
        f"{answer('aborted', note='…')} — stop" + (stops if run_id else ""),
    ]
    if run_id and not database:
        lines.append(f"then {next_steps.continue_run(run_id)}")
    return lines


class Escalations:
    """The escalations of one workspace."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self.folder = workspace.root / "escalations"

    # -- reading -----------------------------------------------------------------------------

    def state(self) -> EscalationState:
        """Every escalation, folded from the log; kept with the open workspace and caught up
        from where it stopped, so raising many reads each record once."""
        log = self.workspace.log
        tail = log.tail_state()
        cached = self.workspace.escalation_cache
        state, start = (
            cached if cached is not None and cached[1] <= tail.good_end else (EscalationState(), 0)
        )
        for _line_no, _offset, raw, _complete in log.lines(start, tail.good_end):
            if _NEEDLE in raw:
                state.feed([orjson.loads(raw)])
        self.workspace.escalation_cache = (state, tail.good_end)
        return state

    def get(self, escalation_id: str) -> Escalation:
        return escalation_in(self.state(), escalation_id)

    def briefing_path(self, escalation_id: str) -> Path:
        return self.folder / f"{escalation_id}.md"

    def read_briefing(self, escalation_id: str) -> str | None:
        """escalations/ESC-NNN.md as it stands, read without following a link; None when it
        is missing."""
        path = self.briefing_path(escalation_id)
        try:
            raw = read_confined(self.workspace.root, path)
        except FileNotFoundError:
            return None
        except LinkRefused as exc:
            raise WorkspaceError(f"cannot read {path}: {exc.strerror}") from exc
        return raw.decode("utf-8", errors="replace")

    # -- raising -----------------------------------------------------------------------------

    def raise_process_issue(self, mode: EscalationMode) -> Escalation | None:
        """The process-issue escalation `mode`'s escalations call for now (DESIGN §9), raised;
        None when none is due. Call it in the transaction that raised the last one."""
        due = self.state().process_issue_for(mode)
        if due is None:
            return None
        return self.raise_(due, actor="system:stoic", details={"for_mode": mode.value})

    def raise_(
        self,
        request: EscalationRequest,
        *,
        actor: str,
        run_id: str | None = None,
        task_id: str | None = None,
        risks: Sequence[str] = (),
        status: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> Escalation:
        """Open an escalation: the record, then its briefing and the log entry.

        A request without exactly one question is refused before anything is written. The
        process issue a mode escalated once too often calls for is the escalation service's to
        raise (`EscalationState.process_issue_for`).
        """
        problem = question_error(request.question)
        if problem is not None:
            raise UsageError(f"escalation refused: {problem}")
        with self.workspace.transaction():
            state = self.state()
            item = self._raise_locked(
                state, request, actor, run_id, task_id, risks, status, details
            )
        self.workspace.announce(
            Event.ESCALATION_RAISED,
            f"{item.id} ({item.mode.value}): {item.question}",
            run_id=item.run_id,
            data={"escalation_id": item.id, "mode": item.mode.value, "task_id": item.task_id},
            lines=[f"briefing: escalations/{item.id}.md"],
        )
        return item

    def _raise_locked(
        self,
        state: EscalationState,
        request: EscalationRequest,
        actor: str,
        run_id: str | None,
        task_id: str | None,
        risks: Sequence[str],
        status: str | None,
        details: Mapping[str, Any] | None,
    ) -> Escalation:
        escalation_id = state.next_id()
        title = request.title or title_of(request, task_id)
        facts = self._history(run_id, task_id, before_seq=None)
        decision = raised_decision(
            escalation_id,
            request,
            actor=actor,
            run_id=run_id,
            task_id=task_id,
            title=title,
            project=facts[0],
            risks=risks,
            status=status,
            details=details,
        )
        record = self.workspace.record_many([decision])[0]
        state.feed([record._asdict()])
        text = briefing_text(state.escalations[escalation_id], facts[1])
        # Under the lock, just appended: the fold is current to the log's end.
        self.workspace.escalation_cache = (state, self.workspace.log.tail_state().good_end)
        with self.workspace.projecting(f"escalations/{escalation_id}.md and the escalation log"):
            atomic_write(self.briefing_path(escalation_id), text.encode(), root=self.workspace.root)
            self._write_log(state)
        return state.escalations[escalation_id]

    def _history(
        self, run_id: str | None, task_id: str | None, *, before_seq: int | None
    ) -> tuple[str, list[dict[str, Any]]]:
        """The project (the run's plan name, else the workspace's folder) and every record of
        the task (before `before_seq`, when a briefing is rebuilt), in one pass over the log."""
        project = self.workspace.root.parent.name or self.workspace.root.name
        history: list[dict[str, Any]] = []
        if run_id is None:
            return project, history
        for record in self.workspace.records(run_id=run_id):
            if before_seq is not None and record.seq >= before_seq:
                break
            if record.decision_type == "run_lifecycle" and record.details.get("plan_name"):
                project = str(record.details["plan_name"])
            if task_id is not None and record.task_id == task_id:
                history.append(record._asdict())
        return project, history

    def catch_up(self, since_offset: int, since_seq: int) -> list[str]:
        """Write what a writer killed between an escalation record and its files left
        behind (records after `since_offset`); returns the briefings written.

        Only the log's new tail, the briefings it names and the escalation log are read to
        see whether anything lags: a live runner's escalations cost a reader no fold.
        """
        log_file = self.folder / "escalation-log.md"
        listed = log_file.read_text(encoding="utf-8") if log_file.is_file() else ""
        end = self.workspace.log.tail_state().good_end
        for _line_no, _offset, raw, _complete in self.workspace.log.lines(since_offset, end):
            if _NEEDLE not in raw:
                continue
            record = orjson.loads(raw)
            escalation_id = str(record.get("escalation_id"))
            if (
                record["decision_outcome"] != "raised"
                or not self.briefing_path(escalation_id).is_file()
                or f"## {escalation_id} " not in listed
            ):
                return self.rebuild(raised_after=since_seq)
        return []

    def rebuild(self, *, raised_after: int = 0) -> list[str]:
        """The escalation log, and the missing briefings of escalations raised after seq
        `raised_after`, from the log: all of them for `stoic audit --repair` (which first moves
        every briefing or log that says other than the log to its quarantine); on open, those
        of the records a killed writer left without their files."""
        with self.workspace.transaction():
            state = self.state()
            rebuilt = []
            for item in state.escalations.values():
                path = self.briefing_path(item.id)
                if item.seq > raised_after and not path.is_file():
                    atomic_write(path, self.briefing_of(item).encode(), root=self.workspace.root)
                    rebuilt.append(item.id)
            self._write_log(state)
        return rebuilt

    def briefing_of(self, item: Escalation, *, form: BriefingForm = BriefingForm.SHOWN) -> str:
        """The briefing as it was written when the escalation was raised, from the log (in an
        earlier `form`: as an earlier stoic wrote it)."""
        project, history = self._history(item.run_id, item.task_id, before_seq=item.seq)
        return briefing_text(item, history, project, form=form)

    # -- answering ---------------------------------------------------------------------------

    def check_answer(
        self, escalation_id: str, decision: str, *, noted: bool, amending: bool, to: str | None
    ) -> tuple[Escalation, EscalationDecision]:
        """See `check_answer`; call it under the transaction that records the answer."""
        return check_answer(
            self.state(), escalation_id, decision, noted=noted, amending=amending, to=to
        )

    def answer(
        self,
        escalation_id: str,
        *,
        decision: str,
        note: str,
        actor: str,
        to: str | None = None,
        amendment: Mapping[str, Any] | None = None,
    ) -> Escalation:
        """Record a person's decision; an unknown or closed escalation is refused."""
        with self.workspace.transaction():
            current, chosen = self.check_answer(
                escalation_id,
                decision,
                noted=bool(note.strip()),
                amending=amendment is not None,
                to=to,
            )
            self.workspace.record_many(
                [
                    answer_decision(
                        current, chosen, note=note, actor=actor, to=to, amendment=amendment
                    )
                ]
            )
            state = self.state()
            with self.workspace.projecting("escalations/escalation-log.md"):
                self._write_log(state)
        return state.escalations[escalation_id]

    def _write_log(self, state: EscalationState) -> None:
        text = render_escalation_log(state.escalations.values())
        atomic_write(self.folder / "escalation-log.md", text.encode(), root=self.workspace.root)


def escalation_in(state: EscalationState, escalation_id: str) -> Escalation:
    """One escalation of `state`; an id that is none, or unknown, is one clear error."""
    if not is_escalation_id(escalation_id):
        raise UsageError(f"{escalation_id!r} is not an escalation id (they look like ESC-001)")
    escalation = state.escalations.get(escalation_id)
    if escalation is None:
        raise EscalationNotFound(f"no escalation {escalation_id}")
    return escalation


def raised_decision(
    escalation_id: str,
    request: EscalationRequest,
    *,
    actor: str,
    run_id: str | None,
    task_id: str | None,
    title: str,
    project: str,
    risks: Sequence[str] = (),
    status: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> Decision:
    """The record that opens an escalation, in either backend: what its briefing says beyond
    the request is on it, so the briefing can be rebuilt (and audited) from the log."""
    where = f"task {task_id} of run {run_id}" if task_id else "the work"
    return Decision(
        decision_type="escalation",
        decision_outcome="raised",
        decision_reason=f"{escalation_id} ({request.mode.value}) raised for {where}:"
        f" {request.question}",
        decision_source="human" if actor.startswith("human:") else "system",
        actor=actor,
        decision_trigger="explicit" if actor.startswith(("human:", "agent:")) else "reactive",
        decision_inputs={"mode": request.mode.value},
        causal_role="in_run" if run_id else None,
        run_id=run_id,
        task_id=task_id,
        escalation_id=escalation_id,
        details={
            **request.to_json(),
            "title": title,
            "briefing": f"escalations/{escalation_id}.md",
            "project": project,
            **({"risks": list(risks)} if risks else {}),
            **({"status": status} if status else {}),
            **(details or {}),
        },
    )


def check_answer(
    state: EscalationState,
    escalation_id: str,
    decision: str,
    *,
    noted: bool,
    amending: bool,
    to: str | None,
) -> tuple[Escalation, EscalationDecision]:
    """The escalation an answer settles and its decision, or the one-line reason it is
    refused (an unknown decision, a missing note, plan or `--to`, an unknown or closed
    escalation)."""
    try:
        chosen = EscalationDecision(decision)
    except ValueError:
        allowed = [item.value for item in EscalationDecision]
        raise UsageError(unknown_word("decision", decision, allowed)) from None
    if chosen is EscalationDecision.AMENDED and not amending:
        raise UsageError("--decision amended needs --plan FILE: the amended plan")
    if chosen is not EscalationDecision.ROUTED and not noted and not amending:
        raise UsageError(f"--decision {chosen.value} needs a --note saying why")
    if chosen is EscalationDecision.ESCALATED and not (to or "").strip():
        raise UsageError("--decision escalated needs --to NAME: who it is handed to")
    current = escalation_in(state, escalation_id)
    if not current.open:
        raise TransitionRefused(
            f"{escalation_id} is closed: it was {current.decision} by"
            f" {current.decided_by} at {current.decided_at}"
        )
    if chosen is EscalationDecision.AMENDED and current.task_id is None:
        raise UsageError(f"{escalation_id} is not about a run's task: nothing to amend")
    return current, chosen


def answer_decision(
    current: Escalation,
    chosen: EscalationDecision,
    *,
    note: str,
    actor: str,
    to: str | None = None,
    amendment: Mapping[str, Any] | None = None,
) -> Decision:
    """The record of a person's answer (checked by `check_answer`), in either backend."""
    outcome = _outcome(current, chosen, note, to)
    details: dict[str, Any] = {"decision": chosen.value, "note": note.strip()}
    if chosen is EscalationDecision.ESCALATED:
        details["to"] = to or "someone else"
    else:
        details["outcome"] = outcome
    if amendment is not None:
        details["amendment"] = dict(amendment)
    return Decision(
        decision_type="escalation",
        decision_outcome="raised" if chosen is EscalationDecision.ESCALATED else "resolved",
        decision_reason=f"{current.id} {chosen.value} by {actor}: {outcome}",
        decision_source="human" if actor.startswith("human:") else "system",
        actor=actor,
        decision_trigger="explicit",
        decision_inputs={"decision": chosen.value, "mode": current.mode.value},
        causal_role="in_run" if current.run_id else None,
        run_id=current.run_id,
        task_id=current.task_id,
        escalation_id=current.id,
        details=details,
    )


def briefing_text(
    item: Escalation,
    history: Sequence[Mapping[str, Any]],
    project: str = "",
    *,
    database: bool = False,
    form: BriefingForm = BriefingForm.SHOWN,
) -> str:
    """The briefing `item`'s record wrote, in either backend: from the record and the task's
    records before it (`history`); `project`, where the record names none (an older one);
    `database`: answered in a database, as its To Proceed says; `form`: see
    `BriefingForm`."""
    where = f"task {item.task_id} of run {item.run_id}" if item.task_id else "the work"
    request = item.request()
    context = [line for line in request.context.splitlines() if line.strip()]
    return render_briefing(
        Briefing(
            escalation_id=item.id,
            title=item.title,
            project=item.project or project,
            date=item.raised_at[:10],
            run_id=item.run_id,
            task_id=item.task_id,
            status=item.status_line
            or f"{where.capitalize()} is waiting for a person: {request.mode.value}.",
            what_happened=(*history_lines(history), *context),
            question=request.question,
            risks=item.risks or _risks_of(request, context),
            to_proceed=tuple(
                answer_lines(item.id, item.run_id if item.task_id else None, database=database)
            ),
        ),
        form=form,
    )


def _risks_of(request: EscalationRequest, context: Sequence[str]) -> tuple[str, ...]:
    """A gate's findings are its risks; other modes get the standing risk of their kind."""
    found = [line for line in context if line.startswith("Finding ")]
    general = (_RISKS[request.mode],) if request.mode in _RISKS else ()
    return (*found, *general)


def title_of(request: EscalationRequest, task_id: str | None) -> str:
    """The escalation's one-line title, the same in every backend that raises it."""
    what = {
        EscalationMode.CONVERGENCE: "did not converge",
        EscalationMode.SECURITY_ALERT: "security alert on a gate",
        EscalationMode.PRODUCTION_INCIDENT: "production incident",
    }.get(request.mode, request.mode.value.replace("-", " "))
    return f"{task_id}: {what}" if task_id else what.capitalize()


def _outcome(current: Escalation, decision: EscalationDecision, note: str, to: str | None) -> str:
    task = f"task {current.task_id}" if current.task_id else "the work"
    said = f" ({note.strip()})" if note.strip() else ""
    if decision is EscalationDecision.ROUTED:
        return f"{task} goes on as told{said}"
    if decision is EscalationDecision.AMENDED:
        return f"{task} goes on with an amended plan{said}"
    if decision is EscalationDecision.ABORTED:
        return f"{task} was stopped{said}"
    return f"passed on to {to or 'someone else'}{said}; still open"
