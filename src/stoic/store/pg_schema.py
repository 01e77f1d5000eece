"""The PostgreSQL backend's schema, as named migrations applied in order (DESIGN §13).

Each migration runs once, in the transaction that records its name in `stoic_migrations`, under
an advisory lock so two `stoic init` at once apply it once. A database that records a migration
this stoic does not know was made by a newer stoic: it is refused, never written by older rules.

The log is append-only in the database itself: a trigger refuses UPDATE, DELETE and TRUNCATE
on `decision_log`, and the role `stoic_writer` (granted to the login stoic runs as) may read and
insert records, move the head, and nothing else: it cannot change or remove a record, nor the
schema. Runs' evidence files (`run_files`) and attempt outputs are append-only the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from stoic.core.records import GENESIS_HASH
from stoic.exceptions import SchemaTooNew, WorkspaceNotFound

__all__ = ["MIGRATIONS", "Migration", "applied", "check_current", "migrate"]

Migration = tuple[str, str]
"""(name, SQL): the name is recorded once the SQL has run; it never changes once released."""

_MIGRATIONS_LOCK = 0x570_1C_0001
"""The advisory lock key that serialises migrations (any fixed key no other lock uses)."""

_LOG = f"""
CREATE TABLE decision_log (
    seq bigint PRIMARY KEY CHECK (seq > 0),
    hash text NOT NULL UNIQUE,
    prev_hash text NOT NULL,
    decision_id text NOT NULL UNIQUE,
    decided_at text NOT NULL,
    decision_type text NOT NULL,
    decision_outcome text NOT NULL,
    run_id text,
    task_id text,
    is_failure boolean NOT NULL,
    line bytea NOT NULL
);
COMMENT ON COLUMN decision_log.line IS
    'The record as the files backend stores it: canonical JSON and a newline, hashed as is.';
CREATE INDEX decision_log_by_run ON decision_log (run_id, seq) WHERE run_id IS NOT NULL;
CREATE INDEX decision_log_by_type ON decision_log (decision_type, seq);
CREATE INDEX decision_log_failures ON decision_log (seq) WHERE is_failure;

CREATE TABLE log_head (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    seq bigint NOT NULL,
    hash text NOT NULL
);
INSERT INTO log_head (seq, hash) VALUES (0, '{GENESIS_HASH}');

CREATE FUNCTION stoic_refuse_log_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the decision log is append-only: % on decision_log is refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER decision_log_append_only BEFORE UPDATE OR DELETE ON decision_log
    FOR EACH ROW EXECUTE FUNCTION stoic_refuse_log_change();
CREATE TRIGGER decision_log_never_truncated BEFORE TRUNCATE ON decision_log
    FOR EACH STATEMENT EXECUTE FUNCTION stoic_refuse_log_change();
REVOKE ALL ON decision_log FROM PUBLIC;
"""

_LEASES = """
CREATE TABLE run_leases (
    run_id text PRIMARY KEY,
    holder text NOT NULL,
    since text NOT NULL,
    lock_key bigint NOT NULL,
    backend_pid integer NOT NULL
);
COMMENT ON TABLE run_leases IS
    'Who took each run last; the advisory lock on lock_key, held by backend_pid, is the lease.';
"""

_OUTPUTS = """
CREATE TABLE attempt_outputs (
    run_id text NOT NULL,
    task_id text NOT NULL,
    attempt integer NOT NULL,
    chunk_no integer NOT NULL CHECK (chunk_no >= 0),
    bytes bytea NOT NULL,
    PRIMARY KEY (run_id, task_id, attempt, chunk_no)
);
COMMENT ON COLUMN attempt_outputs.chunk_no IS
    'Chunk 0 is empty and marks the output opened: a second writer of the attempt is refused.';
"""

_WRITER_ROLE = """
DO $$
BEGIN
    CREATE ROLE stoic_writer NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- made for another database of the same server, perhaps at this very moment
END
$$;
GRANT SELECT ON stoic_migrations TO stoic_writer;
GRANT SELECT, INSERT ON decision_log TO stoic_writer;
GRANT SELECT, UPDATE ON log_head TO stoic_writer;
GRANT SELECT, INSERT, UPDATE, DELETE ON run_leases TO stoic_writer;
GRANT SELECT, INSERT ON attempt_outputs TO stoic_writer;
"""

_PROJECTIONS = """
CREATE TABLE projections (
    name text PRIMARY KEY,
    version integer NOT NULL,
    seq bigint NOT NULL CHECK (seq >= 0),
    hash text NOT NULL,
    state jsonb NOT NULL
);
COMMENT ON TABLE projections IS
    'Folds of the log, each written in the transaction of the records it reflects: seq and hash
     say which record it ends at. The log decides: a reader checks the stamp against it.';
