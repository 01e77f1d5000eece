"""One live run of a plan at a time, unless the plan allows more (DESIGN §6): the decision.

Pure: the live runs come in (each with the plan it runs, from its start record, and who holds
its lease), the verdict goes out. Runs of one plan share a key: its `meta.name`, or its file's
absolute path when it has none, so two copies of one unnamed file elsewhere are two plans.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_LIMIT", "Admission", "LiveRun", "admit", "plan_key", "recorded_rule"]

DEFAULT_LIMIT = 1
"""Live runs of a plan allowed at once when its `meta.concurrency` says nothing."""


def plan_key(name: str | None, absolute_path: str) -> str:
    """What makes two runs runs of the same plan."""
    return name if name else f"file:{absolute_path}"


@dataclass(frozen=True, slots=True)
class LiveRun:
    """A run whose lease a runner holds right now."""

    run_id: str
    plan_key: str
    holder: str
    """Who holds the lease, as a person reads it: `pid 4242 on build-1`."""
    since: str | None

    def shown(self) -> str:
        since = f" since {self.since}" if self.since else ""
        return f"{self.run_id} ({self.holder}{since})"


@dataclass(frozen=True, slots=True)
class Admission:
    """Whether a run of a plan may start (or go on) now, and the facts that decided it."""

    admitted: bool
    plan_key: str
    limit: int
    allow_concurrent: bool
    """A person overrode the limit for this run (`--allow-concurrent`)."""
    live: tuple[LiveRun, ...]
    """The other live runs of the same plan, oldest run id first."""

    def inputs(self) -> dict[str, Any]:
        """What the run's start record keeps of it, so a continue can obey the same rule."""
        return {
            "plan_key": self.plan_key,
            "limit": self.limit,
            "allow_concurrent": self.allow_concurrent,
            "live_runs": [run.run_id for run in self.live],
        }


def admit(key: str, limit: int, *, allow_concurrent: bool, live: Iterable[LiveRun]) -> Admission:
    """Admitted while fewer than `limit` other runs of the plan are live, or when overridden."""
    same = tuple(sorted((run for run in live if run.plan_key == key), key=lambda r: r.run_id))
    admitted = allow_concurrent or len(same) < limit
    return Admission(admitted, key, limit, allow_concurrent, same)


def recorded_rule(inputs: Mapping[str, Any], details: Mapping[str, Any]) -> tuple[str, int, bool]:
    """The plan key, limit and override a run's start record holds. A run recorded before
    starts kept them is known by its plan's name, with the default limit."""
    rule = inputs.get("concurrency")
    if isinstance(rule, Mapping) and isinstance(rule.get("plan_key"), str):
        limit = rule.get("limit")
        return (
            str(rule["plan_key"]),
            limit if isinstance(limit, int) and not isinstance(limit, bool) else DEFAULT_LIMIT,
            rule.get("allow_concurrent") is True,
        )
    return str(details.get("plan_name", "")), DEFAULT_LIMIT, False
