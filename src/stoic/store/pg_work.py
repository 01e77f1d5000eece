"""The work of database runs: which tasks may start, and who runs which (DESIGN §13).

`work_items` is a projection of the log written in the transaction of the records it reflects
(`PostgresStore.writing`): a row appears with the record that makes its task runnable (a run's
start, a dependency's success, an automatic retry's decision), is claimed with the task's
`execution/started` record, and goes with the record that ends its attempt for good. A claim
names its worker, a fencing token and when its lease ends; every later write of that worker
first checks the token under the row's lock, so one whose lease ran out writes nothing more.

Every statement here runs inside a transaction at the head of the log, which every writer
takes first: claims and ends are serialised with the appends they go with, and the only other
lockers of a row — heartbeats, which never wait for the head — are skipped, not waited for.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg
from psycopg.rows import TupleRow

from stoic.core.concurrency import LiveRun, recorded_rule
from stoic.core.pause import PauseInForce, pause_after
from stoic.store.pg_driver import Conn
from stoic.store.pg_outputs import keep_output

__all__ = [
    "CHANNEL",
    "Asked",
    "Claim",
    "PauseFollower",
    "Peek",
    "Ready",
    "ask_fences",
    "ask_task_records",
    "claim_holders",
    "claim_ready",
    "claimed_check",
    "done_tasks",
    "expired_claims",
    "finish",
    "finished_check",
    "held",
    "held_of",
    "items_left",
    "items_of_others",
    "live_runs",
    "make_ready",
    "peek",
    "renew",
    "run_exists",
    "run_file",
    "run_records",
    "run_start",
    "store_output",
    "task_records",
    "wake_workers",
]

Asked = psycopg.Cursor[TupleRow]
"""A read sent and not yet answered: in a pipelined transaction (`PostgresStore.writing`),
reads sent before one whose answer is awaited travel in its round trip."""

CHANNEL = "stoic_work"
"""Where a transaction that makes work ready says so (NOTIFY, delivered at its commit) — but
a worker's end that claims all it made ready itself: nobody else could take it."""


@dataclass(frozen=True, slots=True)
class Ready:
    """A task that may start: its next attempt, of which kind, not before `delay_s` from now."""

    run_id: str
    task_id: str
    attempt: int
    attempt_kind: str
    delay_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Claim:
    """A task a worker runs under a lease: the token its writes are checked against."""

    run_id: str
    task_id: str
    attempt: int
    attempt_kind: str
    attempt_id: str
    worker: str
    fence: int


@dataclass(frozen=True, slots=True)
class Peek:
    """What a look for work would find, read without the log's lock."""

    ready: bool
    """An item nobody holds is ready now."""
    to_take_over: bool
    """A lease ran out, or the worker holds a claim it does not run."""
    runs: tuple[str, ...] = ()
    """The runs of the oldest ready items (a few): the plans a claim would read."""


def peek(conn: Conn, worker: str, running: Iterable[int], refused: Iterable[str]) -> Peek:
    """Whether a claim or a take-over has anything to do: one read, no lock, no commit (the
    transaction that acts reads again under the lock)."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM work_items WHERE worker IS NULL AND not_before <= now()"
        "   AND NOT (run_id = ANY(%(refused)s))),"
        " EXISTS (SELECT 1 FROM work_items WHERE worker IS NOT NULL"
        "   AND NOT (run_id = ANY(%(refused)s)) AND NOT (fence = ANY(%(running)s))"
        "   AND (lease_expires_at <= now() OR worker = %(worker)s))",
        {"refused": sorted(refused), "worker": worker, "running": sorted(running)},
    ).fetchone()
    ready, to_take_over = bool(row and row[0]), bool(row and row[1])
    runs: tuple[str, ...] = ()
    if ready:
        found = conn.execute(
            "SELECT DISTINCT run_id FROM (SELECT run_id FROM work_items WHERE worker IS NULL"
            " AND not_before <= now() AND NOT (run_id = ANY(%s))"
            " ORDER BY not_before, run_id, task_id LIMIT 16) AS oldest",
            (sorted(refused),),
        ).fetchall()
        runs = tuple(str(run_id) for (run_id,) in found)
    return Peek(ready, to_take_over, runs)


def make_ready(conn: Conn, items: Sequence[Ready], *, wake: bool = True) -> None:
    """Make `items` claimable (a task already there is left as it is) and, unless not to
    `wake` (the caller claims them itself, or calls `wake_workers`), wake the workers."""
    if not items:
        return
    with conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO work_items (run_id, task_id, attempt, attempt_kind, not_before)"
            " VALUES (%s, %s, %s, %s, now() + make_interval(secs => %s))"
            " ON CONFLICT (run_id, task_id) DO NOTHING",
            [(i.run_id, i.task_id, i.attempt, i.attempt_kind, i.delay_s) for i in items],
        )
    if wake:
        wake_workers(conn)


def wake_workers(conn: Conn) -> None:
    """Tell the listening workers, at the commit, that work is ready."""
    conn.execute(f"NOTIFY {CHANNEL}")


def claim_ready(
    conn: Conn,
    worker: str,
    limit: int,
    lease_s: float,
    attempt_ids: Iterable[str],
    refused: Iterable[str] = (),
) -> list[Claim]:
    """Claim up to `limit` items whose time has come, oldest first, skipping rows another
    transaction holds and the runs in `refused`; each gets a new fencing token and a lease of
    `lease_s`, and the next of `attempt_ids` (one statement: one round trip)."""
    ids = list(attempt_ids)[:limit]
    rows = conn.execute(_CLAIM, (sorted(refused), len(ids), worker, ids, lease_s)).fetchall()
    return [
        Claim(str(r), str(t), int(a), str(k), str(i), worker, int(f))
        for _n, r, t, a, k, i, f in sorted(rows)
    ]


_CLAIM = """
WITH picked AS MATERIALIZED (
    SELECT run_id, task_id, not_before FROM work_items
    WHERE worker IS NULL AND not_before <= now() AND NOT (run_id = ANY(%s))
    ORDER BY not_before, run_id, task_id LIMIT %s FOR UPDATE SKIP LOCKED
), numbered AS (
    SELECT run_id, task_id, row_number() OVER (ORDER BY not_before, run_id, task_id) AS n
    FROM picked
)
UPDATE work_items AS w SET worker = %s, fence = nextval('work_fences'),
    attempt_id = (%s::text[])[numbered.n], lease_expires_at = now() + make_interval(secs => %s)