GRANT SELECT, INSERT, UPDATE ON projections TO stoic_writer;
"""

_CHAIN = f"""
CREATE FUNCTION stoic_last_record(OUT last_seq bigint, OUT last_hash text)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    SELECT seq, hash INTO last_seq, last_hash FROM decision_log ORDER BY seq DESC LIMIT 1;
    IF last_seq IS NULL THEN
        last_seq := 0;
        last_hash := '{GENESIS_HASH}';
    END IF;
END
$$;

CREATE FUNCTION stoic_chain_insert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    last record;
BEGIN
    last := stoic_last_record();
    IF NEW.seq <> last.last_seq + 1 OR NEW.prev_hash <> last.last_hash THEN
        RAISE EXCEPTION 'the decision log is a chain: record % does not follow record %',
            NEW.seq, last.last_seq USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER decision_log_chained BEFORE INSERT ON decision_log
    FOR EACH ROW EXECUTE FUNCTION stoic_chain_insert();

CREATE FUNCTION stoic_head_moves() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    last record;
BEGIN
    last := stoic_last_record();
    IF NEW.seq <> last.last_seq OR NEW.hash <> last.last_hash THEN
        RAISE EXCEPTION 'the head of the decision log is its last record (%), not %',
            last.last_seq, NEW.seq USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER log_head_is_the_last_record BEFORE UPDATE ON log_head
    FOR EACH ROW EXECUTE FUNCTION stoic_head_moves();
CREATE TRIGGER log_head_stays BEFORE DELETE ON log_head
    FOR EACH ROW EXECUTE FUNCTION stoic_refuse_log_change();
CREATE TRIGGER log_head_never_truncated BEFORE TRUNCATE ON log_head
    FOR EACH STATEMENT EXECUTE FUNCTION stoic_refuse_log_change();
CREATE TRIGGER attempt_outputs_append_only BEFORE UPDATE OR DELETE ON attempt_outputs
    FOR EACH ROW EXECUTE FUNCTION stoic_refuse_log_change();
CREATE TRIGGER attempt_outputs_never_truncated BEFORE TRUNCATE ON attempt_outputs
    FOR EACH STATEMENT EXECUTE FUNCTION stoic_refuse_log_change();
