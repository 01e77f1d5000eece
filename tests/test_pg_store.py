"""The PostgreSQL backend beyond the contract suite: the same canonical line as the files
backend, a log the database itself keeps append-only, migrations, and concurrent writers."""

from __future__ import annotations

import contextlib
import itertools
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stoic.core.projection import WorkspaceStatusProjection
from stoic.core.records import GENESIS_HASH, Decision, hash_of_line
from stoic.exceptions import SchemaTooNew, StoicError, WorkspaceNotFound
from stoic.store.layout import DECISION_LOG, LOCK_FILE
from stoic.store.log import FileDecisionLog
from stoic.store.pg_schema import MIGRATIONS
from stoic.store.pg_store import PostgresStore
from tests.conftest import PROJECT_ROOT, run_cli
from tests.contract import backends
from tests.postgres import EmbeddedPostgres


@pytest.fixture
def url(postgres: EmbeddedPostgres) -> str:
    """A fresh database with the stoic schema."""
    where = postgres.new_database()
    PostgresStore.init(where).close()
    return where


@pytest.fixture
def pg(url: str) -> Iterator[PostgresStore]:
    store = PostgresStore.open(url)
    try:
        yield store
    finally:
        store.close()


def _decision(reason: str = "A check passed.") -> Decision:
    return Decision.from_mapping(
        {
            "type": "execution",
            "outcome": "failed",
            "reason": reason,
            "run_id": "run-1",
            "task_id": "build",
            "inputs": {"exit_code": 2, "note": "naïve – ünïcode"},
        }
    )


def test_a_record_is_the_same_canonical_line_and_hash_in_both_backends(
    pg: PostgresStore, url: str, tmp_path: Path
) -> None:
    (record,) = pg.append([_decision()])
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT line, hash, is_failure FROM decision_log").fetchone()
    assert row is not None
    line, stored_hash, failure = bytes(row[0]), row[1], row[2]
    assert stored_hash == record.hash and failure is True

    root = Path(backends.create("files", tmp_path))
    files = FileDecisionLog(
        root / DECISION_LOG,
        root / LOCK_FILE,
        root=root,
        clock=lambda: record.decided_at,
        new_id=lambda: record.decision_id,
    )
    try:
        (same,) = files.append([_decision()])
    finally:
        files.close()
    assert same == record
    assert (root / DECISION_LOG).read_bytes() == line
    assert hash_of_line(line, record.to_dict()) == record.hash


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE decision_log SET decision_type = 'audit'",
        "UPDATE decision_log SET line = 'x'::bytea",
        "DELETE FROM decision_log",
        "TRUNCATE decision_log",
    ],
)
def test_the_database_refuses_to_change_or_remove_a_record(
    pg: PostgresStore, url: str, statement: str
) -> None:
    pg.append([_decision()])
    with psycopg.connect(url) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege) as no:
        conn.execute(statement)  # even as the owner: the trigger refuses
    assert "the decision log is append-only" in str(no.value)
    assert [r.decision_reason for r in pg.read()] == ["A check passed."]


def test_the_writer_role_appends_but_cannot_change_a_record(
    postgres: EmbeddedPostgres, url: str
) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS stoic_runner")
        conn.execute("CREATE ROLE stoic_runner LOGIN IN ROLE stoic_writer")
    as_runner = url.replace("postgres:@", "stoic_runner:@", 1)
    assert as_runner != url
    store = PostgresStore.open(as_runner)
    try:
        store.append([_decision()])
        with store.transaction():
            store.append([_decision("Inside a transaction.")])
        lease = store.leases.acquire("run-1")
        assert store.leases.held_by("run-1") == lease
        writer = store.outputs.open_writer("run-1", "build", 1)
        writer.write(b"ok\n")
        writer.close()
        assert [r.seq for r in store.read()] == [1, 2]
    finally:
        store.close()
    refused = (
        "UPDATE decision_log SET decision_type = 'audit'",
        "DELETE FROM decision_log",
        "DROP TABLE decision_log",
        "ALTER TABLE decision_log DISABLE TRIGGER decision_log_append_only",
    )
    with psycopg.connect(as_runner, autocommit=True) as conn:
        for statement in refused:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)


