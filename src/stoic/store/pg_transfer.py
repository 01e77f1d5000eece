"""A decision log carried between the files backend and PostgreSQL, byte for byte (DESIGN §13).

Both ways carry the stored canonical lines as they are: a record keeps its seq, its hashes and
its bytes, so the chain — and every anchor kept elsewhere — holds across backends. An import
checks each line before it is stored and refuses the whole log at the first that fails; an
export writes the lines as the database holds them (evidence is never mended on the way), puts
each run's evidence files back in its folder, and lets the files backend build its views from
that log, as it would after a crash.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from stoic.core.records import GENESIS_HASH, Record, canonical_json, canonical_line_hash
from stoic.core.vocabulary import is_failure
from stoic.exceptions import LogCorrupt, WorkspaceExists, WorkspaceNotWritable
from stoic.store.atomic import fsync_dir, write_all
from stoic.store.confined import open_confined
from stoic.store.interface import Head
from stoic.store.run_audit import build_run_views
from stoic.store.run_evidence import RunFile, write_run_file

if TYPE_CHECKING:
    from stoic.store.workspace import Workspace

__all__ = ["LineChecker", "LogRow", "export_log", "stored_row"]

LogRow = tuple[int, str, str, bytes]
"""A stored record as a reader of the whole log takes it: (seq, hash, prev_hash, line), the
line with its newline."""


def stored_row(record: Record, line: bytes) -> tuple[object, ...]:
    """The `decision_log` row that stores `record` as `line` (the columns of `_INSERT`)."""
    return (
        record.seq,
        record.hash,
        record.prev_hash,
        record.decision_id,
        record.decided_at,
        record.decision_type,
        record.decision_outcome,
        record.run_id,
        record.task_id,
        is_failure(record.decision_type, record.decision_outcome),
        line,
    )


@dataclass
class LineChecker:
    """Checks the lines of a log on their way into an empty one, in order: each is one whole
    canonical line, hashed as it stands, the next seq, linked to the one before.

    Holds only the last seq and hash: a log of any length is checked in flat memory.
    """

    seq: int = 0
    prev_hash: str = GENESIS_HASH

    def row(self, line: bytes) -> tuple[object, ...]:
        """The row that stores `line`; LogCorrupt, naming the line, when it may not be stored."""
        where = f"line {self.seq + 1} of the log"
        if not line.endswith(b"\n") or b"\n" in line[:-1]:
            raise LogCorrupt(f"{where} is not one whole line; nothing was imported")
        try:
            parsed = orjson.loads(line)
            record = Record.from_dict(parsed)
        except (orjson.JSONDecodeError, ValueError, TypeError) as exc:
            raise LogCorrupt(f"{where} is not a record ({exc}); nothing was imported") from exc
        if type(record.seq) is not int or record.seq != self.seq + 1:
            raise LogCorrupt(
                f"{where} holds seq {record.seq!r}, not {self.seq + 1}: the sequence has a gap"
                " or is out of order; nothing was imported"
            )
        if record.prev_hash != self.prev_hash:
            raise LogCorrupt(
                f"seq {record.seq}: prev_hash is not the hash of the record before it;"
                " nothing was imported"
            )
        if type(record.hash) is not str or canonical_line_hash(line, record.hash) != record.hash:
            raise LogCorrupt(
                f"seq {record.seq}: the line does not match its hash; nothing was imported"
            )
        if canonical_json(parsed) + b"\n" != line:
            raise LogCorrupt(
                f"seq {record.seq}: the line is not in canonical form (sorted keys, compact);"
                " nothing was imported"
            )
        self.seq, self.prev_hash = record.seq, record.hash
        return stored_row(record, line)


def export_log(
    target: Path,
    pages: Iterable[Sequence[LogRow]],
    run_files: Iterable[RunFile] = (),
    *,
    workspace: type[Workspace],
) -> Head:
    """Make a workspace at `target` (new, or an empty folder) whose log is `pages`' lines and
    whose run folders hold `run_files`, each written back at its place before the views are
    built from the log (the runs' views read their plan copies).

    Built beside its place and renamed in once its log is fsynced and its views are written,
    so a failure never leaves half an export where the workspace was asked for.
    """
    target = target.absolute()
    if target.exists() and (not target.is_dir() or target.is_symlink() or any(target.iterdir())):
        raise WorkspaceExists(
            f"{target} exists and is not an empty folder; export into a new or empty one"
        )
    staging = target.with_name(f".{target.name}.export-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        made = workspace.init(staging)
        try:
            head = _write_lines(made, pages)
            for file in run_files:
                write_run_file(made.root, file)
            made.sync_projections()  # every view, folded from the log just written
            build_run_views(made)  # each run's state.json and the execution log
        finally:
            made.close()
        try:
            if target.exists():
                target.rmdir()
            staging.rename(target)
            fsync_dir(target.parent)
        except OSError as exc:
            raise WorkspaceNotWritable(
                f"cannot put the export at {target}: {exc.strerror or exc}"
            ) from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return head


def _write_lines(workspace: Workspace, pages: Iterable[Sequence[LogRow]]) -> Head:
    """Append the rows' lines to the workspace's empty log and fsync it, under its lock."""
    log = workspace.log
    seq, digest = 0, GENESIS_HASH
    with log.locked():
        try:
            fd = open_confined(workspace.root, log.path, os.O_WRONLY | os.O_APPEND)
            try:
                if os.fstat(fd).st_size:
                    raise WorkspaceExists(f"{log.path} is not empty; nothing was exported")
                for page in pages:
                    if page:
                        write_all(fd, b"".join(row[3] for row in page))
                        seq, digest = page[-1][0], page[-1][1]
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise WorkspaceNotWritable(f"cannot write {log.path}: {exc.strerror or exc}") from exc
    return Head(seq, digest)
