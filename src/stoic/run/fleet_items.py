"""What a worker of database runs is given and what it holds of each task it claimed: its
options and name, a claim whose start is being recorded, the reads sent ahead for a turn, a
task running under its lease."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from stoic.core.failure import Failure
from stoic.core.recovery import AttemptKind
from stoic.run.attempt import Attempt
from stoic.run.fleet_heartbeat import Claimed
from stoic.run.fleet_inputs import AskedInputs
from stoic.run.fleet_plans import RunPlan
from stoic.run.loop import Handle
from stoic.store import pg_work as work

__all__ = ["Asked", "Prepared", "Running", "WorkerOptions", "worker_name"]


def worker_name() -> str:
    """How a worker names itself in its claims and records: host, pid and a nonce."""
    return f"{socket.gethostname()} pid {os.getpid()} {os.urandom(3).hex()}"


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    concurrency: int = 4
    lease_s: float = 30.0
    """How long a claim holds without a heartbeat; renewed every third of it."""
    poll_s: float = 2.0
    """The longest a worker waits before it looks for work and for leases that ran out."""
    scratch: Path = Path(".stoic-worker")
    """Where attempts write their logs and result files on this host before the database
    keeps them."""
    drain_s: float = 30.0
    """After the first SIGTERM or SIGINT, how long running tasks may go on before they are
    stopped (nothing more is claimed meanwhile); 0: stopped at once."""
    exit_when_idle: bool = False
    """Return once nothing is running and there is nothing to claim (a batch worker)."""


@dataclass(frozen=True, slots=True)
class Prepared:
    """A claimed attempt whose start is being recorded: launched once that commits."""

    claim: work.Claim
    plan: RunPlan
    attempt: Attempt
    kind: AttemptKind
    timeout_default: str | None
    blind: Failure | None = None
    """Why it fails at once (its dependencies' outputs cannot be handed over), if it does."""


@dataclass(slots=True)
class Asked:
    """Reads sent ahead in one transaction, their answers taken when needed: the pause records
    (`PauseFollower.ask`) and the inputs of tasks it may claim, by run and task."""

    pause: work.Asked | None = None
    free: int = 0
    """How many it may claim."""
    inputs: dict[tuple[str, str], AskedInputs] = field(default_factory=dict)


@dataclass(slots=True)
class Running:
    claim: work.Claim
    plan: RunPlan
    attempt: Attempt
    kind: AttemptKind
    handle: Handle
    timeout_default: str | None
    claimed: Claimed
    lost: bool = False