def test_migrations_are_named_recorded_and_applied_once(url: str) -> None:
    with psycopg.connect(url) as conn:
        names = [row[0] for row in conn.execute("SELECT name FROM stoic_migrations ORDER BY name")]
    assert names == [name for name, _sql in MIGRATIONS]
    PostgresStore.init(url).close()  # nothing left to apply
    with psycopg.connect(url) as conn:
        again = conn.execute("SELECT count(*) FROM stoic_migrations").fetchone()
    assert again == (len(MIGRATIONS),)


def test_a_database_a_newer_stoic_made_is_refused(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO stoic_migrations (name) VALUES ('9001_from_a_newer_stoic')")
    for opening in (PostgresStore.open, PostgresStore.init):
        with pytest.raises(SchemaTooNew) as refused:
            opening(url)
        message = str(refused.value)
        assert "9001_from_a_newer_stoic" in message
        assert "a newer stoic made this database" in message
        assert "\n" not in message


def test_a_database_without_the_schema_is_refused_and_a_bad_url_is_a_stoic_error(
    postgres: EmbeddedPostgres,
) -> None:
    empty = postgres.new_database()
    with pytest.raises(WorkspaceNotFound, match="has no stoic schema"):
        PostgresStore.open(empty)
    missing = postgres.url("no_such_database")
    with pytest.raises(StoicError, match="cannot open the stoic database"):
        PostgresStore.open(missing)


_WRITER = """
import sys
import time
from stoic.core.records import Decision
from stoic.store.pg_store import PostgresStore
store = PostgresStore.open(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
for n in range(int(sys.argv[3])):
    batch = [
        Decision.from_mapping(
            {"type": "policy_check", "outcome": "passed", "reason": f"{sys.argv[2]} {n}.{i}"}
        )
        for i in range(1 + n % 3)
    ]
    if n % 4 == 0:
        with store.transaction():
            store.append(batch)
    else:
        store.append(batch)
store.close()
"""


def test_processes_appending_at_once_leave_one_gapless_chain(pg: PostgresStore, url: str) -> None:
    rounds = 40
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, url, f"writer-{w}", str(rounds)],
            cwd=PROJECT_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(3)
    ]
    for writer in writers:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
    for writer in writers:
        assert writer.stdin is not None
        writer.stdin.write("go\n")
        writer.stdin.flush()
    for writer in writers:
        _out, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
    records = list(pg.read())
    per_writer = sum(1 + n % 3 for n in range(rounds))
    assert [r.seq for r in records] == list(range(1, 3 * per_writer + 1))
    assert records[0].prev_hash == GENESIS_HASH
    for before, after in itertools.pairwise(records):
        assert after.prev_hash == before.hash
    assert pg.head().hash == records[-1].hash
    for w in range(3):
        mine = [r.decision_reason for r in records if r.decision_reason.startswith(f"writer-{w} ")]
        assert len(mine) == per_writer


# -- projection tables -------------------------------------------------------------------------


class _Counted:
    """A projection of the test's own: how many records, and a fold that can be made to fail."""

    name = "counted"
    version = 1
    fail_on: str | None = None

    def initial(self) -> int:
        return 0

    def fold(self, state: int, records: Iterable[Mapping[str, Any]]) -> int:
        for record in records:
            if record["decision_reason"] == self.fail_on:
                raise RuntimeError("this fold cannot go on")
            state += 1
        return state

    def to_json(self, state: int) -> dict[str, Any]:
        return {"count": state}

    def from_json(self, data: Mapping[str, Any]) -> int:
        return int(data["count"])


def _row(url: str, name: str) -> tuple[Any, ...] | None:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT seq, hash, state FROM projections WHERE name = %s", (name,)
        ).fetchone()


def test_the_status_projection_is_a_table_written_with_the_records_it_reflects(
    pg: PostgresStore, url: str
) -> None:
    records = pg.append([_decision(f"Check {n}.") for n in range(3)])
    row = _row(url, "workspace_status")
    assert row is not None and (row[0], row[1]) == (3, records[-1].hash)
    replayed = WorkspaceStatusProjection().fold(
        WorkspaceStatusProjection().initial(), (r._asdict() for r in pg.read())
    )
    assert row[2] == WorkspaceStatusProjection().to_json(replayed)
    stamped = pg.projected(WorkspaceStatusProjection())
    assert (stamped.seq, stamped.state) == (3, replayed)


