"""`stoic export`, `stoic import` and `stoic audit --db`: a decision log carried between the
files backend and PostgreSQL byte for byte, and audited where it lies, against a real server."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import orjson
import psycopg
import pytest

from stoic.core.records import GENESIS_HASH, Decision
from stoic.exceptions import LogCorrupt, WorkspaceExists
from stoic.store.layout import DECISION_LOG
from stoic.store.pg_store import PostgresStore
from stoic.store.run_evidence import check_evidence_path
from tests.conftest import run_cli, run_stoic_process
from tests.postgres import EmbeddedPostgres


@pytest.fixture
def db(postgres: EmbeddedPostgres) -> str:
    """A fresh database without the stoic schema (import makes it)."""
    return postgres.new_database()


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages and batches of two: every read and insert spans many of them."""
    monkeypatch.setattr("stoic.store.pg_store._PAGE", 2)
    monkeypatch.setattr("stoic.store.pg_projections._PAGE", 2)  # a fold caught up in pages
    monkeypatch.setattr("stoic.services.db_transfer._BATCH", 2)


def _ok(*args: str, code: int = 0) -> str:
    result = run_cli(*args)
    assert result.exit_code == code, f"stoic {' '.join(args)}: {result.stdout}{result.stderr}"
    return result.stdout


def _workspace(tmp_path: Path) -> Path:
    """A files workspace whose log feeds the queue, the escalations and the pause views."""
    ws = tmp_path / "ws"
    _ok("init", str(ws))
    first = _ok("-w", str(ws), "propose", "--title", "t", "--reasoning", "r", "--", "true").strip()
    _ok("-w", str(ws), "propose", "--title", "u", "--reasoning", "s", "--", "true")
    _ok("-w", str(ws), "approve", first, "--reason", "fine")
    _ok("-w", str(ws), "escalate", "--mode", "ambiguity", "--question", "Which one?")
    _ok("-w", str(ws), "stop", "--reason", "a look first")
    _ok("-w", str(ws), "resume", "--procedure", "manual-verification", "--reason", "ok")
    _ok("-w", str(ws), "calibrate", "batches of ten are fine")
    return ws


def _log(root: Path) -> bytes:
    return (root / DECISION_LOG).read_bytes()


@pytest.mark.usefixtures("small_pages")
def test_a_workspace_goes_in_and_comes_out_byte_for_byte_and_audits_clean(
    tmp_path: Path, db: str
) -> None:
    ws = _workspace(tmp_path)
    original = _log(ws)
    count = original.count(b"\n")
    assert count >= 7

    imported = orjson.loads(_ok("import", str(ws), "--db", db, "--json"))
    last = orjson.loads(original.splitlines()[-1])
    assert imported["records"] == count
    assert imported["head"] == f"{last['seq']}:{last['hash']}"
    assert _log(ws) == original  # the source is read, never written

    audited = orjson.loads(_ok("audit", "--db", db, "--json"))
    assert audited["ok"] is True and audited["records"] == count
    assert audited["head"] == imported["head"]

    out = tmp_path / "out"
    exported = orjson.loads(_ok("export", str(out), "--db", db, "--json"))
    assert exported["records"] == count and exported["audit"]["ok"] is True
    assert _log(out) == original
    assert (out / "stoic.toml").read_text() == (ws / "stoic.toml").read_text()  # the default
    assert sorted(p.name for p in (out / "queue" / "approved").iterdir()) == sorted(
        p.name for p in (ws / "queue" / "approved").iterdir()
    )
    assert (out / "manifests" / "queue_manifest.json").is_file()
    assert "Audit clean" in _ok("-w", str(out), "audit")
    assert not any(p.name.startswith(".out.") for p in tmp_path.iterdir())


def test_an_empty_database_exports_an_empty_workspace(tmp_path: Path, db: str) -> None:
    PostgresStore.init(db).close()
    out = tmp_path / "out"
    out.mkdir()  # an empty folder is fine
    text = _ok("export", str(out), "--db", db)
    assert "Exported 0 records" in text and "Audit clean" in text
    assert _log(out) == b""


