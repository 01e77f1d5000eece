"""Outputs between the tasks of a database run, whichever worker runs each (DESIGN §5, §13).

A task's outputs are kept by its end record, as on one host: inline when small, else in its
outputs file, which the worker stores as the run's evidence (`run_files`) in the transaction of
that end. A dependent's worker rebuilds its inputs from those records, fetching a big output's
file from the database into its own scratch, where `given_inputs` checks it against the sha256
the end record names: a dependent never runs on inputs the log does not back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stoic.core.run_state import RunFolder
from stoic.plan.models import TaskSpec
from stoic.run.attempt import Attempt, AttemptResult
from stoic.run.task_outputs import given_inputs
from stoic.store import pg_work as work
from stoic.store.atomic import atomic_write
from stoic.store.pg_run_files import store_run_files
from stoic.store.pg_store import AtHead
from stoic.store.run_evidence import RunFile

__all__ = ["AskedInputs", "ask_inputs", "inputs_of", "keep_outputs_file"]


@dataclass(frozen=True, slots=True)
class AskedInputs:
    """The records of a task's dependencies, asked for before it is claimed (`ask_inputs`)."""

    read: tuple[str, ...]
    """The dependencies whose records were asked for: those not ended in the transaction."""
    answer: work.Asked


def inputs_of(
    writing: AtHead,
    run_id: str,
    spec: TaskSpec,
    attempt: Attempt,
    scratch: Path,
    asked: AskedInputs | None = None,
) -> Attempt:
    """The attempt with its dependencies' outputs (raises `InputsUnreadable`, with why). A
    dependency whose success this transaction recorded is known by that end record (the last
    of its records: the one its outputs come from); the others' records are read, or taken
    from `asked` when it asked for the same."""
    if not spec.dependency_ids and spec.call is None:
        return attempt
    here = _ended_here(writing, run_id, spec)
    read = tuple(task for task in spec.dependency_ids if task not in here)
    answer = asked.answer if asked is not None and asked.read == read else None
    folder = RunFolder(run_id)
    for record in work.task_records(writing.conn, run_id, read, answer):
        folder.feed(record)
    for end in here.values():
        folder.feed(end)
    for task_id in spec.dependency_ids:
        ref = folder.tasks[task_id].outputs if task_id in folder.tasks else None
        file = (ref or {}).get("outputs_file")
        if isinstance(file, Mapping):
            _fetch(writing, run_id, str(file.get("path", "")), scratch)
    return given_inputs(scratch, folder, spec, attempt)


def ask_inputs(writing: AtHead, run_id: str, spec: TaskSpec) -> AskedInputs | None:
    """Send the read `inputs_of` makes for `spec` now (a task this transaction made ready and
    may claim): its answer comes with the claim's. None when there is nothing to read."""
    here = _ended_here(writing, run_id, spec)
    read = tuple(task for task in spec.dependency_ids if task not in here)
    if not read:
        return None
    return AskedInputs(read, work.ask_task_records(writing.conn, run_id, read))


def _ended_here(writing: AtHead, run_id: str, spec: TaskSpec) -> dict[str, Mapping[str, Any]]:
    """The dependencies of `spec` whose last record so far, appended in this transaction, is
    their success: by task, that end record."""
    wanted = set(spec.dependency_ids)
    last: dict[str, Mapping[str, Any]] = {}
    for record in writing.records:
        if record.run_id == run_id and record.task_id in wanted:
            last[record.task_id] = record._asdict()
    return {
        task: end
        for task, end in last.items()
        if end["decision_type"] == "execution" and end["decision_outcome"] == "succeeded"
    }


def keep_outputs_file(writing: AtHead, run_id: str, result: AttemptResult, scratch: Path) -> None:
    """A big output's file, stored as the run's evidence beside the end that names it."""
    sealed = (result.sealed or {}).get("outputs_file")
    if not isinstance(sealed, Mapping):
        return
    relative = str(sealed["path"])
    data = (scratch / relative).read_bytes()
    prefix = f"runs/{run_id}/"
    store_run_files(writing.conn, [RunFile(run_id, relative[len(prefix) :], data)])


def _fetch(writing: AtHead, run_id: str, relative: str, scratch: Path) -> None:
    """A run file the database keeps, into this host's scratch (if not there already); one
    outside the run's folder, or missing, is left for `given_inputs` to name."""
    prefix = f"runs/{run_id}/"
    path = scratch / relative
    if not relative.startswith(prefix) or path.exists():
        return
    data = work.run_file(writing.conn, run_id, relative[len(prefix) :])
    if data is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data, root=scratch)