def test_a_projection_that_cannot_be_kept_appends_nothing(pg: PostgresStore, url: str) -> None:
    counted = _Counted()
    pg.append([_decision("First.")])
    assert pg.projected(counted).state == 1
    pg.append([_decision("Second.")])
    assert _row(url, "counted") is not None and _row(url, "counted")[0] == 2  # type: ignore[index]
    counted.fail_on = "Breaks the fold."
    with pytest.raises(RuntimeError):
        pg.append([_decision("Fine."), _decision("Breaks the fold.")])
    assert pg.head().seq == 2  # one transaction: the records and their projections, or none
    assert _row(url, "workspace_status")[0] == 2  # type: ignore[index]


def test_a_row_behind_or_not_backed_by_the_log_is_caught_up_or_refolded(
    pg: PostgresStore, url: str
) -> None:
    counted = _Counted()
    assert pg.projected(counted).state == 0  # asked for once: kept from this handle's appends
    pg.append([_decision("One.")])
    assert _row(url, "counted")[0] == 1  # type: ignore[index]
    other = PostgresStore.open(url)  # a writer that does not keep `counted`
    try:
        other.append([_decision("Two."), _decision("Three.")])
    finally:
        other.close()
    assert _row(url, "counted")[0] == 1  # type: ignore[index]
    assert pg.projected(counted).state == 3  # the log decides: the row is caught up on read
    pg.append([_decision("Four.")])
    assert _row(url, "counted")[0] == 4  # type: ignore[index]
    with psycopg.connect(url) as conn:  # a row whose stamp no record backs
        conn.execute("UPDATE projections SET hash = 'forged', state = '{\"count\": 99}'")
    assert pg.projected(counted).state == 4
    assert pg.projected(WorkspaceStatusProjection()).state.records == 4


def test_a_handle_folds_on_from_what_it_kept_only_while_it_stands_at_the_head(
    pg: PostgresStore, url: str
) -> None:
    """A handle that wrote the head last folds on from its own state; one another writer
    appended past, or whose transaction rolled back after the fold, reads the row and the log
    again."""
    status, counted = WorkspaceStatusProjection(), _Counted()
    counted.fail_on = "Rolled back."

    def replayed() -> Any:
        return status.to_json(status.fold(status.initial(), (r._asdict() for r in pg.read())))

    pg.projected(counted)  # kept after the status: it fails once the status is folded
    rolled_back = {"type": "policy_check", "outcome": "passed", "reason": "Rolled back."}
    other = PostgresStore.open(url)
    try:
        for writer in (pg, pg, other, pg, other, other, pg):
            writer.append([_decision(f"By {id(writer)}.")])
            assert _row(url, "workspace_status")[2] == replayed()  # type: ignore[index]
        for after in (other, None):  # the same seq another wrote, or none
            with pytest.raises(RuntimeError, match="cannot go on"):
                pg.append([Decision.from_mapping(rolled_back)])
            if after is not None:
                after.append([_decision("In its place.")])
            pg.append([_decision("After the rollback.")])
            assert _row(url, "workspace_status")[2] == replayed()  # type: ignore[index]
    finally:
        other.close()
    assert _row(url, "workspace_status")[0] == 10  # type: ignore[index]


# -- what a review got through -----------------------------------------------------------------


def test_a_transaction_whose_connection_broke_writes_nothing_more(
    pg: PostgresStore, url: str
) -> None:
    pg.append([_decision("Before.")])
    other = PostgresStore.open(url)
    try:
        lost = pytest.raises(StoicError, match="writer lock of the decision log was lost")
        with lost, pg.transaction():
            assert pg.head().seq == 1
            with psycopg.connect(url, autocommit=True) as admin:  # the session is cut
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks"
                    " WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()"
                )
            other.append([_decision("Another writer, now the lock is gone.")])
            for _ in range(2):  # neither the first append nor a later one
                with contextlib.suppress(StoicError):
                    pg.append([_decision("Decided on a stale head.")])
            pg.append([_decision("Decided on a stale head.")])
    finally:
        other.close()
    assert [r.decision_reason for r in pg.read()][-1] == "Another writer, now the lock is gone."
    assert pg.append([_decision("After the block.")])[0].seq == 3  # a new block, a new session