def test_export_refuses_a_folder_that_is_not_empty(tmp_path: Path, db: str) -> None:
    PostgresStore.init(db).close()
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = run_cli("export", str(out), "--db", db)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "not an empty folder" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_import_refuses_a_database_whose_log_is_not_empty(tmp_path: Path, db: str) -> None:
    ws = _workspace(tmp_path)
    _ok("import", str(ws), "--db", db)
    head = orjson.loads(_ok("audit", "--db", db, "--json"))["head"]
    result = run_cli("import", str(ws), "--db", db)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert f"not empty (head {head})" in result.stderr
    assert db not in result.stderr  # a URL may hold a password


def test_import_refuses_a_workspace_that_does_not_audit_clean(tmp_path: Path, db: str) -> None:
    ws = _workspace(tmp_path)
    lines = _log(ws).splitlines(keepends=True)
    lines[2] = lines[2].replace(b'"decision_reason":"', b'"decision_reason":"X', 1)
    (ws / DECISION_LOG).write_bytes(b"".join(lines))
    result = run_cli("import", str(ws), "--db", db)
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert "does not audit clean" in result.stderr and "seq 3" in result.stderr
    store = PostgresStore.init(db)
    try:
        assert store.head().seq == 0
    finally:
        store.close()


def _lines(tmp_path: Path) -> list[bytes]:
    return _log(_workspace(tmp_path)).splitlines(keepends=True)


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        (lambda ls: ls[:3] + ls[4:], "holds seq 5, not 4"),
        (lambda ls: [*ls[:3], ls[3].replace(b'reason":"', b'reason":"X', 1), *ls[4:]], "its hash"),
        (lambda ls: [*ls[:3], ls[3][:-1], *ls[4:]], "line 4 of the log is not one whole line"),
        (lambda ls: [*ls[:3], ls[3].replace(b",", b", ", 1), *ls[4:]], "seq 4"),
    ],
    ids=["gap", "edited", "no-newline", "not-canonical"],
)
def test_import_lines_refuses_a_broken_chain_and_stores_nothing(
    tmp_path: Path, db: str, damage: object, said: str
) -> None:
    lines = _lines(tmp_path)
    assert callable(damage)
    store = PostgresStore.init(db)
    try:
        with pytest.raises(LogCorrupt) as refused:
            store.import_lines([damage(lines)])
        assert said in str(refused.value) and "nothing was imported" in str(refused.value)
        assert store.head().seq == 0 and list(store.read()) == []
        assert store.import_lines([lines[:2], lines[2:]]).seq == len(lines)
        with pytest.raises(WorkspaceExists):
            store.import_lines([lines])
    finally:
        store.close()


def _tampered(db: str, *statements: str) -> None:
    """What a superuser can do by switching the append-only trigger off."""
    with psycopg.connect(db, autocommit=True) as conn, conn.transaction():
        conn.execute("ALTER TABLE decision_log DISABLE TRIGGER decision_log_append_only")
        for statement in statements:
            conn.execute(statement)
        conn.execute("ALTER TABLE decision_log ENABLE TRIGGER decision_log_append_only")


def _audit(db: str) -> dict[str, object]:
    result = run_cli("audit", "--db", db, "--json")
    assert result.exit_code == 1, result.stderr
    report = orjson.loads(result.stdout)
    assert report["ok"] is False
    return dict(report)


@pytest.mark.usefixtures("small_pages")
def test_audit_names_a_row_whose_line_was_edited(tmp_path: Path, db: str) -> None:
    _ok("import", str(_workspace(tmp_path)), "--db", db)
    _tampered(
        db,
        "UPDATE decision_log SET line = convert_to(replace(convert_from(line, 'UTF8'),"
        " '\"decision_reason\":\"', '\"decision_reason\":\"Edited: '), 'UTF8') WHERE seq = 3",
    )
    report = _audit(db)
    violations = report["violations"]
    assert isinstance(violations, list)
    assert [(v["code"], v["seq"]) for v in violations] == [("hash_mismatch", 3)]
    text = run_cli("audit", "--db", db).stdout
    assert "Audit FAILED" in text and "seq 3: hash_mismatch" in text


@pytest.mark.usefixtures("small_pages")
def test_audit_names_the_row_whose_line_is_no_record_by_its_seq(tmp_path: Path, db: str) -> None:
    _ok("import", str(_workspace(tmp_path)), "--db", db)
    _tampered(
        db, "UPDATE decision_log SET line = convert_to('not json' || chr(10), 'UTF8') WHERE seq = 4"
    )
    violations = _audit(db)["violations"]
    assert isinstance(violations, list)
    assert ("bad_line", 4) in [(v["code"], v["seq"]) for v in violations]
    assert all(v["seq"] is not None and v["line"] is None for v in violations)


