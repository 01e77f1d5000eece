"""The refusal of a run past its plan's limit of live runs (DESIGN §6), in the words a person
acts on: which runs are live, where to see them, how to start one anyway. Starting a run,
continuing one and taking a database run up again all refuse with it."""

from __future__ import annotations

from stoic.core import next_steps
from stoic.core.concurrency import Admission
from stoic.core.next_steps import NextStep
from stoic.exceptions import RunLimitReached

__all__ = ["limit_reached"]


def limit_reached(admission: Admission, name: str, override: NextStep | None) -> RunLimitReached:
    """The refusal of `admission`, for plan `name`; `override` is the command that would start
    the run anyway (None: no override is offered)."""
    live = admission.live
    runs = "; ".join(run.shown() for run in live)
    allowed = "one live run" if admission.limit == 1 else f"{admission.limit} live runs"
    see = next_steps.run_status(live[0].run_id) if len(live) == 1 else next_steps.runs(plan=name)
    anyway = (
        f", or start this one as well with {override} (recorded)" if override is not None else ""
    )
    return RunLimitReached(
        f"plan {name!r} allows {allowed} at a time and has {len(live)} already: {runs};"
        f" wait for {'it' if len(live) == 1 else 'one'} to end (see {see}){anyway}, or raise"
        " meta.concurrency.limit in the plan",
        tuple(run.run_id for run in live),
    )