def test_the_database_keeps_the_chain_and_the_head_itself(pg: PostgresStore, url: str) -> None:
    (first,) = pg.append([_decision()])
    writer = pg.outputs.open_writer("run-1", "build", 1)
    writer.write(b"evidence\n")
    writer.close()
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in (
            f"UPDATE log_head SET seq = 0, hash = '{GENESIS_HASH}'",  # rewinding hides the log
            "UPDATE log_head SET seq = 5",
            "DELETE FROM log_head",
        ):
            with pytest.raises(psycopg.Error):
                conn.execute(statement)
        with pytest.raises(psycopg.errors.IntegrityConstraintViolation, match="is a chain"):
            conn.execute(
                "INSERT INTO decision_log (seq, hash, prev_hash, decision_id, decided_at,"
                " decision_type, decision_outcome, is_failure, line)"
                " VALUES (3, 'x', 'y', 'z', 'now', 'audit', 'passed', false, 'x')"
            )
        with pytest.raises(psycopg.Error, match="append-only"):
            conn.execute("DELETE FROM attempt_outputs")
    assert pg.head().seq == first.seq and pg.append([_decision()])[0].seq == 2


def test_a_projection_row_no_fold_wrote_is_refolded_not_an_error(
    pg: PostgresStore, url: str
) -> None:
    pg.append([_decision()])
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE projections SET state = jsonb_set(state, '{by_type}', '5')")
    assert pg.append([_decision()])[0].seq == 2  # it cannot be folded on: refolded, no error
    status = pg.projected(WorkspaceStatusProjection()).state
    assert status.records == 2 and status.count("execution") == 2


@pytest.mark.parametrize(
    "wrong",
    ["postgres//stoic:Sup3rSecret@db.example/stoic", "postgresql://stoic:Sup3r Secret@db/x"],
)
def test_a_url_it_cannot_use_is_never_repeated_with_its_password(wrong: str) -> None:
    with pytest.raises(StoicError) as refused:
        PostgresStore.open(wrong)
    assert "Sup3r" not in str(refused.value) and "\n" not in str(refused.value)


_WRITER_LOOP = """
import sys, time
from stoic.core.records import Decision
from stoic.exceptions import StoicError
from stoic.store.pg_store import PostgresStore

url, batches = sys.argv[1], int(sys.argv[2])
store = PostgresStore.open(url)

def landed(tag):
    return any(r.decision_reason.startswith(tag) for r in store.tail(50))

for n in range(batches):
    tag = f"batch {n}:"
    batch = [
        Decision.from_mapping({"type": "policy_check", "outcome": "passed", "reason": f"{tag} {k}"})
        for k in range(1 + n % 3)
    ]
    time.sleep(0.01)  # a writer that spans the restarts, not one done before the first
    while True:
        try:
            records = store.append(batch)
            print(" ".join(r.hash for r in records), flush=True)
            break
        except StoicError:
            print("away", flush=True)
            while True:  # the server is away; once back, ask whether the batch landed
                time.sleep(0.05)
                try:
                    there = landed(tag)
                    break
                except StoicError:
                    continue
            if there:  # committed, its answer lost with the connection
                print("landed-unacknowledged", flush=True)
                break
store.close()
print("done", flush=True)
"""


def test_a_restarted_server_loses_nothing_an_append_acknowledged(
    postgres: EmbeddedPostgres, url: str
) -> None:
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER_LOOP, url, "400"],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None
    said: list[str] = []
    for restart in range(2):
        while sum(len(h) == 64 for h in said) < 20 * (restart + 1):  # restart while it writes
            said += writer.stdout.readline().split()
        postgres.restart()
    out, err = writer.communicate(timeout=300)
    assert writer.returncode == 0, err
    said += out.split()
    assert said[-1] == "done" and "away" in said  # it did lose the server, and went on
    acknowledged = [h for h in said if len(h) == 64]
    store = PostgresStore.open(url)
    try:
        records = list(store.read())
    finally:
        store.close()
    assert set(acknowledged) <= {r.hash for r in records}  # nothing acknowledged is lost
    assert [r.seq for r in records] == list(range(1, len(records) + 1))
    tags = [r.decision_reason.split(":")[0] for r in records]
    assert sorted(set(tags), key=lambda t: int(t.split()[1])) == [f"batch {n}" for n in range(400)]
    assert len(records) == sum(1 + n % 3 for n in range(400))  # every batch once, whole
    assert run_cli("audit", "--db", url).exit_code == 0


_BIG_BATCHES = """
import sys
import time
from stoic.core.records import Decision
from stoic.store.pg_store import PostgresStore

store = PostgresStore.open(sys.argv[1])
print("ready", flush=True)
n = 0
while True:
    tag = f"{sys.argv[2]}-{n}"
    with store.transaction():
        store.append([
            Decision.from_mapping(
                {"type": "policy_check", "outcome": "passed", "reason": f"{tag} {k}"}
            )
            for k in range(50)
        ])
    n += 1
"""