@pytest.mark.usefixtures("small_pages")
def test_audit_names_the_gap_a_deleted_row_leaves(tmp_path: Path, db: str) -> None:
    _ok("import", str(_workspace(tmp_path)), "--db", db)
    _tampered(db, "DELETE FROM decision_log WHERE seq = 4")
    violations = _audit(db)["violations"]
    assert isinstance(violations, list)
    gaps = [v for v in violations if v["code"] == "seq_gap"]
    assert [(v["seq"], v["expected"]) for v in gaps] == [(5, "seq 4")]


def test_audit_names_a_head_row_that_is_not_the_last_record(tmp_path: Path, db: str) -> None:
    _ok("import", str(_workspace(tmp_path)), "--db", db)
    last = orjson.loads(_ok("audit", "--db", db, "--json"))["last_seq"]
    with psycopg.connect(db, autocommit=True) as conn:  # a superuser, past the database's guard
        conn.execute("ALTER TABLE log_head DISABLE TRIGGER log_head_is_the_last_record")
        conn.execute("UPDATE log_head SET seq = seq + 5")
    (ahead,) = _audit(db)["violations"]  # type: ignore[misc]
    assert ahead["code"] == "records_lost" and f"ends at seq {last}" in ahead["message"]
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("UPDATE log_head SET seq = seq - 5, hash = %s", (GENESIS_HASH,))
    (wrong,) = _audit(db)["violations"]  # type: ignore[misc]
    assert wrong["code"] == "chain_break" and wrong["seq"] == last


def test_audit_of_a_database_prints_its_head_and_refuses_repair(db: str) -> None:
    PostgresStore.init(db).close()
    result = run_cli("audit", "--db", db, "--head")
    assert result.exit_code == 0 and "no head to anchor" in result.stderr
    refused = run_cli("audit", "--db", db, "--repair")
    assert refused.exit_code == 2 and refused.stderr.count("\n") == 1


def test_audit_names_a_projection_row_whose_state_the_log_does_not_give(
    tmp_path: Path, db: str
) -> None:
    _ok("import", str(_workspace(tmp_path)), "--db", db)
    store = PostgresStore.open(db)
    try:
        store.append(
            [Decision.from_mapping({"type": "audit", "outcome": "passed", "reason": "Ok."})]
        )
    finally:
        store.close()
    _ok("audit", "--db", db)  # the row the append wrote is what the log gives
    with psycopg.connect(db, autocommit=True) as conn:  # its stamp is real, its state is not
        conn.execute(
            "UPDATE projections SET state = jsonb_set(state, '{paused}',"
            ' \'{"reason": "forged", "criterion": "human_stop", "seq": 1}\')'
        )
    (forged,) = _audit(db)["violations"]  # type: ignore[misc]
    assert forged["code"] == "projection_mismatch" and "workspace_status" in forged["message"]


