"""Runs' file views against the log: every `runs/*/state.json` and `logs/execution_log.md`.

Each `state.json` names the last seq of its run it reflects (`last_seq`); the audit folds the
run's records up to that seq, renders the document the runner would have written, and compares.
Each `execution_log.md` entry names the seq of the record it shows; the audit renders that record
again (with the command its attempt's start record names). A file that reflects a record the log
does not hold means records were lost. `rebuild_run_files` writes both anew for a repair.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from stoic.core import next_steps
from stoic.core.audit import Violation, ViolationCode, diff_states
from stoic.core.run_document import (
    EXECUTION_LOG_HEADER,
    LoggedEntry,
    attempt_entry,
    logged_entries,
    proposal_entry,
    state_document,
)
from stoic.core.run_state import RunFolder
from stoic.core.task_outputs import digest
from stoic.exceptions import StoicError
from stoic.store.atomic import atomic_write
from stoic.store.confined import read_confined

if TYPE_CHECKING:
    from stoic.store.handle import WorkspaceHandle
    from stoic.store.quarantine import Quarantine

__all__ = ["EXECUTION_LOG", "RunFilesCheck", "build_run_views", "rebuild_run_files"]

EXECUTION_LOG = "logs/execution_log.md"
_SHOWN = 20
"""Differences listed per state.json; the rest are counted."""


@dataclass(slots=True)
class _Run:
    stored: Mapping[str, Any]
    target: int
    folder: RunFolder


@dataclass(slots=True)
class _Entries:
    """What the log renders for the seqs the execution log's entries name."""

    wanted: set[int] = field(default_factory=set)
    every: bool = False
    """Render every record that ran a command, not only the `wanted` ones (an export)."""
    rendered: dict[int, str] = field(default_factory=dict)
    commands: dict[str, str] = field(default_factory=dict)

    def feed(self, record: Mapping[str, Any]) -> None:
        kind, outcome = record["decision_type"], record["decision_outcome"]
        if kind == "execution":
            attempt_id = record.get("attempt_id")
            if outcome == "started":
                if attempt_id:
                    self.commands[attempt_id] = str(record["decision_inputs"].get("command", ""))
                return
            command = self.commands.pop(attempt_id, None) if attempt_id else None
            if command is not None and (self.every or record["seq"] in self.wanted):
                self.rendered[record["seq"]] = attempt_entry(record, command)
        elif (
            kind == "proposal"
            and outcome in ("executed", "rolled_back")
            and (self.every or record["seq"] in self.wanted)
            and "command" in record["details"]
        ):
            self.rendered[record["seq"]] = proposal_entry(record)