def test_a_writer_killed_at_any_moment_leaves_whole_batches_and_the_lock_free(
    pg: PostgresStore, url: str
) -> None:
    for kill in range(12):
        writer = subprocess.Popen(
            [sys.executable, "-c", _BIG_BATCHES, url, f"w{kill}"],
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
        time.sleep(0.05 + 0.037 * kill)  # a different moment each time
        writer.kill()  # -9, mid-transaction or between
        writer.wait(timeout=30)
        writer.stdout.close()
        with pg.transaction():  # the writer lock is free again at once
            pg.append(
                [
                    Decision.from_mapping(
                        {"type": "audit", "outcome": "passed", "reason": f"After kill {kill}."}
                    )
                ]
            )
    records = list(pg.read())
    assert [r.seq for r in records] == list(range(1, len(records) + 1))
    batches: dict[str, int] = {}
    for record in records:
        if record.decision_type == "policy_check":
            tag = record.decision_reason.split()[0]
            batches[tag] = batches.get(tag, 0) + 1
    assert batches and set(batches.values()) == {50}  # every batch whole, or not at all
    assert run_cli("audit", "--db", url).exit_code == 0


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.sampled_from(
            [
                "plan",
                ".yaml",
                ".amended-",
                "7",
                "123456789",
                "1234567890",
                "tasks/",
                "results/",
                "build",
                "b.x-y_z",
                "/attempt-",
                "/outputs-",
                ".attempt-",
                ".log",
                ".json",
                "/",
                "..",
                ".",
                "-",
                "",
                "é",
                "a" * 201,
            ]
        ),
        min_size=1,
        max_size=6,
    )
)
def test_the_database_takes_exactly_the_run_files_stoic_reads_as_evidence(
    pg: PostgresStore, url: str, parts: list[str]
) -> None:
    """The check of migration 0007 and the one the import makes (`check_evidence_path`) agree
    on every path."""
    from stoic.store.run_evidence import check_evidence_path

    path = "".join(parts)
    try:
        check_evidence_path("run-1", path)  # what the import asks before it stores a file
        stoic_says = True
    except ValueError:
        stoic_says = False
    with psycopg.connect(url, autocommit=True) as conn:
        try:
            with conn.transaction():
                conn.execute(
                    "INSERT INTO run_files (run_id, path, bytes, sha256, size)"
                    " VALUES ('run-1', %s, '', encode(sha256(''), 'hex'), 0)",
                    (path,),
                )
                raise _RolledBack
        except _RolledBack:
            database_says = True
        except psycopg.errors.CheckViolation:
            database_says = False
    assert database_says == stoic_says, path


class _RolledBack(Exception):
    """Undoes a probe's insert."""


@pytest.mark.parametrize("held", [False, True], ids=["pooled", "held-writer"])
def test_a_writing_block_that_fails_rolls_back_and_its_connection_goes_on(
    pg: PostgresStore, url: str, held: bool
) -> None:
    """The transaction's BEGIN and COMMIT travel with its statements: a block that raises, a
    statement the server refuses half-way and a read on the way all keep it one transaction."""
    pg.append([_decision("Before.")])
    with pg.transaction() if held else contextlib.nullcontext():
        with pytest.raises(RuntimeError), pg.writing("a block that raises") as writing:
            writing.append([_decision("Never kept: the block raised.")])
            raise RuntimeError("the block")
        with pytest.raises(StoicError), pg.writing("a refused statement") as writing:
            writing.append([_decision("Never kept: a later statement failed.")])
            writing.conn.execute("SELECT 1 / 0")
            writing.conn.execute("SELECT 1")
        with pg.writing("a read on the way") as writing:
            writing.append([_decision("Kept, with what follows the read.")])
            row = writing.conn.execute("SELECT count(*) FROM decision_log").fetchone()
            assert row is not None and row[0] == 2  # it sees its own insert: one transaction
            writing.append([_decision("Kept too.")])
    reasons = [record.decision_reason for record in pg.read()]
    assert reasons == ["Before.", "Kept, with what follows the read.", "Kept too."]
    with psycopg.connect(url, autocommit=True) as conn:
        idle = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND state LIKE 'idle in transaction%%'"
        ).fetchone()
    assert idle == (0,)  # no session left holding a transaction open