def test_init_db_gives_a_database_the_schema_once_and_refuses_a_newer_one(
    postgres: EmbeddedPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = postgres.new_database()
    first = orjson.loads(_ok("init", "--db", url, "--json"))
    assert first["applied"] == first["migrations"] and first["applied"][0] == "0001_decision_log"
    monkeypatch.setenv("STOIC_DB", url)  # the same database, named by the environment
    again = run_cli("init")
    assert again.exit_code == 0 and "has stoic's schema already" in again.stdout
    assert url not in again.stdout + again.stderr
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO stoic_migrations (name) VALUES ('9999_from_the_future')")
    refused = run_cli("init", "--db", url)
    assert refused.exit_code != 0 and "a newer stoic made this database" in refused.stderr
    assert refused.stderr.count("\n") == 1
    both = run_cli("init", "somewhere", "--db", url)
    assert both.exit_code == 2 and "not both" in both.stderr


def test_log_db_shows_a_databases_records_as_the_workspace_shows_its_own(
    tmp_path: Path, db: str
) -> None:
    workspace = _workspace(tmp_path)
    _ok("import", str(workspace), "--db", db)
    for options in ([], ["--tail", "2"], ["--type", "proposal"], ["--failures"]):
        from_files = _ok("-w", str(workspace), "log", "--json", *options)
        assert _ok("log", "--db", db, "--json", *options) == from_files
    table = _ok("log", "--db", db, "--type", "proposal")
    assert "proposal/created" in table and db not in table
    wrong = run_cli("log", "--db", db, "--type", "proposl")
    assert wrong.exit_code == 2 and "did you mean 'proposal'" in wrong.stderr


def test_status_db_counts_a_databases_records_from_its_projection_row(
    tmp_path: Path, db: str
) -> None:
    workspace = _workspace(tmp_path)
    _ok("import", str(workspace), "--db", db)
    store = PostgresStore.open(db)
    try:
        store.append(
            [Decision.from_mapping({"type": "audit", "outcome": "passed", "reason": "Ok."})]
        )
    finally:
        store.close()
    mine = orjson.loads(_ok("status", "--db", db, "--json"))
    theirs = orjson.loads(_ok("-w", str(workspace), "status", "--json"))
    assert mine["records"] == theirs["records"] + 1 and mine["workspace"] is None
    assert mine["by_type"]["audit"] == {"passed": 1}
    shown = _ok("status", "--db", db)
    assert "The database (--db)" in shown and db not in shown
    refused = run_cli("status", "run-1", "--db", db)
    assert refused.exit_code == 2 and "no run run-1 in the database" in refused.stderr


_PLAN = """\
meta: {name: carried}
tasks:
  - id: build
    shell: true
    run: |
      echo "building"; echo "to stderr" >&2
      python3 -c 'import json, sys; json.dump({"outputs": {"blob": "x" * 70000}}, sys.stdout)' \\
        > "$STOIC_RESULT"
  - id: check
    run: ["sh", "-c", "test -s \\"$STOIC_INPUTS\\" && echo checked"]
    depends_on: [build]
"""


def _ran(tmp_path: Path) -> tuple[Path, str]:
    """A workspace with one real run of a shell plan: attempt logs, a result file, an outputs
    file (the result is over the inline limit) and a dependent that reads it back."""
    ws = _workspace(tmp_path)
    plan = tmp_path / "plan.yaml"
    plan.write_text(_PLAN, encoding="utf-8")
    ran = run_stoic_process("-w", str(ws), "run", str(plan), "--json")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    run_id = str(orjson.loads(ran.stdout)["run_id"])
    return ws, run_id


def _evidence(root: Path, run_id: str) -> dict[str, bytes]:
    folder = root / "runs" / run_id
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not path.name.endswith(".inputs-1.json")
        and path.name not in ("state.json", "run.lock", ".inputs.spare")
    }  # fmt: skip


def test_a_runs_evidence_travels_byte_for_byte_and_the_export_audits_clean(
    tmp_path: Path, db: str
) -> None:
    ws, run_id = _ran(tmp_path)
    kept = _evidence(ws, run_id)
    assert {"plan.yaml", "tasks/build/attempt-1.log", "tasks/build/outputs-1.json"} <= set(kept)
    assert "results/build.attempt-1.json" in kept and "tasks/check/attempt-1.log" in kept

    imported = orjson.loads(_ok("import", str(ws), "--db", db, "--json"))
    assert imported["runs"] == 1 and imported["run_files"] == len(kept)
    assert imported["not_carried"] == [] and "runs_not_carried" not in imported
    with psycopg.connect(db) as conn:
        rows = conn.execute("SELECT path, size, sha256 FROM run_files ORDER BY path").fetchall()
    assert [row[0] for row in rows] == sorted(kept)

    out = tmp_path / "out"
    exported = orjson.loads(_ok("export", str(out), "--db", db, "--json"))
    assert exported["audit"]["ok"] is True, exported["audit"]["violations"]
    assert _evidence(out, run_id) == kept
    assert (out / "runs" / run_id / "state.json").is_file()
    assert not (out / "runs" / run_id / "run.lock").exists()  # a lease, never carried
    entries = (out / "logs" / "execution_log.md").read_text()
    assert entries.count("build") >= 1 and entries.count("check") >= 1
    assert "Audit clean" in _ok("-w", str(out), "audit")
    status = orjson.loads(_ok("-w", str(out), "status", run_id, "--json"))
    assert status == orjson.loads(_ok("-w", str(ws), "status", run_id, "--json")) | {
        key: status[key] for key in ("workspace",) if key in status
    }