FROM numbered WHERE w.run_id = numbered.run_id AND w.task_id = numbered.task_id
RETURNING numbered.n, w.run_id, w.task_id, w.attempt, w.attempt_kind, w.attempt_id, w.fence
"""
"""The oldest ready items, locked (those another transaction holds are skipped), each given
a fencing token and the attempt id of its place in that order."""


def claimed_check(claim: Claim, lease_s: float) -> tuple[str, tuple[object, ...]]:
    """The insert of `claim`'s item, ready and claimed at once (a task this transaction makes
    ready and claims itself), as a statement another embeds, `RETURNING` a row. A plain
    insert: a task already there fails the transaction (the caller then writes it the long
    way: `make_ready`, `claim_ready`)."""
    return (
        "INSERT INTO work_items (run_id, task_id, attempt, attempt_kind, not_before, worker,"
        " fence, attempt_id, lease_expires_at) VALUES (%s, %s, %s, %s, now(), %s, %s, %s,"
        " now() + make_interval(secs => %s)) RETURNING 1",
        (
            claim.run_id,
            claim.task_id,
            claim.attempt,
            claim.attempt_kind,
            claim.worker,
            claim.fence,
            claim.attempt_id,
            lease_s,
        ),
    )


def ask_fences(conn: Conn, count: int) -> Asked:
    """Send the taking of `count` fencing tokens for claims to come (a token is taken once,
    whether the transaction commits or not: one never used is a gap, never a repeat)."""
    return conn.execute("SELECT nextval('work_fences') FROM generate_series(1, %s)", (count,))


def renew(conn: Conn, fences: Iterable[int], lease_s: float) -> set[int]:
    """Extend the leases of `fences` (the claims a worker runs, and no other of its claims);
    returns those still held. A take-over changes a claim's fence under its row's lock, so a
    lease that ran out but was not taken over is kept, and one taken over is never revived."""
    wanted = sorted(fences)
    if not wanted:
        return set()
    rows = conn.execute(
        "UPDATE work_items SET lease_expires_at = now() + make_interval(secs => %s)"
        " WHERE fence = ANY(%s) RETURNING fence",
        (lease_s, wanted),
    ).fetchall()
    return {int(fence) for (fence,) in rows}


def held(conn: Conn, claim: Claim) -> bool:
    """Whether `claim` still holds its task, its row locked until the transaction ends: the
    fencing check every write of a claim's worker makes first. The token alone decides: a
    lease that ran out with nobody taking it over is still this claim's (a take-over gives the
    row a new fence, or removes it, under the same lock)."""
    return claim.fence in held_of(conn, [claim])


def finished_check(claim: Claim) -> tuple[str, tuple[object, ...]]:
    """`finish` of a claim whose attempt succeeded, as a statement another embeds: the row
    goes only while it has the claim's fence (the fencing check of `held`), `RETURNING` a row
    then, none when the claim is no longer this worker's."""
    return (
        "DELETE FROM work_items WHERE run_id = %s AND task_id = %s AND fence = %s RETURNING 1",
        (claim.run_id, claim.task_id, claim.fence),
    )