"""

_RUN_FILES = r"""
CREATE TABLE run_files (
    run_id text NOT NULL CHECK (run_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$'),
    path text NOT NULL CHECK (
        path ~ ('^(plan\.yaml|plan\.amended-[0-9]{1,9}\.yaml'
            || '|tasks/[A-Za-z0-9][A-Za-z0-9_.-]{0,199}/attempt-[0-9]{1,9}\.log'
            || '|tasks/[A-Za-z0-9][A-Za-z0-9_.-]{0,199}/outputs-[0-9]{1,9}\.json'
            || '|results/[A-Za-z0-9][A-Za-z0-9_.-]{0,199}\.attempt-[0-9]{1,9}\.json)$')
        AND left(path, 1) <> '/'
        AND strpos('/' || path || '/', '/../') = 0
    ),
    bytes bytea NOT NULL,
    sha256 text NOT NULL CHECK (sha256 = encode(sha256(bytes), 'hex')),
    size bigint NOT NULL CHECK (size = octet_length(bytes)),
    PRIMARY KEY (run_id, path)
);
COMMENT ON TABLE run_files IS
    'The evidence of each run folder (plan copies, attempt logs, outputs and result files),
     byte for byte; the views of a run (state.json, execution_log.md) are rebuilt from the log.';
CREATE TRIGGER run_files_append_only BEFORE UPDATE OR DELETE ON run_files
    FOR EACH ROW EXECUTE FUNCTION stoic_refuse_log_change();
CREATE TRIGGER run_files_never_truncated BEFORE TRUNCATE ON run_files
    FOR EACH STATEMENT EXECUTE FUNCTION stoic_refuse_log_change();
REVOKE ALL ON run_files FROM PUBLIC;
GRANT SELECT, INSERT ON run_files TO stoic_writer;
"""

_WORK = """
CREATE TABLE work_items (
    run_id text NOT NULL,
    task_id text NOT NULL,
    attempt integer NOT NULL CHECK (attempt >= 1),
    attempt_kind text NOT NULL,
    not_before timestamptz NOT NULL DEFAULT now(),
    worker text,
    fence bigint,
    attempt_id text,
    lease_expires_at timestamptz,
    PRIMARY KEY (run_id, task_id),
    CHECK ((worker IS NULL) = (fence IS NULL) AND (fence IS NULL) = (lease_expires_at IS NULL))
);
COMMENT ON TABLE work_items IS
    'The tasks of database runs that may start (worker NULL) or are running on a worker under a
     lease: a projection of the log, written in the transaction of the records it reflects.';
COMMENT ON COLUMN work_items.fence IS
    'The fencing token of the claim, named by its execution/started record: a write by any other
     holder is refused.';
CREATE INDEX work_items_ready ON work_items (not_before, run_id, task_id) WHERE worker IS NULL;
CREATE INDEX work_items_leased ON work_items (lease_expires_at) WHERE worker IS NOT NULL;
CREATE SEQUENCE work_fences;
CREATE INDEX decision_log_by_task ON decision_log (run_id, task_id, seq)
    WHERE task_id IS NOT NULL;
GRANT SELECT, INSERT, UPDATE, DELETE ON work_items TO stoic_writer;
GRANT USAGE ON SEQUENCE work_fences TO stoic_writer;
"""

_IMPORT = """
CREATE TABLE log_import (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    upto_seq bigint NOT NULL CHECK (upto_seq > 0),
    imported_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE log_import IS
    'The records up to upto_seq were imported from the log of a files workspace, in the one
     transaction that stored them: what they say happened before this database held them, so
     nobody is told of it as news. A log is imported once, into an empty database.';
CREATE TRIGGER log_import_append_only BEFORE UPDATE OR DELETE ON log_import
    FOR EACH ROW EXECUTE FUNCTION stoic_refuse_log_change();
CREATE TRIGGER log_import_never_truncated BEFORE TRUNCATE ON log_import
    FOR EACH STATEMENT EXECUTE FUNCTION stoic_refuse_log_change();
REVOKE ALL ON log_import FROM PUBLIC;
GRANT SELECT, INSERT ON log_import TO stoic_writer;
"""

MIGRATIONS: Sequence[Migration] = (
    ("0001_decision_log", _LOG),
    ("0002_run_leases", _LEASES),
    ("0003_attempt_outputs", _OUTPUTS),
    ("0004_writer_role", _WRITER_ROLE),
    ("0005_projections", _PROJECTIONS),
    ("0006_chain_in_the_database", _CHAIN),
    ("0007_run_files", _RUN_FILES),
    ("0008_work_items", _WORK),
    ("0009_log_import", _IMPORT),
)
"""Every migration this stoic knows, in the order they apply; new ones go at the end."""

_LEDGER = """
CREATE TABLE IF NOT EXISTS stoic_migrations (
    name text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


def applied(conn: psycopg.Connection[tuple[object, ...]]) -> list[str]:
    """The migrations the database records, in the order they were applied ([] when none)."""
    exists = conn.execute("SELECT to_regclass('stoic_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return []
    rows = conn.execute("SELECT name FROM stoic_migrations ORDER BY applied_at, name").fetchall()
    return [str(row[0]) for row in rows]


def _refuse_newer(names: Sequence[str], known: Sequence[Migration]) -> None:
    ours = {name for name, _sql in known}
    unknown = [name for name in names if name not in ours]
    if unknown:
        raise SchemaTooNew(
            f"the database records migration {unknown[0]}, which this stoic does not know:"
            " a newer stoic made this database; use that stoic (or a newer one)"
        )


def migrate(
    conn: psycopg.Connection[tuple[object, ...]], known: Sequence[Migration] = MIGRATIONS
) -> list[str]:
    """Apply the migrations the database lacks, in one transaction; returns their names."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATIONS_LOCK,))
        conn.execute(_LEDGER)
        done = applied(conn)
        _refuse_newer(done, known)
        new = [(name, sql) for name, sql in known if name not in done]
        for name, sql in new:
            conn.execute(sql.encode())
            conn.execute("INSERT INTO stoic_migrations (name) VALUES (%s)", (name,))
        return [name for name, _sql in new]


def check_current(
    conn: psycopg.Connection[tuple[object, ...]], known: Sequence[Migration] = MIGRATIONS
) -> None:
    """Refuse a database this stoic cannot work on: made by a newer stoic, or not made (or
    upgraded) yet. The message never repeats the URL: it may hold a password."""
    done = applied(conn)
    _refuse_newer(done, known)
    missing = [name for name, _sql in known if name not in done]
    if missing:
        state = "has no stoic schema" if not done else f"lacks migration {missing[0]}"
        raise WorkspaceNotFound(
            f"the database {state}; create or upgrade it with PostgresStore.init first"
        )
