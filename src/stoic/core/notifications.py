"""Notifications (DESIGN §11), as pure data: the events, who wants which, and the payloads.

Notifications go out; nothing in stoic reads them back. Delivery lives in
`stoic.run.notifiers`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["Event", "Notice", "console_link", "json_payload", "slack_payload", "wants"]


class Event(StrEnum):
    PAUSED = "paused"
    RESUMED = "resumed"
    ESCALATION_RAISED = "escalation_raised"
    SUGGESTION_CREATED = "suggestion_created"
    RUN_COMPLETED = "run_completed"
    RUN_FAILED = "run_failed"
    RUN_AWAITING_HUMAN = "run_awaiting_human"
    AUDIT_FAILED = "audit_failed"
    AUDIT_PASSED = "audit_passed"  # carries the log's head, for an anchor kept elsewhere


_HEADLINES = {
    Event.PAUSED: ":double_vertical_bar: stoic paused",
    Event.RESUMED: ":arrow_forward: stoic resumed",
    Event.ESCALATION_RAISED: ":raising_hand: a decision is needed",
    Event.SUGGESTION_CREATED: ":inbox_tray: a suggestion waits for review",
    Event.RUN_COMPLETED: ":white_check_mark: run completed",
    Event.RUN_FAILED: ":x: run failed",
    Event.RUN_AWAITING_HUMAN: ":hourglass: run waiting for a person",
    Event.AUDIT_FAILED: ":rotating_light: audit failed",
    Event.AUDIT_PASSED: ":white_check_mark: audit passed",
}


@dataclass(frozen=True, slots=True)
class Notice:
    """One thing worth telling people about."""

    event: Event
    text: str
    """One or two sentences a person reads first."""
    at: str
    workspace: str
    run_id: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    """Details: the blocked list, summaries, the escalation id …"""
    lines: Sequence[str] = ()
    """Further lines (blocked tasks, summaries), shown under the text."""
    link: str | None = None
    """Where the console shows what it is about (with `serve.public_url` set)."""


def console_link(
    public_url: str, event: Event, run_id: str | None, data: Mapping[str, Any]
) -> str | None:
    """The console page of what a notice is about: its proposal, its escalation, its run, the
    pause or the audit; None without a public address."""
    if not public_url:
        return None
    base = public_url.rstrip("/")
    proposal, escalation = data.get("proposal_id"), data.get("escalation_id")
    if isinstance(proposal, str) and proposal:
        return f"{base}/proposals/{proposal}"
    if isinstance(escalation, str) and escalation:
        return f"{base}/escalations/{escalation}"
    if run_id:
        return f"{base}/runs/{run_id}"
    if event in (Event.PAUSED, Event.RESUMED):
        return f"{base}/pause"
    if event in (Event.AUDIT_FAILED, Event.AUDIT_PASSED):
        return f"{base}/audit"
    return f"{base}/queue"


def wants(events: Sequence[str], event: Event) -> bool:
    """A notifier's event filter: the names it lists, or every event for `*` or none listed."""
    return not events or "*" in events or event.value in events


def json_payload(notice: Notice) -> dict[str, Any]:
    return {
        "event": notice.event.value,
        "at": notice.at,
        "workspace": notice.workspace,
        "run_id": notice.run_id,
        "text": notice.text,
        "lines": list(notice.lines),
        "data": dict(notice.data),
        "link": notice.link,
    }


def slack_payload(notice: Notice) -> dict[str, Any]:
    """A Slack-compatible incoming-webhook body: `text` for clients, blocks for the rest."""
    body = notice.text + "".join(f"\n• {line}" for line in notice.lines)
    if notice.link is not None:
        body += f"\n<{notice.link}|Open in the console>"
    return {
        "text": f"{_HEADLINES[notice.event]}: {notice.text}",
        "blocks": [
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"*{_HEADLINES[notice.event]}*\n{body}"},
            },
            {
                "type": "context",
                "elements": [
                    {"type": "mrkdwn", "text": f"{notice.workspace} · {notice.at}"},
                ],
            },
        ],
    }
