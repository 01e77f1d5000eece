"""A workspace: the folder that holds the decision log, its projections and settings (DESIGN §3)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self, TypeVar

import orjson

from stoic.core import next_steps
from stoic.core.audit import Anchor, AuditReport
from stoic.core.escalations import EscalationState
from stoic.core.notifications import Event, Notice, console_link
from stoic.core.policy import mask_decision, mask_json, mask_secrets
from stoic.core.projection import Projection, WorkspaceStatus, WorkspaceStatusProjection
from stoic.core.proposals import QueueState
from stoic.core.records import GENESIS_HASH, Decision, Record
from stoic.core.vocabulary import is_failure
from stoic.exceptions import (
    LogCorrupt,
    ProjectionMismatch,
    UsageError,
    WorkspaceError,
    WorkspaceExists,
    WorkspaceNotFound,
    WorkspaceNotWritable,
)
from stoic.store.atomic import fsync_dir
from stoic.store.config import Settings, load_settings
from stoic.store.handle import ProjectionWriter
from stoic.store.interface import Head, Stamped, Store
from stoic.store.layout import DECISION_LOG, LOCK_FILE, SETTINGS_FILE, STATUS_PROJECTION
from stoic.store.leases import FileLeases
from stoic.store.log import FileDecisionLog, TornTail, utc_timestamp
from stoic.store.outputs import FileOutputs
from stoic.store.pause_watch import PauseWatch
from stoic.store.projections import (
    ProjectionFile,
    ProjectionUnreadable,
    Stamp,
    fold_tail,
    misalignment,
)
from stoic.store.quarantine import Quarantine
from stoic.store.settings_text import default_settings_text
from stoic.store.views import file_views

__all__ = ["Deliverer", "Workspace", "open_store"]

S = TypeVar("S")

Deliverer = Callable[["Workspace", Notice], object]
"""Hands a notice to the notifiers; the runtime provides it (`stoic.run.notifiers.deliver`)."""


_FOLDERS = (
    "logs",
    "queue/pending",
    "queue/approved",
    "queue/rejected",
    "queue/deferred",
    "queue/executed",
    "manifests",
    "runs",
    "escalations",
    "incidents",
)
_STARTER_FILES = {
    "logs/execution_log.md": "# Execution log\n\nOne entry per execution attempt.\n",
    "escalations/escalation-log.md": "# Escalation log\n",
    "calibration_log.md": "# Calibration log\n\nNotes written by reviewers after trust issues.\n",
}


_STATUS_FOLDED = "status_folded"
"""The key of the status folded in memory past its file (`Workspace.status_folded`)."""


class Workspace:
    """An open workspace. Use `Workspace.init` or `Workspace.open`; close it (or use `with`)."""

    deliverer: ClassVar[Deliverer | None] = None
    """Who delivers what `announce` is told, for every handle of this class (`stoic.Workspace`
    sets the runtime's); a handle of a class without one is given its own when opened."""

    def __init__(
        self, root: Path, settings: Settings, *, deliverer: Deliverer | None = None
    ) -> None:
        self._deliverer = _deliverer_of(type(self), deliverer)
        self.root = root
        self.settings = settings
        self.log = FileDecisionLog(root / DECISION_LOG, root / LOCK_FILE, root=root)
        self.status_file = ProjectionFile(
            WorkspaceStatusProjection(), root / STATUS_PROJECTION, root=root
        )
        self._appended = False
        self._closed = False
        self.queue_cache: tuple[QueueState, int] | None = None
        """The review queue folded up to a log offset (see `stoic.store.queue`)."""
        self.escalation_cache: tuple[EscalationState, int] | None = None
        """The escalations folded up to a log offset (see `stoic.store.escalations`)."""
        self.lagging: list[str] = []
        """Views of durable records that could not be written (a full disk), each with why:
        warnings for the caller; they are caught up from the log later, like any that lags."""
        self._leases = FileLeases(root)
        self._outputs = FileOutputs(root)
        self._folded: dict[str, Stamp[Any]] = {}
        self._views: tuple[ProjectionWriter, ...] | None = None
        self.masked: dict[str, str] = {}
        """Secret values (by name) masked in every record and notice this handle writes: a
        run's runner sets its plan's secrets here (DESIGN §7)."""

    # -- lifecycle -----------------------------------------------------------------------------

    @classmethod
    def init(cls, path: str | os.PathLike[str], *, deliverer: Deliverer | None = None) -> Self:
        """Create a workspace at `path` (a new or empty folder) and open it."""
        _deliverer_of(cls, deliverer)  # refused before anything is created
        root = Path(path).absolute()
        if (root / SETTINGS_FILE).exists() or (root / DECISION_LOG).exists():
            raise WorkspaceExists(f"{root} is already a stoic workspace; it was left untouched")
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise WorkspaceExists(
                f"{root} exists and is not an empty folder; choose a new or empty folder"
            )
        blocking = next((p for p in root.parents if p.exists() and not p.is_dir()), None)
        if blocking is not None:
            raise WorkspaceNotWritable(
                f"cannot create a workspace at {root}: {blocking} is a file, not a folder"
            )
        # Built beside its final place and renamed in, so a crash never leaves half a workspace.
        staging = root.with_name(f".{root.name}.init-{os.getpid()}")
        try:
            root.parent.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(staging, ignore_errors=True)
            for folder in _FOLDERS:
                (staging / folder).mkdir(parents=True)
            (staging / SETTINGS_FILE).write_text(default_settings_text(), encoding="utf-8")
            for name, text in _STARTER_FILES.items():
                (staging / name).write_text(text, encoding="utf-8")
            (staging / DECISION_LOG).touch()
            (staging / LOCK_FILE).touch()
            status = ProjectionFile(
                WorkspaceStatusProjection(), staging / STATUS_PROJECTION, root=staging
            )
            status.write(status.initial())
            for made in sorted({staging / name for name in _FOLDERS} | {staging}, reverse=True):
                fsync_dir(made)
            staging.rename(root)
            fsync_dir(root.parent)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise WorkspaceNotWritable(
                f"cannot create a workspace at {root}: {exc.strerror or exc}"
            ) from exc
        return cls.open(root, deliverer=deliverer)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        catch_up: bool = True,
        deliverer: Deliverer | None = None,
    ) -> Self:
        """Open the workspace at `path`; projections that lag the log are caught up."""
        root = Path(path).absolute()
        if not (root / SETTINGS_FILE).is_file():
            raise WorkspaceNotFound(
                f"no stoic workspace at {root}: create one with {next_steps.init(str(path))},"
                " or name the one you mean with -w PATH (or STOIC_WORKSPACE)"
            )
        if not (root / DECISION_LOG).is_file():
            raise WorkspaceError(
                f"{root / DECISION_LOG} is missing: the decision log cannot be recreated;"
                " restore it from a backup"
            )
        workspace = cls(root, load_settings(root / SETTINGS_FILE), deliverer=deliverer)
        if catch_up:
            with contextlib.suppress(WorkspaceNotWritable):
                workspace.sync_projections()
        return workspace

    def close(self) -> None:
        """Bring projections up to date with what this process appended, then release files."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._appended:
                self.sync_projections()
        finally:
            self._leases.close()
            self.log.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- writing -------------------------------------------------------------------------------

    def record(
        self,
        decision_type: str,
        decision_outcome: str,
        reason: str,
        *,
        source: str = "system",
        actor: str | None = None,
        trigger: str | None = None,
        inputs: Mapping[str, Any] | None = None,
        causal_role: str | None = None,
        run_id: str | None = None,
        request_id: str | None = None,
        task_id: str | None = None,
        attempt_id: str | None = None,
        attempt: int | None = None,
        proposal_id: str | None = None,
        escalation_id: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> Record:
        """Append one decision durably: it is written and fsynced when this returns."""
        decision = Decision(
            decision_type=decision_type,
            decision_outcome=decision_outcome,
            decision_reason=reason,
            decision_source=source,
            actor=actor or "",
            decision_trigger=trigger or "",
            decision_inputs=inputs or {},
            causal_role=causal_role,
            run_id=run_id,
            request_id=request_id,
            task_id=task_id,
            attempt_id=attempt_id,
            attempt=attempt,
            proposal_id=proposal_id,
            escalation_id=escalation_id,
            details=details or {},
        )
        return self.record_many([decision])[0]

    def record_many(self, decisions: Iterable[Decision | Mapping[str, Any]]) -> list[Record]:
        """Append several decisions with one write and one fsync (group commit)."""
        batch = [
            item if isinstance(item, Decision) else Decision.from_mapping(item)
            for item in decisions
        ]
        if self.masked:
            batch = [mask_decision(decision, self.masked) for decision in batch]
        records = self.log.append(batch)
        self._appended = self._appended or bool(records)
        return records

    def append(self, decisions: Sequence[Decision]) -> list[Record]:
        """The store's append (see `stoic.store.interface.Store`): one write, one fsync."""
        return self.record_many(decisions)

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        """The workspace's writer lock: no other writer, in any process, appends meanwhile;
        nested blocks in one thread are one transaction."""
        return self.log.locked()

    def record_over_torn_tail(
        self, keep: Callable[[bytes], object], decide: Callable[[TornTail], Decision]
    ) -> tuple[TornTail, Record] | None:
        """A repair's record, written where a torn last line was (see
        `FileDecisionLog.replace_torn_tail`); None when the log does not end torn."""
        done = self.log.replace_torn_tail(keep, decide)
        self._appended = self._appended or done is not None
        return done

    @contextlib.contextmanager
    def projecting(self, what: str) -> Iterator[None]:
        """Write a projection of records that are already durable.

        The record is the truth and it is on disk: a view that cannot be written now must not
        turn the command into a failure (a retry would record it twice). The view lags, is
        caught up from the log later, and the caller learns of it through `lagging`.
        """
        try:
            yield
        except (WorkspaceNotWritable, OSError) as exc:
            why = str(exc) if isinstance(exc, WorkspaceNotWritable) else exc.strerror or str(exc)
            message = f"{what} ({why})"
            if message not in self.lagging:  # a runner retries its state.json every second
                self.lagging.append(message)

    def announce(
        self,
        event: Event,
        text: str,
        *,
        run_id: str | None = None,
        data: Mapping[str, Any] | None = None,
        lines: Sequence[str] = (),
    ) -> None:
        """Tell the notifiers of `event` — once this thread holds no workspace lock, so a slow
        notifier never keeps other writers waiting."""
        secrets = self.masked
        notice = Notice(
            event=event,
            text=mask_secrets(text, secrets),
            at=utc_timestamp(),
            workspace=str(self.root),
            run_id=run_id,
            data=mask_json(dict(data or {}), secrets),
            lines=tuple(mask_secrets(line, secrets) for line in lines),
            link=console_link(self.settings.serve.public_url, event, run_id, data or {}),
        )
        deliverer = self._deliverer
        self.log.after_unlock(lambda: deliverer(self, notice))

    # -- reading -------------------------------------------------------------------------------

    @property
    def torn_tail(self) -> TornTail | None:
        """The cut-off bytes at the end of the log, if a crash left any."""
        torn = self.log.tail_state().torn
        if torn is None:
            return None
        # It may be a write in progress: wait for the writer, then look again.
        with contextlib.suppress(WorkspaceNotWritable), self.log.locked(shared=True):
            torn = self.log.tail_state().torn
        return torn

    def records(
        self,
        *,
        since_seq: int | None = None,
        run_id: str | None = None,
        decision_type: str | None = None,
    ) -> Iterator[Record]:
        """Stream records in order (constant memory): those after `since_seq`, of a run, a type."""
        end = self.log.tail_state().good_end
        start = self.log.offset_after(since_seq, end) if since_seq else 0
        needles = _needles(run_id=run_id, decision_type=decision_type)
        for line_no, _offset, raw, _complete in self.log.lines(start, end):
            if needles and not all(needle in raw for needle in needles):
                continue
            record = self._decode(raw, line_no)
            if since_seq is not None and record.seq <= since_seq:
                continue
            if run_id is not None and record.run_id != run_id:
                continue
            if decision_type is not None and record.decision_type != decision_type:
                continue
            yield record

    def tail(
        self,
        count: int,
        *,
        run_id: str | None = None,
        decision_type: str | None = None,
        failures: bool = False,
    ) -> list[Record]:
        """The last `count` matching records, oldest first, read backwards from the end."""
        if count <= 0:
            return []
        end = self.log.tail_state().good_end
        needles = _needles(run_id=run_id, decision_type=decision_type)
        found: list[Record] = []
        for raw in self.log.lines_reversed(end):
            if needles and not all(needle in raw for needle in needles):
                continue
            record = self._decode(raw, None)
            if run_id is not None and record.run_id != run_id:
                continue
            if decision_type is not None and record.decision_type != decision_type:
                continue
            if failures and not is_failure(record.decision_type, record.decision_outcome):
                continue
            found.append(record)
            if len(found) == count:
                break
        found.reverse()
        return found

    def read(self, after_seq: int = 0) -> Iterator[Record]:
        """The records after `after_seq`, in order; finding where they start costs a few reads
        (`FileDecisionLog.offset_after`), so a damaged line before them is the audit's to find."""
        return self.records(since_seq=after_seq)

    def head(self) -> Head:
        tail = self.log.tail_state()
        return Head(tail.last_seq, tail.last_hash) if tail.last_seq else Head(0, GENESIS_HASH)

    def projected(self, projection: Projection[S]) -> Stamped[S]:
        """`projection` folded up to the log's end. The status projection is the one kept in a
        file; any other is kept folded with this handle and caught up from where it stopped."""
        if isinstance(projection, WorkspaceStatusProjection):
            status = self.sync_projections()
            return Stamped(status.last_seq, status.last_hash, status.state)
        end = self.log.tail_state().good_end
        key = f"{projection.name}@{projection.version}"
        stamp: Stamp[S] | None = self._folded.get(key)
        if stamp is None or stamp.log_offset > end or misalignment(key, stamp, self.log):
            stamp = Stamp(0, GENESIS_HASH, 0, projection.initial())
        stamp = fold_tail(projection, stamp, self.log, end)
        self._folded[key] = stamp
        return Stamped(stamp.last_seq, stamp.last_hash, stamp.state)

    def pause_watch(self) -> PauseWatch:
        return PauseWatch(self.log, self.sync_projections())

    @property
    def leases(self) -> FileLeases:
        """Run leases: an OS lock per run (see `stoic.store.leases`)."""
        return self._leases

    @property
    def outputs(self) -> FileOutputs:
        """Attempt outputs: a file per attempt (see `stoic.store.outputs`)."""
        return self._outputs

    def status(self) -> WorkspaceStatus:
        """Counts by type and outcome, caught up with the log."""
        return self.sync_projections().state

    def status_folded(self) -> WorkspaceStatus:
        """The status as the log has it now, folded in memory: nothing is written, so a reader
        on a decision's path (is the workspace paused?) pays no projection write and fsync.
        The file views catch up at the next `status()`; the log decides either way."""
        stamp = self.status_stamp()
        end = self.log.tail_state().good_end
        kept: Stamp[WorkspaceStatus] | None = self._folded.get(_STATUS_FOLDED)
        if (
            kept is not None
            and stamp.log_offset < kept.log_offset <= end
            and misalignment(_STATUS_FOLDED, kept, self.log) is None
        ):
            stamp = kept  # folded further by this handle than the file: go on from there
        if stamp.log_offset == end:
            self.status_file.check_lines_up(stamp, self.log)
            return stamp.state
        stamp = self.status_file.advance(stamp, self.log, end)
        self._folded[_STATUS_FOLDED] = stamp
        return stamp.state

    # -- projections and audit -----------------------------------------------------------------

    @property
    def views(self) -> tuple[ProjectionWriter, ...]:
        """The writers of every file view of the log: caught up, audited and rebuilt alike."""
        if self._views is None:
            self._views = file_views(self)
        return self._views

    def sync_projections(self) -> Stamp[WorkspaceStatus]:
        """Catch the projection files up with the log by replaying only its tail."""
        stamp = self.status_stamp()
        end = self.log.tail_state().good_end
        if stamp.log_offset == end:
            self.status_file.check_lines_up(stamp, self.log)
            return stamp
        caught_up = self.status_file.advance(stamp, self.log, end)
        # A writer killed between a record and its files left them behind: each view writes
        # what the records since the status file's stamp say.
        for view in self.views:
            view.catch_up(stamp, caught_up)
        return caught_up

    def rebuild_projections(self, quarantine: Quarantine) -> None:
        """Replace every file view with a full replay of the log (for `stoic audit --repair`,
        which has moved what they replace to `quarantine`)."""
        for view in self.views:
            view.rebuild(quarantine)

    def status_stamp(self) -> Stamp[WorkspaceStatus]:
        """The status projection file's stamp as it is on disk (not caught up)."""
        path = self.status_file.path
        try:
            stamp = self.status_file.read()
        except ProjectionUnreadable as exc:
            raise ProjectionMismatch(
                f"{path} is unreadable: {exc};"
                f" {next_steps.audit(repair=True)} rebuilds it from the log"
            ) from exc
        if stamp is None:
            raise ProjectionMismatch(
                f"{path} is missing; {next_steps.audit(repair=True)} rebuilds it from the log"
            )
        return stamp

    def verify(self, *, repair: bool = False, anchors: Sequence[Anchor] = ()) -> AuditReport:
        """Check the log and every projection; with `repair`, mend what can be mended first.
        Only the check: what a failure brings about (a pause, notices) is the audit service's.

        Each anchor (a seq and hash kept outside the workspace) must still be in the log.
        """
        from stoic.store.anchors import check_anchors, log_head
        from stoic.store.auditor import audit_workspace, repair_workspace

        report = repair_workspace(self) if repair else audit_workspace(self)
        lost = tuple(check_anchors(self.log, anchors))
        return dataclasses.replace(
            report, violations=report.violations + lost, head=log_head(self.log)
        )

    def _decode(self, raw: bytes, line_no: int | None) -> Record:
        where = f"{self.log.path}:{line_no}" if line_no else str(self.log.path)
        try:
            return Record.from_dict(orjson.loads(raw))
        except (orjson.JSONDecodeError, ValueError, TypeError) as exc:
            raise LogCorrupt(
                f"{where}: not a valid record ({exc}); run {next_steps.audit()}"
            ) from exc


def _needles(**fields: str | None) -> list[bytes]:
    """Byte strings a matching line must contain: a cheap filter before parsing."""
    return [orjson.dumps(value) for value in fields.values() if value is not None]


def open_store(path: str | os.PathLike[str], deliverer: Deliverer) -> Store:
    """The file backend at `path`, as a `Store`, its notices handed to `deliverer`."""
    return Workspace.open(path, deliverer=deliverer)


def _deliverer_of(kind: type[Workspace], given: Deliverer | None) -> Deliverer:
    """A notice is never dropped because nobody was there to deliver it: a handle is refused
    unless it knows who delivers its notices."""
    chosen = given or kind.deliverer
    if chosen is None:
        raise UsageError(
            "a workspace handle needs someone to deliver its notices: open it as"
            " stoic.Workspace, or pass deliverer="
        )
    return chosen