def held_of(conn: Conn, claims: Sequence[Claim]) -> set[int]:
    """The fences of `claims` that still hold their tasks (`held`), their rows locked, in one
    statement."""
    if not claims:
        return set()
    rows = conn.execute(
        "SELECT w.fence FROM work_items AS w"
        " JOIN unnest(%s::text[], %s::text[], %s::bigint[]) AS c (run_id, task_id, fence)"
        " ON w.run_id = c.run_id AND w.task_id = c.task_id AND w.fence = c.fence"
        " ORDER BY w.run_id, w.task_id FOR UPDATE OF w",
        (
            [c.run_id for c in claims],
            [c.task_id for c in claims],
            [c.fence for c in claims],
        ),
    ).fetchall()
    return {int(fence) for (fence,) in rows}


def finish(conn: Conn, claim: Claim, again: Ready | None) -> None:
    """The claim's attempt ended: its row goes, or becomes `again` (an automatic retry)."""
    if again is None:
        conn.execute(
            "DELETE FROM work_items WHERE run_id = %s AND task_id = %s AND fence = %s",
            (claim.run_id, claim.task_id, claim.fence),
        )
        return
    conn.execute(
        "UPDATE work_items SET worker = NULL, fence = NULL, attempt_id = NULL,"
        " lease_expires_at = NULL, attempt = %s, attempt_kind = %s,"
        " not_before = now() + make_interval(secs => %s)"
        " WHERE run_id = %s AND task_id = %s AND fence = %s",
        (
            again.attempt,
            again.attempt_kind,
            again.delay_s,
            claim.run_id,
            claim.task_id,
            claim.fence,
        ),
    )
    conn.execute(f"NOTIFY {CHANNEL}")


def expired_claims(
    conn: Conn,
    limit: int,
    refused: Iterable[str] = (),
    *,
    worker: str | None = None,
    running: Iterable[int] = (),
) -> list[Claim]:
    """Claims to take over, locked (rows a heartbeat holds are skipped: their lease is being
    looked at), but for the runs in `refused` and the claims `worker` runs (`running`: its
    own watchdog decides those): those whose lease ran out, and `worker`'s own claims it does
    not run — a claim whose commit it never heard of, never launched."""
    rows = conn.execute(
        "SELECT run_id, task_id, attempt, attempt_kind, attempt_id, worker, fence"
        " FROM work_items WHERE worker IS NOT NULL AND NOT (run_id = ANY(%s))"
        " AND NOT (fence = ANY(%s)) AND (lease_expires_at <= now() OR worker = %s)"
        " ORDER BY lease_expires_at LIMIT %s FOR UPDATE SKIP LOCKED",
        (sorted(refused), sorted(running), worker, limit),
    ).fetchall()
    return [
        Claim(str(r), str(t), int(a), str(k), str(i), str(w), int(f))
        for r, t, a, k, i, w, f in rows
    ]


def items_of_others(conn: Conn, refused: Iterable[str] = ()) -> int:
    """The items of runs not in `refused` — ready now, after a retry's delay, or claimed by
    a worker whose lease may run out: work that may still come to any worker."""
    row = conn.execute(
        "SELECT count(*) FROM work_items WHERE NOT (run_id = ANY(%s))", (sorted(refused),)
    ).fetchone()
    return int(row[0]) if row is not None else 0


def items_left(conn: Conn, run_id: str) -> int:
    """The run's items still ready or running."""
    row = conn.execute("SELECT count(*) FROM work_items WHERE run_id = %s", (run_id,)).fetchone()
    return int(row[0]) if row is not None else 0


def done_tasks(conn: Conn, run_id: str, task_ids: Sequence[str]) -> set[str]:
    """Which of `task_ids` the log says are done in the run (succeeded or skipped)."""
    if not task_ids:
        return set()
    rows = conn.execute(
        "SELECT DISTINCT task_id FROM decision_log WHERE run_id = %s AND task_id = ANY(%s)"
        " AND decision_type = 'execution' AND decision_outcome IN ('succeeded', 'skipped')",
        (run_id, list(task_ids)),
    ).fetchall()
    return {str(task_id) for (task_id,) in rows}


def run_records(conn: Conn, run_id: str) -> list[Mapping[str, Any]]:
    """Every record of the run, in order, as this transaction sees the log."""
    rows = conn.execute(
        "SELECT line FROM decision_log WHERE run_id = %s ORDER BY seq", (run_id,)
    ).fetchall()
    return [orjson.loads(line) for (line,) in rows]


