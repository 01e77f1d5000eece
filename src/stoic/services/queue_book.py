"""Where an agent's proposals and the gate's answers go (DESIGN §8, §15): the workspace's log
and queue, or — when its `stoic.toml` names a database (`[store] url`) — the database's, where
that workspace's runs and review queue are. The gate's rules are the workspace's `[gate]`
either way; what is recorded, the pause obeyed, and the proposals a person decides are the
book's. The agent gate and the MCP server both write through it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from stoic.core.gate import TOOL_CALL_TYPE
from stoic.core.proposals import Proposal
from stoic.core.records import Decision, Record
from stoic.services import db_queue, queue, trust
from stoic.store.workspace import Workspace

__all__ = ["QueueBook", "queue_book"]


class QueueBook(Protocol):
    """What the gate and an agent's tools read and write besides the gate's rules."""

    def append(self, decision: Decision) -> Record: ...

    def paused(self) -> Mapping[str, Any] | None:
        """The pause in force (a pause stops the queue's growth), else None."""
        ...

    def earlier(self, action: Sequence[str], *, by: str) -> Proposal | None:
        """The latest proposal of this exact call by this agent, if one was made: what a
        person approved for one agent allows no other."""
        ...

    def propose(
        self,
        *,
        title: str,
        reasoning_trace: Sequence[str],
        by: str,
        sources: Sequence[str],
        action: Sequence[str] | None,
        summary: str,
        type: str = TOOL_CALL_TYPE,
        origin: str = "gate",
        confidence: float | None = None,
        trade_off: str | None = None,
    ) -> Proposal: ...

    def get(self, proposal_id: str) -> Proposal: ...

    def wait_for_decision(self, proposal_id: str, seconds: float) -> Proposal:
        """The proposal once settled, or as it stands after `seconds`."""
        ...


def queue_book(workspace: Workspace) -> QueueBook:
    """The database's book when the workspace names one, else the workspace's own."""
    url = workspace.settings.store.url
    return _DatabaseBook(url) if url else _WorkspaceBook(workspace)


class _WorkspaceBook:
    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace

    def append(self, decision: Decision) -> Record:
        return self.workspace.record_many([decision])[0]

    def paused(self) -> Mapping[str, Any] | None:
        return self.workspace.status_folded().paused

    def earlier(self, action: Sequence[str], *, by: str) -> Proposal | None:
        return _latest(queue.list_proposals(self.workspace), action, by)

    def propose(
        self,
        *,
        title: str,
        reasoning_trace: Sequence[str],
        by: str,
        sources: Sequence[str],
        action: Sequence[str] | None,
        summary: str,
        type: str = TOOL_CALL_TYPE,
        origin: str = "gate",
        confidence: float | None = None,
        trade_off: str | None = None,
    ) -> Proposal:
        return queue.propose(
            self.workspace,
            title=title,
            reasoning_trace=reasoning_trace,
            by=by,
            sources=sources,
            action=action,
            type=type,
            summary=summary,
            origin=origin,
            confidence=confidence,
            trade_off=trade_off,
        )

    def get(self, proposal_id: str) -> Proposal:
        return queue.get(self.workspace, proposal_id)

    def wait_for_decision(self, proposal_id: str, seconds: float) -> Proposal:
        return queue.wait_for_decision(self.workspace, proposal_id, seconds)


class _DatabaseBook:
    def __init__(self, url: str) -> None:
        self.url = url

    def append(self, decision: Decision) -> Record:
        from stoic.store.pg_store import PostgresStore  # psycopg only when a database is named

        with PostgresStore.open(self.url) as store:
            return store.append([decision])[0]

    def paused(self) -> Mapping[str, Any] | None:
        return trust.database_standing(self.url).status.paused

    def earlier(self, action: Sequence[str], *, by: str) -> Proposal | None:
        return _latest(db_queue.database_proposals(self.url), action, by)

    def propose(
        self,
        *,
        title: str,
        reasoning_trace: Sequence[str],
        by: str,
        sources: Sequence[str],
        action: Sequence[str] | None,
        summary: str,
        type: str = TOOL_CALL_TYPE,
        origin: str = "gate",
        confidence: float | None = None,
        trade_off: str | None = None,
    ) -> Proposal:
        return db_queue.propose(
            self.url,
            title=title,
            reasoning_trace=reasoning_trace,
            by=by,
            sources=sources,
            action=action,
            type=type,
            summary=summary,
            origin=origin,
            confidence=confidence,
            trade_off=trade_off,
        )

    def get(self, proposal_id: str) -> Proposal:
        return db_queue.database_proposal(self.url, proposal_id)

    def wait_for_decision(self, proposal_id: str, seconds: float) -> Proposal:
        ends = time.monotonic() + max(seconds, 0.0)
        while True:
            proposal = self.get(proposal_id)
            left = ends - time.monotonic()
            if proposal.status in queue.SETTLED or left <= 0:
                return proposal
            time.sleep(min(queue.POLL_SECONDS, left))


def _latest(proposals: Sequence[Proposal], action: Sequence[str], by: str) -> Proposal | None:
    found = None
    for proposal in proposals:
        if (
            proposal.type == TOOL_CALL_TYPE
            and proposal.action == tuple(action)
            and proposal.history[:1]
            and proposal.history[0].get("by") == by
        ):
            found = proposal
    return found
