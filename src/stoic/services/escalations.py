"""Escalations (DESIGN §9): one question handed to a person, and the answer that settles it.

Raising holds the run it is about while the record is written, and in the same transaction
raises the process issue a mode escalated for the third time calls for
(`EscalationState.process_issue_for`); answering checks the whole answer first, then amends the
run's plan, follows an incident's track and records the decision, in that order and under one
writer, so a refused answer, amendment or track writes nothing and leaves the escalation open.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from stoic.core import next_steps
from stoic.core.escalations import (
    Escalation,
    EscalationDecision,
    EscalationMode,
    EscalationRequest,
    parse_mode,
)
from stoic.exceptions import UsageError
from stoic.store.atomic import atomic_write
from stoic.store.escalations import Escalations
from stoic.store.log import utc_timestamp
from stoic.store.trust import add_to_next_cycle, incident_file, write_incident_file
from stoic.store.workspace import Workspace

__all__ = [
    "TRACKS",
    "Answered",
    "Shown",
    "answer",
    "escalations",
    "follow_track",
    "get",
    "hotfix_plan",
    "raise_",
    "request",
    "request_from_task",
    "show",
]

TRACKS = ("next-cycle", "hotfix")
_HOTFIX_STEPS = (
    ("reproduce", "reproduce the incident (a failing test or a script)"),
    ("fix", "make the change that fixes it"),
    ("verify", "run the checks that show it is fixed"),
    ("deploy", "deploy the fix"),
    ("sign-off", "confirm in production that the incident is over"),
)


@dataclass(frozen=True, slots=True)
class Answered:
    """What answering an escalation did."""

    escalation: Escalation
    """The escalation as the answer left it (still open when it was passed on)."""
    amendment: Mapping[str, Any] | None
    """What the amended plan changed, when the answer came with one."""
    track_done: str | None
    """What following an incident's track did, in words."""
    continue_run: str | None
    """The run to continue now that its question is settled, if any."""


@dataclass(frozen=True, slots=True)
class Shown:
    """One escalation and its briefing, as escalations/ESC-NNN.md holds it."""

    escalation: Escalation
    briefing: str


def request(mode: str, question: str, context: str = "") -> EscalationRequest:
    """An escalation request from its words; a bad mode or question is refused."""
    try:
        return EscalationRequest.from_json(
            {"mode": parse_mode(mode).value, "question": question, "context": context}
        )
    except ValueError as exc:
        raise UsageError(f"escalation refused: {exc}") from None


def request_from_task(result_file: Path, request: EscalationRequest) -> None:
    """From inside a running task: add the request to the task's result file (replaced
    atomically), so the task is suspended when it ends and the run waits for the answer."""
    data: dict[str, object] = {}
    if result_file.exists():
        try:
            loaded = orjson.loads(result_file.read_bytes())
        except orjson.JSONDecodeError as exc:
            raise UsageError(
                f"{result_file} is not valid JSON ({exc}); cannot add the escalation"
            ) from None
        if isinstance(loaded, dict):
            data = loaded
    data["escalate"] = request.to_json()
    atomic_write(result_file, orjson.dumps(data), root=result_file.parent)  # the task's own file


def raise_(
    workspace: Workspace,
    request: EscalationRequest,
    *,
    actor: str,
    run_id: str | None = None,
    task_id: str | None = None,
) -> Escalation:
    """Open an escalation; one about a run's task holds the run until it is on record, so no
    runner starts the task meanwhile. The third of a mode also raises a process issue."""
    with contextlib.ExitStack() as held:
        if run_id is not None and task_id is not None:
            from stoic.run.lifecycle import escalation_target

            held.enter_context(escalation_target(workspace, run_id, task_id))
        store = Escalations(workspace)
        with workspace.transaction():
            escalation = store.raise_(request, actor=actor, run_id=run_id, task_id=task_id)
            store.raise_process_issue(request.mode)
        return escalation


def escalations(workspace: Workspace, *, open_only: bool = False) -> list[Escalation]:
    """Every escalation, oldest first (or only the open ones)."""
    state = Escalations(workspace).state()
    return [item for item in state.escalations.values() if item.open or not open_only]


def get(workspace: Workspace, escalation_id: str) -> Escalation:
    """One escalation; an unknown id is refused."""
    return Escalations(workspace).get(escalation_id)


def show(workspace: Workspace, escalation_id: str) -> Shown:
    """One escalation with its briefing; a briefing gone missing is named, not rebuilt here."""
    store = Escalations(workspace)
    escalation = store.get(escalation_id)
    briefing = store.read_briefing(escalation_id)
    if briefing is None:
        path = store.briefing_path(escalation_id)
        raise UsageError(
            f"{path} is missing: {next_steps.audit(repair=True)} writes it again from the log"
        )
    return Shown(escalation, briefing)


