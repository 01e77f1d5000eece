"""Runs' evidence files in PostgreSQL: the `run_files` table (migration 0007, DESIGN §13).

One row per file, its bytes whole (the runner caps what it keeps), its sha256 and size checked
by the database as well as here. Rows are only ever inserted: a trigger refuses the rest, as
it does for the log. They travel with the log, in the transaction that stores it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from stoic.exceptions import LogCorrupt
from stoic.store.pg_driver import Conn
from stoic.store.run_evidence import RunFile, check_evidence_path

__all__ = ["read_attempt_outputs", "read_run_files", "store_run_files"]

_INSERT = "INSERT INTO run_files (run_id, path, bytes, sha256, size) VALUES (%s, %s, %s, %s, %s)"
_ROWS = 16
"""Rows fetched at a time by a reader: a few files' bytes in memory, never all of them."""


def store_run_files(conn: Conn, files: Iterable[RunFile]) -> int:
    """Insert each file (one at a time: a file's bytes in memory); returns how many. A path
    that is not a run folder's evidence is refused, naming it, before anything of it is sent."""
    count = 0
    with conn.cursor() as cursor:
        for file in files:
            try:
                check_evidence_path(file.run_id, file.path)
            except ValueError as exc:
                raise LogCorrupt(f"runs/{file.run_id}: {exc}; nothing was imported") from exc
            cursor.execute(
                _INSERT, (file.run_id, file.path, file.data, file.sha256, len(file.data))
            )
            count += 1
    return count


def read_run_files(conn: Conn) -> Iterator[RunFile]:
    """Every stored file, by run and path, through a server-side cursor on `conn` (inside the
    caller's transaction). A row whose bytes are not what its sha256 and size say, or whose
    path is not evidence, is refused: evidence is never mended, nor written somewhere else."""
    with conn.cursor(name="stoic_run_files") as cursor:
        cursor.itersize = _ROWS
        cursor.execute("SELECT run_id, path, bytes, sha256, size FROM run_files ORDER BY 1, 2")
        for run_id, path, data, sha256, size in cursor:
            file = RunFile(str(run_id), str(path), bytes(data))
            try:
                check_evidence_path(file.run_id, file.path)
            except ValueError as exc:
                raise LogCorrupt(f"run_files: {exc}; nothing was exported") from exc
            if file.sha256 != sha256 or len(file.data) != size:
                raise LogCorrupt(
                    f"run_files: {file.relative} does not match its sha256 or size;"
                    " nothing was exported"
                )
            yield file


def read_attempt_outputs(conn: Conn) -> Iterator[RunFile]:
    """Each attempt output the workers kept (`attempt_outputs`) as the attempt log a files
    workspace holds at `tasks/<task>/attempt-<n>.log`, one attempt in memory at a time; an
    attempt whose log is a stored run file already is that file's."""
    with conn.cursor(name="stoic_attempt_outputs") as cursor:
        cursor.itersize = _ROWS
        cursor.execute(
            "SELECT o.run_id, o.task_id, o.attempt, o.bytes FROM attempt_outputs o"
            " WHERE NOT EXISTS (SELECT 1 FROM run_files f WHERE f.run_id = o.run_id"
            " AND f.path = 'tasks/' || o.task_id || '/attempt-' || o.attempt || '.log')"
            " ORDER BY o.run_id, o.task_id, o.attempt, o.chunk_no"
        )
        current: tuple[str, str, int] | None = None
        chunks: list[bytes] = []
        for run_id, task_id, attempt, data in cursor:
            key = (str(run_id), str(task_id), int(attempt))
            if key != current:
                if current is not None:
                    yield _attempt_log(current, chunks)
                current, chunks = key, []
            chunks.append(bytes(data))
        if current is not None:
            yield _attempt_log(current, chunks)


def _attempt_log(key: tuple[str, str, int], chunks: list[bytes]) -> RunFile:
    run_id, task_id, attempt = key
    file = RunFile(run_id, f"tasks/{task_id}/attempt-{attempt}.log", b"".join(chunks))
    try:
        check_evidence_path(file.run_id, file.path)
    except ValueError as exc:
        raise LogCorrupt(f"attempt_outputs: {exc}; nothing was exported") from exc
    return file
