"""The workspace that services and interfaces open: the store, with notices delivered, the
review queue's use cases (`propose`, `approve`, `reject`, `defer`) and the runs of plans
(`run`, `continue_run`, `retry`, `run_status`, `wait`) as methods."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from stoic.store.workspace import Deliverer
from stoic.store.workspace import Workspace as StoreWorkspace

if TYPE_CHECKING:
    from stoic.core.audit import Anchor, AuditReport
    from stoic.core.notifications import Notice
    from stoic.core.proposals import Proposal
    from stoic.run.reporting import Reporter
    from stoic.run.run_end import RunReport
    from stoic.services.runs import Retried, RunStatusReport

__all__ = ["Workspace"]


def _deliver(workspace: StoreWorkspace, notice: Notice) -> object:
    """The notifiers are imported when there is a notice: most commands announce none."""
    from stoic.run.notifiers import deliver

    return deliver(workspace, notice)


class Workspace(StoreWorkspace):
    """An open workspace whose announcements reach the configured notifiers.

    Use `Workspace.init` or `Workspace.open`; close it (or use `with`).
    """

    deliverer: ClassVar[Deliverer | None] = staticmethod(_deliver)

    # `import stoic` stays light: the services are imported when one is asked for.

    def propose(
        self,
        *,
        title: str,
        reasoning_trace: list[str],
        sources: list[str] | None = None,
        action: list[str] | None = None,
        by: str = "human:api",
        **fields: Any,
    ) -> Proposal:
        """Put a proposal in the review queue; returns it (with its PROP-… id). A queue that
        outgrows review raises a red flag, as `stoic propose` does."""
        from stoic.services import queue

        return queue.propose(
            self,
            title=title,
            reasoning_trace=reasoning_trace,
            sources=sources or [],
            action=action,
            by=by,
            **fields,
        )

    def approve(self, proposal_id: str, *, by: str, reason: str | None = None) -> Proposal:
        """Approve a pending proposal (allowed while paused)."""
        from stoic.services import queue

        return queue.decide(self, proposal_id, "approved", by=by, reason=reason)

    def reject(self, proposal_id: str, *, by: str, reason: str) -> Proposal:
        """Reject a proposal, saying why; the same reason a third time raises a red flag and
        too many rejections in a batch pause the workspace."""
        from stoic.services import queue

        return queue.decide(self, proposal_id, "rejected", by=by, reason=reason)

    def defer(self, proposal_id: str, *, by: str) -> Proposal:
        """Set a proposal aside for later."""
        from stoic.services import queue

        return queue.decide(self, proposal_id, "deferred", by=by)

    def audit(self, *, repair: bool = False, anchors: Sequence[Anchor] = ()) -> AuditReport:
        """Audit the workspace as `stoic audit` does: check the log and every projection (with
        `repair`, mend what can be mended first; each anchor must still be in the log),
        announce the outcome with the head, and pause the workspace when it fails."""
        from stoic.services import audit

        return audit.audit(self, repair=repair, anchors=anchors).report

    def run(
        self,
        plan_path: str | os.PathLike[str],
        *,
        workers: int | None = None,
        reporter: Reporter | None = None,
    ) -> RunReport:
        """Run a plan until nothing more can happen without a person; its report says how it
        ended (`status`: completed, failed, awaiting_human, interrupted, paused)."""
        from stoic.services import runs

        return runs.start(self, os.fspath(plan_path), workers=workers, reporter=reporter)

    def continue_run(
        self,
        run_id: str,
        *,
        workers: int | None = None,
        reporter: Reporter | None = None,
        approve: Sequence[str] = (),
        actor: str = "human:unknown",
    ) -> RunReport:
        """Continue a run after a crash, a stop or a person's decision (`stoic continue`)."""
        from stoic.services import runs

        return runs.continue_(
            self, run_id, workers=workers, reporter=reporter, approve=approve, actor=actor
        )

    def retry(
        self,
        run_id: str,
        tasks: Sequence[str],
        *,
        reason: str,
        actor: str,
        workers: int | None = None,
        reporter: Reporter | None = None,
    ) -> Retried:
        """Run failed tasks of a run again in that run, a person's decision with its reason
        (`stoic retry`); returns the retry records and the run's report. A retried attempt
        that fails again stands (R3)."""
        from stoic.services import runs

        return runs.retry(
            self, run_id, tasks, reason=reason, actor=actor, workers=workers, reporter=reporter
        )

    def run_status(self, run_id: str) -> RunStatusReport:
        """Where a run stands now (`stoic status RUN_ID`)."""
        from stoic.services import runs

        return runs.status(self, run_id)

    def wait(self, run_id: str, *, timeout: float | None = None) -> str:
        """Block until a run is no longer running and return its status; `WaitTimedOut` if it
        still is after `timeout` seconds."""
        from stoic.services import runs

        return runs.wait(self, run_id, timeout=timeout)
