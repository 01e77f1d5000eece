"""The statements of `stoic.store.pg_work` on a real server: each claim, fencing check and
output keeping is one statement, and does what the several it replaced did."""

from __future__ import annotations

from pathlib import Path

from stoic.store import pg_work as work
from stoic.store.pg_driver import connect
from stoic.store.pg_outputs import keep_output
from stoic.store.pg_store import PostgresStore
from tests.conftest import run_cli
from tests.postgres import EmbeddedPostgres


def _db(postgres: EmbeddedPostgres) -> str:
    url = postgres.new_database()
    PostgresStore.migrate(url)
    return url


def test_a_claim_takes_the_oldest_ready_items_each_with_its_own_id_and_fence(
    postgres: EmbeddedPostgres,
) -> None:
    url = _db(postgres)
    with connect(url) as conn, conn.transaction():
        work.make_ready(conn, [work.Ready("run-b", "t2", 1, "first")])
        work.make_ready(conn, [work.Ready("run-a", "t9", 1, "first", delay_s=-5)])
        work.make_ready(conn, [work.Ready("run-a", "t1", 2, "automatic_retry", delay_s=60)])
    with connect(url) as other, other.transaction():
        locked = other.execute(
            "SELECT 1 FROM work_items WHERE task_id = 't2' FOR UPDATE"
        ).fetchone()
        assert locked is not None
        with connect(url) as conn, conn.transaction():  # t2 is held: skipped, not waited for
            assert [c.task_id for c in work.claim_ready(conn, "w1", 5, 30, ["i1", "i2"])] == ["t9"]
    with connect(url) as conn, conn.transaction():
        conn.execute("UPDATE work_items SET worker = NULL, fence = NULL, lease_expires_at = NULL")
        conn.execute(
            "UPDATE work_items SET not_before = now() - interval '1 s' WHERE task_id = 't1'"
        )
        claims = work.claim_ready(conn, "w1", 5, 30, ["i1", "i2", "i3"], refused=["run-x"])
    assert [(c.run_id, c.task_id, c.attempt, c.attempt_kind) for c in claims] == [
        ("run-a", "t9", 1, "first"),  # the oldest first
        ("run-a", "t1", 2, "automatic_retry"),
        ("run-b", "t2", 1, "first"),
    ]
    assert [c.attempt_id for c in claims] == ["i1", "i2", "i3"]
    assert len({c.fence for c in claims}) == 3
    with connect(url) as conn:
        rows = conn.execute(
            "SELECT task_id, worker, fence, attempt_id FROM work_items ORDER BY task_id"
        ).fetchall()
        assert sorted(rows) == sorted((c.task_id, "w1", c.fence, c.attempt_id) for c in claims)
        with conn.transaction():  # refused runs and the limit
            conn.execute(
                "UPDATE work_items SET worker = NULL, fence = NULL, lease_expires_at = NULL"
            )
            only = work.claim_ready(conn, "w2", 1, 30, ["j1", "j2"], refused=["run-a"])
        assert [(c.task_id, c.attempt_id) for c in only] == [("t2", "j1")]


def test_the_fencing_check_of_several_claims_is_one_statement(
    postgres: EmbeddedPostgres,
) -> None:
    url = _db(postgres)
    with connect(url) as conn, conn.transaction():
        work.make_ready(conn, [work.Ready("run-a", f"t{n}", 1, "first") for n in range(3)])
        claims = work.claim_ready(conn, "w1", 3, 30, ["a", "b", "c"])
    taken_over, gone, kept = claims
    with connect(url) as conn:
        conn.execute(
            "UPDATE work_items SET fence = nextval('work_fences') WHERE task_id = %s",
            (taken_over.task_id,),
        )
        conn.execute("DELETE FROM work_items WHERE task_id = %s", (gone.task_id,))
        with conn.transaction():
            assert work.held_of(conn, claims) == {kept.fence}
            assert work.held(conn, kept) and not work.held(conn, gone)
            assert work.held_of(conn, []) == set()


