"""A chain's step in one round trip: the ends of a worker's tasks and the claims of what they
make ready, written from what the worker knows since its own last commit, with nothing read.

Every change to the log and to the work items (but a lease's renewal) is written at the head
of the log, under its lock, and moves the head. So while the head is the one a worker's last
commit left, nothing else has changed since: no pause, no take-over, no other claim, no task
made ready elsewhere — the worker's own last transaction saw all there was, and claimed every
task ready then. A success whose dependents wait on it alone then makes exactly those ready,
and a claim would take them (their readiness stamp is the transaction's; a claim takes the
oldest first), so the worker writes the end, finishes its item, inserts the new items already
claimed under fencing tokens it took earlier (a token is never handed out twice), and appends
their start records, sealed after the head it knows — all in one go, with the commit: a
chain's step is one round trip and one durable commit.

Nothing of it is taken on trust: each end is inserted only with the deletion of its claim's
row under the claim's fence (`finished_check`), each start only with the insert of its claimed
item (`claimed_check`: a task there already fails it), and the log's triggers refuse a record
that does not follow the last one — so a claim lost, a head that moved or a task made ready
already fails the whole transaction. The worker then writes the same ends the long way,
reading the head, the pauses and the fences first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from stoic.run.attempt import AttemptResult
from stoic.run.fleet_plans import RunPlan
from stoic.store import pg_work as work
from stoic.store.interface import Head

__all__ = ["Known", "next_tasks"]


@dataclass(slots=True)
class Known:
    """What a worker knows after its own last commit."""

    head: Head | None = None
    """The head that commit left, while nothing it saw was left ready unclaimed; None when
    the worker knows less (it has not written yet, a transaction failed, work was left)."""
    fences: list[int] = field(default_factory=list)
    """Fencing tokens taken for claims to come."""

    def wanted(self, concurrency: int) -> int:
        """How many tokens to take in the transaction at hand: a few steps' worth, when the
        worker holds fewer than a step may use."""
        return 4 * concurrency if len(self.fences) < concurrency else 0


def next_tasks(
    ended: Sequence[tuple[work.Claim, RunPlan, AttemptResult]],
    free: int,
    known: Known,
    refused: set[str],
) -> list[tuple[str, str]] | None:
    """The tasks that `ended` make ready, as a claim would take them (by run and task: they
    are ready from the same moment), when each is a success whose dependents wait on it alone
    and the worker knows the head; None when the ends must be written the long way."""
    if known.head is None or free <= 0:
        return None
    tasks: list[tuple[str, str]] = []
    for claim, plan, result in ended:
        dependents = plan.dependents.get(claim.task_id, ())
        if result.failure is not None or not dependents or claim.run_id in refused:
            return None
        if any(set(plan.specs[task].dependency_ids) != {claim.task_id} for task in dependents):
            return None
        tasks += [(claim.run_id, task) for task in dependents]
    if len(known.fences) < min(free, len(tasks)):
        return None
    return sorted(tasks)