class RunFilesCheck:
    """Fed the log in order by the audit; `finish` lists what disagrees."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.violations: list[Violation] = []
        self.runs: dict[str, _Run] = {}
        self.entries = _Entries()
        self.logged: list[LoggedEntry] | None = None
        self.outputs_files: list[tuple[Mapping[str, Any], Mapping[str, Any]]] = []
        """(end record, its outputs_file) of every success that kept its outputs apart."""
        self.header_ok = True
        for run_id in _run_ids(root):
            self._read_state(run_id)
        self._read_execution_log()

    def feed(self, records: Iterable[Mapping[str, Any]]) -> None:
        runs, entries = self.runs, self.entries
        for record in records:
            run = runs.get(record.get("run_id"))  # type: ignore[arg-type]
            if run is not None and record["seq"] <= run.target:
                run.folder.feed(record)
            if record["decision_type"] in ("execution", "proposal"):
                entries.feed(record)
                file = record["details"].get("outputs_file")
                if file is not None and record["decision_outcome"] == "succeeded":
                    self.outputs_files.append((record, file))

    def finish(self, last_seq: int) -> list[Violation]:
        for run_id, run in self.runs.items():
            self._compare_state(run_id, run, last_seq)
        self._compare_entries(last_seq)
        self._check_outputs_files()
        return self.violations

    def _check_outputs_files(self) -> None:
        """Each outputs file must still be what its end record names: its dependents read it
        back (a continued run's too), so a changed or missing one is an edit the log shows."""
        for record, file in self.outputs_files:
            relative = str(file.get("path", ""))
            try:
                data = read_confined(self.root, self.root / relative)
            except OSError as exc:
                problem = f"cannot be read ({exc.strerror or exc})"
            else:
                if digest(data) == file.get("sha256"):
                    continue
                problem = "no longer matches the sha256 its end record names"
            self.violations.append(
                Violation(
                    ViolationCode.OUTPUTS_FILE_CHANGED,
                    f"{relative}, the outputs of task {record.get('task_id')} (seq"
                    f" {record['seq']}), {problem}; its dependents refuse it (restore it)",
                    seq=record["seq"],
                    path=relative,
                )
            )

    # -- state.json --------------------------------------------------------------------------

    def _read_state(self, run_id: str) -> None:
        relative = f"runs/{run_id}/state.json"
        try:
            stored = orjson.loads((self.root / relative).read_bytes())
            target = stored["last_seq"]
            if type(target) is not int or not isinstance(stored.get("tasks"), dict):
                raise TypeError("last_seq or tasks is not what the runner writes")
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self.violations.append(
                Violation(
                    ViolationCode.PROJECTION_UNREADABLE,
                    f"{relative} is unreadable ({exc});"
                    f" {next_steps.audit(repair=True)} rebuilds it",
                    path=relative,
                )
            )
            return
        self.runs[run_id] = _Run(stored, target, RunFolder(run_id))

    def _compare_state(self, run_id: str, run: _Run, last_seq: int) -> None:
        relative = f"runs/{run_id}/state.json"
        folder = run.folder
        if run.target > last_seq or folder.started is None:
            what = f"seq {run.target}" if folder.started is not None else "a run"
            self.violations.append(
                Violation(
                    ViolationCode.RECORDS_LOST,
                    f"{relative} reflects {what} the log does not contain: records were lost",
                    expected=f"last_seq ≤ {last_seq}",
                    found=f"last_seq {run.target}",
                    path=relative,
                )
            )
            return
        expected = _document(self.root, folder, self.violations)
        if expected is None:
            return
        differences = list(diff_states(expected, run.stored))
        for where, wanted, found in differences[:_SHOWN]:
            self.violations.append(
                Violation(
                    ViolationCode.PROJECTION_MISMATCH,
                    f"{relative} disagrees with a replay of the log at {where}",
                    seq=run.target,
                    expected=repr(wanted)[:200],
                    found=repr(found)[:200],
                    path=relative,
                )
            )
        if len(differences) > _SHOWN:
            self.violations.append(
                Violation(
                    ViolationCode.PROJECTION_MISMATCH,
                    f"{relative} disagrees in {len(differences) - _SHOWN} more places",
                    path=relative,
                )
            )

    # -- execution_log.md --------------------------------------------------------------------

    def _read_execution_log(self) -> None:
        text = _read_text(self.root / EXECUTION_LOG)
        if text is None:
            self.violations.append(
                Violation(
                    ViolationCode.PROJECTION_MISSING,
                    f"{EXECUTION_LOG} is missing or not text;"
                    f" {next_steps.audit(repair=True)} writes it",
                    path=EXECUTION_LOG if (self.root / EXECUTION_LOG).exists() else None,
                )
            )
            return
        if not text.startswith(EXECUTION_LOG_HEADER):
            self.header_ok = False
            self.logged = []
            return
        body = text[len(EXECUTION_LOG_HEADER) :]
        self.logged = list(logged_entries(body, EXECUTION_LOG_HEADER.count("\n") + 1))
        self.entries.wanted = {entry.seq for entry in self.logged if entry.seq is not None}

    def _compare_entries(self, last_seq: int) -> None:
        if self.logged is None:
            return
        if not self.header_ok:
            self._entry_violation(1, "does not begin as stoic writes it (edited by hand?)")
        seen: set[int] = set()
        for entry in self.logged:
            if entry.seq is None:
                self._entry_violation(entry.line, "is not an entry stoic writes")
            elif entry.seq > last_seq:
                self.violations.append(
                    Violation(
                        ViolationCode.RECORDS_LOST,
                        f"{EXECUTION_LOG} line {entry.line} shows seq {entry.seq}, which the log"
                        " does not contain: records were lost",
                        seq=entry.seq,
                        path=EXECUTION_LOG,
                    )
                )
            elif entry.seq in seen:
                self._entry_violation(entry.line, f"repeats the entry of seq {entry.seq}")
            elif self.entries.rendered.get(entry.seq) != entry.text:
                what = (
                    "differs from what its record says (edited by hand?)"
                    if entry.seq in self.entries.rendered
                    else "names a record that ran no command"
                )
                self._entry_violation(entry.line, f"(seq {entry.seq}) {what}")
            if entry.seq is not None:
                seen.add(entry.seq)

    def _entry_violation(self, line: int, what: str) -> None:
        self.violations.append(
            Violation(
                ViolationCode.PROJECTION_MISMATCH,
                f"{EXECUTION_LOG} line {line} {what}",
                path=EXECUTION_LOG,
            )
        )

    def kept_entries(self) -> str:
        """The execution log rebuilt: for each entry the file names whose record ran a
        command, that record's rendering, in the file's order; nothing the log does not back."""
        kept, seen = [], set()
        for entry in self.logged or []:
            rendered = self.entries.rendered.get(entry.seq) if entry.seq is not None else None
            if rendered is not None and entry.seq not in seen:
                kept.append(rendered)
                seen.add(entry.seq)
        return EXECUTION_LOG_HEADER + "".join(kept)


def rebuild_run_files(workspace: WorkspaceHandle, quarantine: Quarantine) -> None:
    """For a repair: every run's state.json from a full replay, and the execution log with the
    entries its records back (read from where the repair moved it, if it did)."""
    root = workspace.root
    kept_log = quarantine.folder / EXECUTION_LOG
    source = kept_log if EXECUTION_LOG in quarantine.kept else root / EXECUTION_LOG
    check = RunFilesCheck(root)
    if source != root / EXECUTION_LOG:
        check.logged = None
        text = _read_text(source)
        if text is not None and text.startswith(EXECUTION_LOG_HEADER):
            body = text[len(EXECUTION_LOG_HEADER) :]
            check.logged = list(logged_entries(body, EXECUTION_LOG_HEADER.count("\n") + 1))
            check.entries.wanted = {e.seq for e in check.logged if e.seq is not None}
    _write_states(root, _replayed(workspace, check.entries))
    # Only when the repair moved it aside (or it is gone): a live runner appends to it through
    # a descriptor it keeps, and a file replaced under it would lose what it writes next.
    if source != root / EXECUTION_LOG or not (root / EXECUTION_LOG).exists():
        atomic_write(root / EXECUTION_LOG, check.kept_entries().encode(), root=root)


def build_run_views(workspace: WorkspaceHandle) -> None:
    """For an export, once the runs' evidence is in place: every run's state.json from a full
    replay, and the execution log with an entry for each record that ran a command, in the
    log's order — what the runners and the queue wrote as they went, written at once."""
    root = workspace.root
    entries = _Entries(every=True)
    _write_states(root, _replayed(workspace, entries))
    text = EXECUTION_LOG_HEADER + "".join(entries.rendered.values())
    atomic_write(root / EXECUTION_LOG, text.encode(), root=root)


def _replayed(workspace: WorkspaceHandle, entries: _Entries) -> dict[str, RunFolder]:
    """Every run folder's fold from a full replay of the log, `entries` fed on the way."""
    folders = {run_id: RunFolder(run_id) for run_id in _run_ids(workspace.root)}
    for record in workspace.records():
        data = record._asdict()
        folder = folders.get(record.run_id) if record.run_id else None
        if folder is not None:
            folder.feed(data)
        if record.decision_type in ("execution", "proposal"):
            entries.feed(data)
    return folders


def _write_states(root: Path, folders: Mapping[str, RunFolder]) -> None:
    for run_id, folder in folders.items():
        if folder.started is None:
            continue
        document = _document(root, folder, [])
        if document is not None:
            atomic_write(
                root / "runs" / run_id / "state.json",
                orjson.dumps(document, option=orjson.OPT_INDENT_2),
                root=root,
            )


def _document(root: Path, folder: RunFolder, violations: list[Violation]) -> dict[str, Any] | None:
    """The state.json the log gives for a run, or None (with the reason) when its plan copy
    cannot be read or is not the plan the run started with."""
    source = folder.amendment or folder.started or {}
    copy = source.get("plan_copy") if folder.amendment else f"runs/{folder.run_id}/plan.yaml"
    problem = None
    from stoic.plan.loader import read_plan  # only when a run's files are rebuilt or audited

    try:
        plan = read_plan(root / str(copy))
        if plan.sha256 != source.get("plan_sha256"):
            problem = f"{copy} is not the plan its run started with (sha256 differs)"
    except StoicError as exc:
        problem = f"{copy} cannot be read ({str(exc)[:200]})"
    if problem is not None:
        violations.append(Violation(ViolationCode.RUN_PLAN_CHANGED, problem, path=None))
        return None
    view = folder.view(shared=True)
    return state_document(view, plan.graph, view.analyse(plan.graph))


def _run_ids(root: Path) -> list[str]:
    try:
        with os.scandir(root / "runs") as entries:
            return sorted(e.name for e in entries if e.is_dir(follow_symlinks=False))
    except FileNotFoundError:
        return []


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