def test_an_output_is_kept_once_in_one_statement(postgres: EmbeddedPostgres) -> None:
    url = _db(postgres)
    big = b"x" * (1 << 20) + b"tail"
    with connect(url) as conn:
        with conn.transaction():
            keep_output(conn, ("run-a", "t1", 1), big)
            keep_output(conn, ("run-a", "t1", 1), b"never written over")
            keep_output(conn, ("run-a", "t2", 1), b"")
        rows = conn.execute(
            "SELECT task_id, chunk_no, length(bytes) FROM attempt_outputs ORDER BY 1, 2"
        ).fetchall()
    assert rows == [("t1", 0, 0), ("t1", 1, 1 << 20), ("t1", 2, 4), ("t2", 0, 0)]
    store = PostgresStore.open(url)
    try:
        assert b"".join(store.outputs.read("run-a", "t1", 1)) == big
    finally:
        store.close()


def test_a_chain_on_one_worker_wakes_nobody_after_its_start(
    postgres: EmbeddedPostgres, tmp_path: Path
) -> None:
    """Each end claims its successor in its own transaction: no other worker could take it,
    so none is woken (nor the worker itself, which would look for nothing)."""
    url = _db(postgres)
    (tmp_path / "steps.py").write_text("def step():\n    return None\n")
    lines = ["meta: {name: chain}", "tasks:"]
    lines += [
        f"  - {{id: t{n}, call: 'steps:step'{f', depends_on: [t{n - 1}]' if n else ''}}}"
        for n in range(4)
    ]
    plan = tmp_path / "plan.yaml"
    plan.write_text("\n".join(lines) + "\n")
    with connect(url) as listener:
        listener.execute(f"LISTEN {work.CHANNEL}")
        started = run_cli("run", str(plan), "--db", url, "--json")
        assert started.exit_code == 0, started.stderr
        scratch = str(tmp_path / "scratch")
        done = run_cli("worker", "--db", url, "--exit-when-idle", "--scratch", scratch)
        assert done.exit_code == 0, done.stderr
        heard = list(listener.notifies(timeout=0.5))
    assert len(heard) == 1  # the run's start, which made t0 ready
    with connect(url) as conn:
        ends = conn.execute(
            "SELECT count(*) FROM decision_log WHERE decision_outcome = 'succeeded'"
        ).fetchone()
    assert ends == (4,)


def test_a_chains_outputs_reach_the_next_task_claimed_with_the_end_that_made_them(
    postgres: EmbeddedPostgres, tmp_path: Path
) -> None:
    """A dependent claimed in its dependency's end transaction gets its outputs from that end
    record (a big one's file too); one ended before, from the log."""
    url = _db(postgres)
    (tmp_path / "steps.py").write_text(
        "def a():\n    return {'n': 1}\n"
        "def b(inputs=None):\n    return {'n': inputs['a']['n'] + 1, 'blob': 'x' * 100_000}\n"
        "def c(inputs=None):\n"
        "    assert inputs['a'] == {'n': 1} and inputs['b']['n'] == 2, inputs\n"
        "    assert len(inputs['b']['blob']) == 100_000\n"
    )
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "meta: {name: passed-on}\ntasks:\n"
        "  - {id: a, call: 'steps:a'}\n"
        "  - {id: b, call: 'steps:b', depends_on: [a]}\n"
        "  - {id: c, call: 'steps:c', depends_on: [a, b]}\n"
    )
    started = run_cli("run", str(plan), "--db", url, "--json")
    assert started.exit_code == 0, started.stderr
    scratch = str(tmp_path / "scratch")
    done = run_cli("worker", "--db", url, "--exit-when-idle", "--scratch", scratch)
    assert done.exit_code == 0, done.stderr
    with connect(url) as conn:
        ends = conn.execute(
            "SELECT task_id, decision_outcome FROM decision_log"
            " WHERE decision_type = 'execution' AND decision_outcome <> 'started' ORDER BY seq"
        ).fetchall()
    assert ends == [("a", "succeeded"), ("b", "succeeded"), ("c", "succeeded")]