def test_a_link_in_a_run_folder_refuses_the_import_and_stores_nothing(
    tmp_path: Path, db: str
) -> None:
    ws, run_id = _ran(tmp_path)
    outside = tmp_path / "secret.txt"
    outside.write_text("not the workspace's")
    (ws / "runs" / run_id / "tasks" / "build" / "attempt-2.log").symlink_to(outside)
    result = run_cli("import", str(ws), "--db", db)
    assert result.exit_code != 0 and result.stderr.count("\n") == 1, result.stderr
    assert "is a link" in result.stderr and "nothing was imported" in result.stderr
    store = PostgresStore.open(db)
    try:
        assert store.head().seq == 0
    finally:
        store.close()
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM run_files").fetchone() == (0,)


def test_a_fifo_in_a_run_folder_refuses_the_import(tmp_path: Path, db: str) -> None:
    ws, run_id = _ran(tmp_path)
    os.mkfifo(ws / "runs" / run_id / "results" / "build.attempt-9.json")
    result = run_cli("import", str(ws), "--db", db)
    assert result.exit_code != 0 and result.stderr.count("\n") == 1
    assert "not a plain file" in result.stderr


def test_a_file_stoic_does_not_keep_stays_behind_with_a_warning(tmp_path: Path, db: str) -> None:
    ws, run_id = _ran(tmp_path)
    (ws / "runs" / run_id / "notes.txt").write_text("mine")
    result = run_cli("import", str(ws), "--db", db, "--json")
    assert result.exit_code == 0, result.stderr
    assert f"runs/{run_id}/notes.txt" in result.stderr and "stay in the workspace" in result.stderr
    assert orjson.loads(result.stdout)["not_carried"] == [f"runs/{run_id}/notes.txt"]
    out = tmp_path / "out"
    assert orjson.loads(_ok("export", str(out), "--db", db, "--json"))["audit"]["ok"] is True
    assert not (out / "runs" / run_id / "notes.txt").exists()


def test_run_files_are_append_only_and_hold_only_a_run_folders_evidence(db: str) -> None:
    PostgresStore.init(db).close()
    insert = "INSERT INTO run_files (run_id, path, bytes, sha256, size) VALUES (%s, %s, %s, %s, %s)"
    data = b"plan\n"
    good = ("run-1", "plan.yaml", data, hashlib.sha256(data).hexdigest(), len(data))
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(insert, good)
        for statement in (
            "UPDATE run_files SET size = 1",
            "DELETE FROM run_files",
            "TRUNCATE run_files",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(statement)
        for bad in (
            ("run-1", "../plan.yaml", *good[2:]),
            ("run-1", "/etc/passwd", *good[2:]),
            ("run-1", "state.json", *good[2:]),
            ("run-1", "tasks/../x/attempt-1.log", *good[2:]),
            ("../run", "plan.yaml", *good[2:]),
            ("run-1", "plan.amended-1.yaml", data, "0" * 64, len(data)),
            ("run-1", "plan.amended-2.yaml", data, good[3], 99),
        ):
            with pytest.raises(psycopg.errors.CheckViolation):
                conn.execute(insert, bad)
        grants = conn.execute(
            "SELECT privilege_type FROM information_schema.role_table_grants"
            " WHERE table_name = 'run_files' AND grantee = 'stoic_writer' ORDER BY 1"
        ).fetchall()
    assert grants == [("INSERT",), ("SELECT",)]


@pytest.mark.parametrize(
    "path",
    ["../plan.yaml", "/plan.yaml", "plan.yaml\0", "state.json", "run.lock",
     "tasks/a/b/attempt-1.log", "results/x.inputs-1.json", "tasks/../attempt-1.log",
     "plan.amended-x.yaml"],
)  # fmt: skip
def test_only_the_layouts_evidence_names_are_stored(path: str) -> None:
    with pytest.raises(ValueError, match="not a file a run folder keeps"):
        check_evidence_path("run-1", path)
    for fine in ("plan.yaml", "plan.amended-2.yaml", "tasks/a.b/attempt-1.log",
                 "tasks/a/outputs-3.json", "results/a.attempt-1.attempt-2.json"):  # fmt: skip
        check_evidence_path("run-1", fine)