def answer(
    workspace: Workspace,
    escalation_id: str,
    *,
    decision: str,
    actor: str,
    note: str = "",
    plan: Path | None = None,
    to: str | None = None,
    track: str | None = None,
) -> Answered:
    """Answer an escalation: amend its run's plan (`plan`), follow an incident's `track`, and
    record the decision.

    The whole answer is checked first, under the writer that records it: the decision, the
    escalation (it exists and is open), the plan and the track for that decision. Only then
    are the amended plan's copy and the track's file written, so a refused answer leaves
    nothing behind.
    """
    if plan is not None and decision != "amended":
        raise UsageError("--plan goes with --decision amended")
    store = Escalations(workspace)
    with workspace.transaction():
        if plan is not None and store.get(escalation_id).run_id is None:
            raise UsageError(f"{escalation_id} is not about a run: nothing to amend")
        # A track's words go into the note: they are the answer's why.
        current, chosen = store.check_answer(
            escalation_id,
            decision,
            noted=bool(note.strip()) or track is not None,
            amending=plan is not None,
            to=to,
        )
        if track is not None:
            _check_track(current, chosen, track)
        amendment = None
        if plan is not None and current.run_id is not None:  # the plan is checked, then kept
            from stoic.run.lifecycle import amend_run

            amendment = amend_run(workspace, current.run_id, plan)
        done = None
        if track is not None:
            done = follow_track(workspace, current, track)
            note = f"track: {track}; {done}" + (f"; {note}" if note else "")
        escalation = store.answer(
            escalation_id, decision=decision, note=note, actor=actor, to=to, amendment=amendment
        )
    settled = escalation.run_id if escalation.run_id and not escalation.open else None
    return Answered(escalation, amendment, done, settled)


def _check_track(escalation: Escalation, decision: EscalationDecision, track: str) -> None:
    """A track is an incident's, one of TRACKS, and settles it: passing it on does not."""
    if escalation.mode is not EscalationMode.PRODUCTION_INCIDENT:
        raise UsageError(f"--track is for production incidents; {escalation.id} is not")
    if track not in TRACKS:
        raise UsageError(f"unknown track {track!r} (allowed: {', '.join(TRACKS)})")
    if decision is EscalationDecision.ESCALATED:
        raise UsageError(
            f"--track settles {escalation.id}, and --decision escalated keeps it open:"
            " choose the track when answering it for good"
        )


# -- production incidents ----------------------------------------------------------------------


def hotfix_plan(incident: str, plan_name: str, plan_file: str) -> str:
    """A plan for the hotfix track: reproduce → fix → verify → deploy → sign-off.

    Each step's command says what to put there and fails until it is replaced, so a plan run
    as written never reports a fix that did not happen. Deploy and sign-off wait for approval.
    """
    lines = [
        f"# Hotfix plan for: {incident}",
        f"# Replace each step's command with the real one, then: {next_steps.run(plan_file).text}",
        "meta:",
        f"  name: {plan_name}",
        "tasks:",
    ]
    previous: str | None = None
    for step, what in _HOTFIX_STEPS:
        message = f"{step}: {what}; replace this command in {plan_file}"
        lines += [
            f"  - id: {step}",
            f"    description: {orjson.dumps(what.capitalize()).decode()}",
            f"    run: [sh, -c, {orjson.dumps(f'echo {message!r} >&2; exit 2').decode()}]",
        ]
        if previous is not None:
            lines.append(f"    depends_on: [{previous}]")
        if step in ("deploy", "sign-off"):
            lines.append("    approval: required")
        previous = step
    return "\n".join(lines) + "\n"


def follow_track(workspace: Workspace, escalation: Escalation, track: str) -> str:
    """Act on the chosen track of an incident; returns what was done, in words."""
    if track not in TRACKS:
        raise UsageError(f"unknown track {track!r} (allowed: {', '.join(TRACKS)})")
    today = utc_timestamp()[:10]
    incident = escalation.context or escalation.title
    if track == "hotfix":
        name = f"hotfix-{today.replace('-', '')}-{escalation.id.lower()}"
        where = incident_file(workspace, f"{name}.yaml")
        path = write_incident_file(workspace, where.name, hotfix_plan(incident, name, str(where)))
        return f"hotfix plan written to {path}"
    path = add_to_next_cycle(workspace, f"{today} {escalation.id}: {incident}")
    return f"recorded for the next plan in {path}"
