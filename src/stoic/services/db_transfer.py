"""A decision log moved between a files workspace and a PostgreSQL database, and the audit of
one kept in a database (DESIGN §12, §13).

`export_database` writes the files layout from a database, so `ls`, `jq`, `grep` and
`stoic audit` work on it; `import_workspace` moves a clean files workspace into an empty
database, chain intact, its runs' evidence files with it; `audit_database` checks a
database's log where it lies. None of them records anything: an export is a copy to read,
an import starts the database's log with the workspace's records exactly, and an audit of a
database is the check alone.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from stoic.core.audit import AuditReport
from stoic.core.text import counted
from stoic.exceptions import StoicError, WorkspaceError
from stoic.services.workspace import Workspace
from stoic.store.confined import LinkRefused
from stoic.store.interface import Head
from stoic.store.pg_audit import audit_database as audit_records
from stoic.store.pg_schema import MIGRATIONS
from stoic.store.pg_store import PostgresStore
from stoic.store.pg_transfer import export_log
from stoic.store.run_evidence import RunFolders, read_run_folders

__all__ = [
    "Created",
    "Exported",
    "Imported",
    "audit_database",
    "create_database_schema",
    "export_database",
    "import_workspace",
]

_BATCH = 1000
"""Lines per insert of an import: the lines in memory at a time."""


@dataclass(frozen=True, slots=True)
class Exported:
    """A database's log written as a files workspace."""

    workspace: Path
    head: Head
    """The last record written (seq 0 for an empty log)."""
    report: AuditReport
    """The files audit of the new workspace: clean unless the database's log is damaged."""


@dataclass(frozen=True, slots=True)
class Imported:
    """A files workspace's log stored in a database."""

    workspace: Path
    head: Head
    runs: int
    """The run folders whose evidence was stored with the log."""
    run_files: int
    """Their evidence files stored (plan copies, attempt logs, outputs and result files)."""
    not_carried: tuple[str, ...]
    """Plain files in `runs/` that are neither a run's evidence nor a view of the log (put
    there by hand, or by a task): they stay in the workspace."""


@dataclass(frozen=True, slots=True)
class Created:
    """A database given stoic's schema (or found up to date)."""

    applied: tuple[str, ...]
    """The migrations applied now, in order; empty when none was missing."""
    migrations: tuple[str, ...]
    """Every migration the database now records."""


def create_database_schema(url: str) -> Created:
    """Give the database at `url` stoic's schema through its named migrations, each recorded
    in the database; one a newer stoic made is refused, nothing changed."""
    applied = PostgresStore.migrate(url)  # refuses a newer schema; leaves none missing
    return Created(tuple(applied), tuple(name for name, _sql in MIGRATIONS))


def export_database(url: str, target: str | os.PathLike[str]) -> Exported:
    """Write the database's log at `target` (new, or an empty folder) as a files workspace
    with the default settings, its views built from that log, then audit it."""
    with PostgresStore.open(url) as store, store.snapshot() as (_head, pages, run_files):
        written = export_log(Path(target), pages, run_files, workspace=Workspace)
    root = Path(target).absolute()
    with contextlib.closing(Workspace.open(root, catch_up=False)) as workspace:
        report = workspace.verify()
    return Exported(root, written, report)


def import_workspace(source: str | os.PathLike[str], url: str) -> Imported:
    """Store a files workspace's log in a database whose log is empty (its schema is made
    or brought up to date first), line for line.

    The workspace is audited first under its lock, which holds off its writers until the last
    line is stored: a workspace that is not clean is refused, never carried half-broken.
    """
    workspace = Workspace.open(source, catch_up=False)
    try:
        with workspace.log.locked(shared=True):
            report = workspace.verify()
            if not report.ok:
                first = report.violations[0]
                raise WorkspaceError(
                    f"{workspace.root} does not audit clean"
                    f" ({counted(len(report.violations), 'violation')}; first: {first.describe()});"
                    " nothing was imported"
                )
            end = workspace.log.size()
            found = RunFolders()
            files = read_run_folders(workspace.root, found)
            with PostgresStore.init(url) as store, _refused_links():
                head = store.import_lines(_batches(workspace, end), files)
    finally:
        with contextlib.suppress(StoicError):
            workspace.close()
    return Imported(workspace.root, head, len(found.runs), found.files, tuple(found.left))


def audit_database(url: str) -> AuditReport:
    """The chain, sequence, head row and behavioural invariants of the database's log."""
    with PostgresStore.open(url) as store:
        return audit_records(store)


def _batches(workspace: Workspace, end: int) -> Iterator[list[bytes]]:
    """The log's lines up to `end`, newline kept, `_BATCH` at a time."""
    batch: list[bytes] = []
    for _line_no, _offset, raw, complete in workspace.log.lines(0, end):
        batch.append(raw + b"\n" if complete else raw)
        if len(batch) == _BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


@contextlib.contextmanager
def _refused_links() -> Iterator[None]:
    """A run folder that cannot be read as it is (a link, a special file, a hard link in it)
    refuses the import in one line; the database's transaction has rolled back by then."""
    try:
        yield
    except LinkRefused as exc:
        raise WorkspaceError(f"{exc.strerror}; nothing was imported") from exc
    except OSError as exc:
        raise WorkspaceError(
            f"cannot read {exc.filename or 'a run folder'}: {exc.strerror or exc};"
            " nothing was imported"
        ) from exc