def run_start(conn: Conn, run_id: str) -> tuple[Mapping[str, Any], bytes]:
    """The run's start record and the plan copy it names, as the database keeps them."""
    row = conn.execute(
        "SELECT line FROM decision_log WHERE run_id = %s AND decision_type = 'run_lifecycle'"
        " AND decision_outcome = 'started' ORDER BY seq LIMIT 1",
        (run_id,),
    ).fetchone()
    plan = conn.execute(
        "SELECT bytes FROM run_files WHERE run_id = %s AND path = 'plan.yaml'", (run_id,)
    ).fetchone()
    if row is None or plan is None:
        raise LookupError(f"run {run_id} has no start record and plan copy in the database")
    return orjson.loads(row[0]), bytes(plan[0])


def run_exists(conn: Conn, run_id: str) -> bool:
    """Whether the log has any record of the run."""
    row = conn.execute("SELECT 1 FROM decision_log WHERE run_id = %s LIMIT 1", (run_id,))
    return row.fetchone() is not None


def store_output(conn: Conn, claim: Claim, data: bytes) -> None:
    """Keep an attempt's output in the transaction that records its end (after its fencing
    check); nothing when the attempt has an output already."""
    keep_output(conn, (claim.run_id, claim.task_id, claim.attempt), data)


def task_records(
    conn: Conn, run_id: str, task_ids: Sequence[str], asked: Asked | None = None
) -> list[Mapping[str, Any]]:
    """Every record of the run's `task_ids`, in order (their end records name their outputs);
    `asked`: the answer of `ask_task_records` for the same, sent earlier in the transaction."""
    if not task_ids:
        return []
    rows = (asked if asked is not None else ask_task_records(conn, run_id, task_ids)).fetchall()
    return [orjson.loads(line) for (line,) in rows]


def ask_task_records(conn: Conn, run_id: str, task_ids: Sequence[str]) -> Asked:
    """Send the read of `task_records` now, its answer taken later in the same transaction."""
    return conn.execute(
        "SELECT line FROM decision_log WHERE run_id = %s AND task_id = ANY(%s) ORDER BY seq",
        (run_id, list(task_ids)),
    )


def run_file(conn: Conn, run_id: str, path: str) -> bytes | None:
    """A stored evidence file of the run (its path inside the run's folder), or None."""
    row = conn.execute(
        "SELECT bytes FROM run_files WHERE run_id = %s AND path = %s", (run_id, path)
    ).fetchone()
    return bytes(row[0]) if row is not None else None


class PauseFollower:
    """Follows the log's pause records from one worker's claims, reading only new ones."""

    def __init__(self) -> None:
        self.seq = 0
        self.in_force: PauseInForce | None = None

    def ask(self, conn: Conn) -> Asked:
        """Send the read of the pause records not seen yet, its answer taken by `check` later
        in the same transaction (which holds the log's head: no pause can land meanwhile)."""
        return conn.execute(
            "SELECT seq, line FROM decision_log WHERE decision_type = 'pause' AND seq > %s"
            " ORDER BY seq",
            (self.seq,),
        )

    def check(self, conn: Conn, asked: Asked | None = None) -> PauseInForce | None:
        """The pause in force, as the transaction of `conn` (which holds the log's head) sees
        it: no pause can be recorded before that transaction ends. `asked`: what `ask` sent in
        this transaction."""
        rows = (asked if asked is not None else self.ask(conn)).fetchall()
        for seq, line in rows:
            self.in_force = pause_after(self.in_force, orjson.loads(line))
            self.seq = int(seq)
        return self.in_force


def claim_holders(conn: Conn) -> dict[str, int]:
    """How many workers hold claims of each run now (runs nobody runs are absent)."""
    rows = conn.execute(
        "SELECT run_id, count(DISTINCT worker) FROM work_items WHERE worker IS NOT NULL"
        " GROUP BY run_id"
    ).fetchall()
    return {str(run_id): int(count) for run_id, count in rows}


def live_runs(conn: Conn, *, other_than: str | None = None) -> list[LiveRun]:
    """The database's runs no lifecycle record has ended, each with its plan's key from its
    start record (but `other_than`): what a plan's concurrency rule counts. Asked in a
    transaction holding the log's head, no run starts or ends meanwhile."""
    rows = conn.execute(
        "SELECT DISTINCT ON (run_id) run_id, decision_outcome FROM decision_log"
        " WHERE decision_type = 'run_lifecycle' AND run_id IS NOT NULL ORDER BY run_id, seq DESC"
    ).fetchall()
    live = []
    for run_id, outcome in rows:
        if outcome != "started" or run_id == other_than:
            continue
        try:
            started, _text = run_start(conn, str(run_id))
        except LookupError:
            continue  # a start with no plan copy runs nothing
        inputs, details = started.get("decision_inputs") or {}, started.get("details") or {}
        key = recorded_rule(inputs, details)[0]
        live.append(LiveRun(str(run_id), key, "its workers", started.get("decided_at")))
    return live
