"""Escalations of database runs, against a real PostgreSQL (DESIGN §9, §13): a task that hands
its decision to a person on a worker has its escalation raised in the database, its run waits,
and a person's answer takes the run up for its workers."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson

from stoic.services import db_escalations
from stoic.store.pg_store import PostgresStore
from tests.conftest import STOIC_BIN, CliResult, run_cli

HOSTILE = "\x1b]0;pwned\x07"

TASK = """\
import os
import stoic

def ask():
    guidance = os.environ.get("STOIC_GUIDANCE")
    with open(os.environ["SEEN"], "a") as seen:
        seen.write(repr(guidance) + "\\n")
    if guidance is None:
        stoic.escalate("Which region gets the deploy?", context="two are up {hostile}")
    return {{"region": guidance}}

def after(inputs):
    with open(os.environ["SEEN"], "a") as seen:
        seen.write("after " + inputs["ask"]["region"] + "\\n")
"""


def _records(url: str) -> list[dict[str, object]]:
    with PostgresStore.open(url) as store:
        return [record._asdict() for record in store.read()]


def _work(db: str, tmp_path: Path, seen: Path) -> None:
    ran = subprocess.run(
        [
            STOIC_BIN,
            "worker",
            "--db",
            db,
            "--exit-when-idle",
            "--poll-seconds",
            "0.1",
            "--scratch",
            str(tmp_path / "scratch"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "SEEN": str(seen), "HOME": str(tmp_path)},
        check=False,
    )
    assert ran.returncode == 0, ran.stderr


def _escalating_run(db: str, tmp_path: Path) -> tuple[str, Path]:
    (tmp_path / "region.py").write_text(TASK.format(hostile=HOSTILE))
    plan = tmp_path / "plan.yaml"
    seen = tmp_path / "seen"
    env = f"    env: {{SEEN: '{seen}'}}\n"
    plan.write_text(
        "meta: {name: deploy}\ntasks:\n  - id: ask\n    call: 'region:ask'\n"
        + env
        + "  - id: after\n    call: 'region:after'\n    depends_on: [ask]\n"
        + env
    )
    started = run_cli("run", str(plan), "--db", db, "--json")
    assert started.exit_code == 0, started.stderr
    _work(db, tmp_path, seen)
    return str(orjson.loads(started.stdout)["run_id"]), seen


def _answer(db: str, escalation_id: str, decision: str, *extra: str) -> CliResult:
    return run_cli(
        "escalations", "answer", escalation_id, "--db", db, "--decision", decision, *extra
    )


def _audit_clean(db: str, tmp_path: Path) -> None:
    audited = run_cli("audit", "--db", db, "--json")
    assert audited.exit_code == 0, audited.stdout
    exported = run_cli("export", str(tmp_path / "exported"), "--db", db, "--json")
    assert exported.exit_code == 0, exported.stderr  # its briefings written and audited too
    briefing = tmp_path / "exported" / "escalations" / "ESC-001.md"
    assert "Which region gets the deploy?" in briefing.read_text()
    _, shown = db_escalations.briefing(db, "ESC-001")
    # what `show --db` and the console show: the same, but for how to answer it
    facts, proceed = shown.split("## To Proceed")
    assert facts == briefing.read_text().split("## To Proceed")[0]
    assert 'stoic escalations answer ESC-001 --decision routed --note "…" --db URL' in proceed
    assert "amended" not in proceed and "stoic continue" not in proceed  # neither works there


def test_a_task_escalates_on_a_worker_and_a_routed_answer_takes_the_run_up(
    db: str, tmp_path: Path
) -> None:
    run_id, seen = _escalating_run(db, tmp_path)
    raised = [r for r in _records(db) if r["decision_type"] == "escalation"]
    assert [(r["decision_outcome"], r["task_id"], r["escalation_id"]) for r in raised] == [
        ("raised", "ask", "ESC-001")
    ]
    status = run_cli("status", run_id, "--db", db, "--json")
    assert status.exit_code == 0, status.stderr
    assert orjson.loads(status.stdout)["status"] == "awaiting_human"
    assert "ESC-001" in run_cli("status", run_id, "--db", db).stdout  # what it waits on

    listed = run_cli("escalations", "--db", db, "--open", "--json")
    assert listed.exit_code == 0, listed.stderr
    [row] = orjson.loads(listed.stdout)
    assert (row["id"], row["run_id"], row["task_id"]) == ("ESC-001", run_id, "ask")
    shown = run_cli("escalations", "show", "ESC-001", "--db", db)
    assert shown.exit_code == 0, shown.stderr
    assert "Which region gets the deploy?" in shown.stdout
    assert "\x1b" not in shown.stdout and "\\x1b" in shown.stdout  # escaped for the terminal

    answered = _answer(db, "ESC-001", "routed", "--note", "eu-west", "--as", "ana", "--json")
    assert answered.exit_code == 0, answered.stderr
    document = orjson.loads(answered.stdout)
    assert document["status"] == "resolved"
    assert "ready for its workers" in document["run_taken_up"]
    again = _answer(db, "ESC-001", "aborted", "--note", "no", "--as", "ben")
    assert again.exit_code != 0
    assert "ESC-001 is closed: it was routed by human:ana" in again.stderr

    _work(db, tmp_path, seen)
    assert seen.read_text().splitlines() == ["None", "'eu-west'", "after eu-west"]
    ends = [r["decision_outcome"] for r in _records(db) if r["decision_type"] == "run_lifecycle"]
    assert ends == ["started", "awaiting_approval", "started", "completed"]
    started_again = [
        r
        for r in _records(db)
        if r["decision_type"] == "execution" and r["decision_outcome"] == "started"
    ]
    assert started_again[1]["decision_inputs"]["attempt_kind"] == "approved_recovery"
    _audit_clean(db, tmp_path)


def test_an_aborted_escalation_ends_the_run_failed(db: str, tmp_path: Path) -> None:
    run_id, seen = _escalating_run(db, tmp_path)
    answered = _answer(db, "ESC-001", "aborted", "--note", "not today", "--as", "ana")
    assert answered.exit_code == 0, answered.stderr
    assert f"run {run_id} ended again: failed" in answered.stdout
    _work(db, tmp_path, seen)
    assert seen.read_text().splitlines() == ["None"]  # never run again
    status = run_cli("status", run_id, "--db", db, "--json")
    assert orjson.loads(status.stdout)["status"] == "failed"
    _audit_clean(db, tmp_path)


def test_answers_a_database_cannot_take_are_refused_in_one_line(db: str, tmp_path: Path) -> None:
    _escalating_run(db, tmp_path)
    amended = _answer(
        db, "ESC-001", "amended", "--plan", str(tmp_path / "plan.yaml"), "--as", "ana"
    )
    assert amended.exit_code == 2
    assert amended.stderr.count("\n") == 1 and "--plan" in amended.stderr
    amended = _answer(db, "ESC-001", "amended", "--as", "ana")
    assert amended.exit_code == 2
    assert "start a new run of the amended plan" in amended.stderr
    unknown = _answer(db, "ESC-009", "routed", "--as", "ana")
    assert unknown.exit_code != 0 and "no escalation ESC-009" in unknown.stderr
    malformed = run_cli("escalations", "show", "ESC-../x", "--db", db)
    assert malformed.exit_code == 2
    passed_on = _answer(
        db, "ESC-001", "escalated", "--to", "lead", "--note", "yours", "--as", "ana", "--json"
    )
    assert passed_on.exit_code == 0, passed_on.stderr
    document = orjson.loads(passed_on.stdout)
    assert document["status"] == "open" and document["run_taken_up"] is None
    assert not [r for r in _records(db) if r["decision_outcome"] == "resolved"]


def test_a_task_of_a_database_run_cannot_answer_an_escalation(db: str, tmp_path: Path) -> None:
    """A task that runs `stoic escalations answer --as ana` on a worker is refused: only a
    person answers."""
    _escalating_run(db, tmp_path)
    plan = tmp_path / "sneaky.yaml"
    plan.write_text(
        "meta: {name: sneaky}\ntasks:\n  - id: answer\n    run: ["
        f"{STOIC_BIN}, escalations, answer, ESC-001, --db, '{db}', --decision, routed,"
        " --note, x, --as, ana]\n"
    )
    started = run_cli("run", str(plan), "--db", db, "--json")
    assert started.exit_code == 0, started.stderr
    _work(db, tmp_path, tmp_path / "seen")
    assert not [r for r in _records(db) if r["decision_outcome"] == "resolved"]
