"""The review queue of a database, against a real PostgreSQL (DESIGN §8, §13): two people
deciding one proposal from two processes, a worker's R2 task put in front of people, and the
decision taking the run up for its workers."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import orjson

from stoic.store.pg_store import PostgresStore
from tests.conftest import STOIC_BIN, run_cli


def _records(url: str, run_id: str | None = None) -> list[dict[str, object]]:
    with PostgresStore.open(url) as store:
        return [
            record._asdict() for record in store.read() if run_id is None or record.run_id == run_id
        ]


def _propose(db: str) -> str:
    result = run_cli(
        "propose", "--db", db, "--title", "rotate the key", "--reasoning", "it leaked", "--json"
    )
    assert result.exit_code == 0, result.stderr
    return str(orjson.loads(result.stdout)["id"])


def _audit_clean(url: str) -> None:
    result = run_cli("audit", "--db", url, "--json")
    assert result.exit_code == 0, result.stdout
    assert orjson.loads(result.stdout)["ok"] is True


def test_two_approvals_of_one_proposal_from_two_processes_one_wins(db: str) -> None:
    """Both `stoic approve` processes start at once, on one proposal: the log has exactly one
    approval, and the other process is told who decided, and exits non-zero."""
    for _round in range(5):
        proposal_id = _propose(db)
        procs = [
            subprocess.Popen(
                [STOIC_BIN, "approve", proposal_id, "--db", db, "--as", name],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for name in ("ana", "ben")
        ]
        results = [(proc.wait(timeout=60), *proc.communicate()) for proc in procs]
        codes = sorted(code for code, _out, _err in results)
        assert codes[0] == 0 and codes[1] != 0, results
        lost = next(err.decode() for code, _out, err in results if code != 0)
        assert f"{proposal_id} is approved by human:" in lost, lost
        assert "Traceback" not in lost
        approvals = [
            r
            for r in _records(db)
            if r["proposal_id"] == proposal_id and r["decision_outcome"] == "approved"
        ]
        assert len(approvals) == 1
    shown = run_cli("queue", "--db", db, "--status", "approved", "--json")
    assert shown.exit_code == 0, shown.stderr
    assert len(orjson.loads(shown.stdout)) == 5
    _audit_clean(db)


def test_a_task_of_a_database_run_cannot_decide_a_proposal(db: str, tmp_path: Path) -> None:
    """A task a worker runs tries `stoic approve --as ana`: refused, nothing recorded but
    the task's own failure; a rejection without a reason is refused too."""
    proposal_id = _propose(db)
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "meta: {name: sneaky}\ntasks:\n"
        f"  - {{id: sneak, run: [{STOIC_BIN}, approve, {proposal_id}, --db, '{db}', --as, ana]}}\n"
    )
    started = run_cli("run", str(plan), "--db", db, "--json")
    assert started.exit_code == 0, started.stderr
    run_id = str(orjson.loads(started.stdout)["run_id"])
    _work(db, tmp_path / "scratch")
    assert _records(db, run_id)[-1]["decision_outcome"] == "failed"
    output = run_cli("status", run_id, "--db", db)
    assert "a task cannot decide as a person" in output.stdout, output.stdout
    refused = run_cli("reject", proposal_id, "--db", db, "--as", "ana")
    assert refused.exit_code == 2
    assert "a rejection needs a reason" in refused.stderr
    ours = [r for r in _records(db) if r["proposal_id"] == proposal_id]
    assert [r["decision_outcome"] for r in ours] == ["created"]


def test_a_source_the_database_does_not_know_is_refused(db: str) -> None:
    result = run_cli(
        "propose", "--db", db, "--title", "t", "--reasoning", "r", "--source", "run-nope"
    )
    assert result.exit_code == 2
    assert "source 'run-nope' does not exist" in result.stderr
    assert _records(db) == []


def _slow_run(db: str, tmp_path: Path) -> tuple[str, Path]:
    """A run whose one task times out twice (an R1 retry, then R2: a person decides); the
    workspace it starts from retries at once, and a third attempt succeeds."""
    workspace = tmp_path / "ws"
    assert run_cli("init", str(workspace)).exit_code == 0
    settings = workspace / "stoic.toml"
    settings.write_text(
        settings.read_text().replace(
            "# timeout_retry_delay_seconds = 5.0", "timeout_retry_delay_seconds = 0"
        )
    )
    tries = tmp_path / "tries"
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "meta: {name: flaky}\ntasks:\n"
        "  - id: slow\n    idempotent: true\n    timeout: 0.5\n"
        f"    run: [sh, -c, 'echo x >> {tries}; [ $(wc -l < {tries}) -ge 3 ] || sleep 5']\n"
        '  - {id: after, run: ["true"], depends_on: [slow]}\n'
    )
    result = run_cli("-w", str(workspace), "run", str(plan), "--db", db, "--json")
    assert result.exit_code == 0, result.stderr
    return str(orjson.loads(result.stdout)["run_id"]), tmp_path / "scratch"


def _work(db: str, scratch: Path) -> None:
    ran = run_cli(
        "worker", "--db", db, "--exit-when-idle", "--poll-seconds", "0.1", "--scratch", str(scratch)
    )
    assert ran.exit_code == 0, ran.stderr


def test_an_r2_task_of_a_database_run_waits_as_a_proposal_and_its_approval_takes_the_run_up(
    db: str, tmp_path: Path
) -> None:
    run_id, scratch = _slow_run(db, tmp_path)
    _work(db, scratch)
    records = _records(db, run_id)
    assert records[-1]["decision_outcome"] == "awaiting_approval"
    created = [r for r in records if r["decision_type"] == "proposal"]
    assert [r["decision_outcome"] for r in created] == ["created"]
    proposal = created[0]
    assert proposal["task_id"] == "slow" and proposal["details"]["type"] == "recovery"  # type: ignore[index]
    proposal_id = str(proposal["proposal_id"])
    pending = run_cli("queue", "--db", db, "--status", "pending", "--json")
    assert [p["id"] for p in orjson.loads(pending.stdout)] == [proposal_id]

    approved = run_cli("approve", proposal_id, "--db", db, "--as", "ana", "--json")
    assert approved.exit_code == 0, approved.stderr
    said = orjson.loads(approved.stdout)
    assert said["status"] == "approved"
    assert said["run"] == f"task slow of run {run_id} is ready for its workers (attempt 3)"
    _work(db, scratch)
    records = _records(db, run_id)
    assert records[-1]["decision_outcome"] == "completed", records[-1]
    starts = [
        r["decision_inputs"]["attempt_kind"]  # type: ignore[index]
        for r in records
        if r["decision_type"] == "execution" and r["decision_outcome"] == "started"
    ]
    assert starts == ["first", "automatic_retry", "approved_recovery", "first"]
    taken_up = [
        r
        for r in records
        if r["decision_type"] == "run_lifecycle" and r["decision_outcome"] == "started"
    ]
    assert taken_up[-1]["decision_inputs"] == {  # who took it up, by which decision
        "on": "workers",
        "taken_up_by": "human:ana",
        "proposal_id": proposal_id,
    }
    status = run_cli("status", run_id, "--db", db, "--json")
    assert orjson.loads(status.stdout)["status"] == "completed"
    _audit_clean(db)


def test_a_rejected_r2_task_ends_its_database_run_failed(db: str, tmp_path: Path) -> None:
    run_id, scratch = _slow_run(db, tmp_path)
    _work(db, scratch)
    proposal_id = next(
        str(r["proposal_id"]) for r in _records(db, run_id) if r["decision_type"] == "proposal"
    )
    waiting = run_cli("status", run_id, "--db", db, "--json")
    assert orjson.loads(waiting.stdout)["waiting"][0]["proposal_id"] == proposal_id
    assert f"({proposal_id})" in run_cli("status", run_id, "--db", db).stdout
    rejected = run_cli("reject", proposal_id, "--db", db, "--as", "ana", "--reason", "too slow")
    assert rejected.exit_code == 0, rejected.stderr
    assert f"run {run_id} ended again: failed" in rejected.stdout
    records = _records(db, run_id)
    assert records[-1]["decision_outcome"] == "failed"
    assert not any(r["task_id"] == "after" for r in records)
    again = run_cli("approve", proposal_id, "--db", db, "--as", "ben")
    assert again.exit_code != 0 and "is rejected by human:ana" in again.stderr
    _audit_clean(db)


def test_approve_continue_is_refused_for_a_database(db: str) -> None:
    proposal_id = _propose(db)
    result = run_cli("approve", proposal_id, "--db", db, "--as", "ana", "--continue")
    assert result.exit_code == 2
    assert "--continue is for a workspace's run" in result.stderr


def test_a_paused_database_starts_nothing_and_takes_no_proposal_until_resumed(
    db: str, tmp_path: Path
) -> None:
    """`stoic stop --db`: a worker claims nothing, a new run and a proposal are refused; a
    resume whose procedure needs a clean audit checks it; the run then goes on."""
    plan = tmp_path / "plan.yaml"
    plan.write_text("meta: {name: held}\ntasks:\n  - {id: only, run: ['true']}\n")
    started = run_cli("run", str(plan), "--db", db, "--json")
    run_id = str(orjson.loads(started.stdout)["run_id"])
    stopped = run_cli("stop", "--db", db, "--reason", "the deploy looks wrong", "--as", "ana")
    assert stopped.exit_code == 0, stopped.stderr
    again = run_cli("stop", "--db", db, "--reason", "twice", "--as", "ana", "--json")
    assert orjson.loads(again.stdout)["recorded"] is False  # one pause in force
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [STOIC_BIN, "worker", "--db", db, "--poll-seconds", "0.1", "--scratch", str(tmp_path)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        time.sleep(2.0)
        assert not any(r["decision_type"] == "execution" for r in _records(db, run_id))
        refused = run_cli("run", str(plan), "--db", db)
        assert refused.exit_code != 0 and "the database is paused" in refused.stderr
        no_proposal = run_cli("propose", "--db", db, "--title", "t", "--reasoning", "r")
        assert no_proposal.exit_code != 0 and "the database is paused" in no_proposal.stderr
        wrong = run_cli("resume", "--db", db, "--procedure", "smaller-batch", "--reason", "x")
        assert wrong.exit_code == 2 and "--batch-size" in wrong.stderr
        resumed = run_cli(
            "resume",
            "--db",
            db,
            "--procedure",
            "verification-batch",
            "--reason",
            "checked the deploy",
            "--as",
            "ana",
            "--json",
        )
        assert resumed.exit_code == 0, resumed.stderr
        deadline = time.monotonic() + 30
        while _records(db, run_id)[-1]["decision_outcome"] != "completed":
            assert time.monotonic() < deadline, "the run did not go on after the resume"
            time.sleep(0.1)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        log.close()
    pauses = [r for r in _records(db) if r["decision_type"] == "pause"]
    assert [(r["decision_outcome"], r["actor"]) for r in pauses] == [
        ("paused", "human:ana"),
        ("resumed", "human:ana"),
    ]
    not_paused = run_cli("resume", "--db", db, "--procedure", "verification-batch", "--reason", "x")
    assert not_paused.exit_code == 2 and "not paused" in not_paused.stderr
    _audit_clean(db)


def test_a_failed_task_of_a_database_run_is_retried_in_its_run_by_a_person(
    db: str, tmp_path: Path
) -> None:
    """`stoic retry RUN TASK --db --reason …`: the retry is on record, linked to the failed
    attempt; the run is taken up, the task runs again on a worker, and what it blocked after."""
    tries = tmp_path / "tries"
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "meta: {name: once-more}\ntasks:\n"
        f"  - {{id: charge, run: [sh, -c, 'echo x >> {tries}; [ $(wc -l < {tries}) -ge 2 ]']}}\n"
        '  - {id: receipt, run: ["true"], depends_on: [charge]}\n'
    )
    started = run_cli("run", str(plan), "--db", db, "--json")
    run_id = str(orjson.loads(started.stdout)["run_id"])
    _work(db, tmp_path / "scratch")
    assert _records(db, run_id)[-1]["decision_outcome"] == "failed"
    no_reason = run_cli("retry", run_id, "charge", "--db", db, "--as", "ana")
    assert no_reason.exit_code == 2 and "needs its reason" in no_reason.stderr
    not_failed = run_cli("retry", run_id, "receipt", "--db", db, "--reason", "x")
    assert not_failed.exit_code == 2 and "blocked by charge" in not_failed.stderr
    retried = run_cli(
        "retry", run_id, "charge", "--db", db, "--as", "ana", "--reason", "fixed", "--json"
    )
    assert retried.exit_code == 0, retried.stderr
    (entry,) = orjson.loads(retried.stdout)["retried"]
    assert entry["task_id"] == "charge"
    _work(db, tmp_path / "scratch")
    records = _records(db, run_id)
    assert records[-1]["decision_outcome"] == "completed", records[-1]
    starts = [
        (r["task_id"], r["decision_inputs"]["attempt_kind"])  # type: ignore[index]
        for r in records
        if r["decision_type"] == "execution" and r["decision_outcome"] == "started"
    ]
    assert starts == [("charge", "first"), ("charge", "approved_recovery"), ("receipt", "first")]
    decision = next(r for r in records if r["decision_inputs"].get("kind") == "retry")  # type: ignore[union-attr]
    assert decision["actor"] == "human:ana" and decision["attempt"] == 1
    twice = run_cli("retry", run_id, "charge", "--db", db, "--reason", "again")
    assert twice.exit_code == 2 and "succeeded" in twice.stderr
    _audit_clean(db)


def test_the_database_queues_trust_signals_flag_and_pause_as_a_workspaces_do(db: str) -> None:
    """A reason given a third time raises its red flag; a third rejection in a batch of ten
    pauses the database; a queue past three batches raises its flag: each in the transaction
    of the record that brought it."""
    from stoic.services import db_queue

    made = [
        db_queue.propose(db, title=f"p{n}", reasoning_trace=["r"], by="agent:ops").id
        for n in range(3)
    ]
    for proposal_id in made:
        db_queue.decide(db, proposal_id, "rejected", by="human:ana", reason="Not tonight.")
    records = _records(db)
    flags = [r for r in records if r["decision_type"] == "red_flag"]
    assert [f["decision_inputs"]["signal"] for f in flags] == ["repeated-rejection-reason"]  # type: ignore[index]
    pauses = [r for r in records if r["decision_type"] == "pause"]
    assert [(p["decision_outcome"], p["decision_inputs"]["criterion"]) for p in pauses] == [  # type: ignore[index]
        ("paused", "rejection_rate")
    ]
    refused = run_cli("propose", "--db", db, "--title", "t", "--reasoning", "r")
    assert refused.exit_code != 0 and "paused" in refused.stderr
    resumed = run_cli(
        "resume", "--db", db, "--procedure", "verification-batch", "--reason", "looked"
    )
    assert resumed.exit_code == 0, resumed.stderr
    for n in range(31):  # the batch size is 10: more than three batches pending
        db_queue.propose(db, title=f"q{n}", reasoning_trace=["r"], by="agent:ops")
    growing = [
        r["decision_inputs"]["signal"]  # type: ignore[index]
        for r in _records(db)
        if r["decision_type"] == "red_flag"
    ]
    assert growing[-1] == "queue-growing"
    _audit_clean(db)


def test_an_approved_database_proposal_runs_once_here_and_a_failure_pauses(
    db: str, tmp_path: Path
) -> None:
    """`stoic execute --db`: its claim on record before the command runs, its result after;
    a second execution is refused; a rollback runs its command; an action that fails pauses
    the database; a forbidden command is refused on record and runs nothing."""
    marker = tmp_path / "made"
    made = run_cli(
        "propose",
        "--db",
        db,
        "--title",
        "make it",
        "--reasoning",
        "needed",
        "--rollback-cmd",
        f"rm {marker}",
        "--json",
        "--",
        "touch",
        str(marker),
    )
    proposal_id = str(orjson.loads(made.stdout)["id"])
    early = run_cli("execute", proposal_id, "--db", db, "--as", "ana")
    assert early.exit_code != 0 and "it cannot be executed" in early.stderr
    assert run_cli("approve", proposal_id, "--db", db, "--as", "ana").exit_code == 0
    ran = run_cli("execute", proposal_id, "--db", db, "--as", "ana", "--json")
    assert ran.exit_code == 0, ran.stderr
    assert orjson.loads(ran.stdout)["status"] == "executed" and marker.exists()
    twice = run_cli("execute", proposal_id, "--db", db, "--as", "ana")
    assert twice.exit_code != 0 and not twice.stderr.startswith("Traceback")
    undone = run_cli("rollback", proposal_id, "--db", db, "--as", "ana")
    assert undone.exit_code == 0, undone.stderr
    assert not marker.exists()
    ours = [r["decision_outcome"] for r in _records(db) if r["proposal_id"] == proposal_id]
    assert ours == [
        "created",
        "approved",
        "execution_started",
        "executed",
        "execution_started",
        "rolled_back",
    ]
    failing = run_cli(
        "propose", "--db", db, "--title", "fail", "--reasoning", "r", "--json", "--", "false"
    )
    failing_id = str(orjson.loads(failing.stdout)["id"])
    assert run_cli("approve", failing_id, "--db", db, "--as", "ana").exit_code == 0
    failed = run_cli("execute", failing_id, "--db", db, "--as", "ana")
    assert failed.exit_code == 1
    pauses = [r for r in _records(db) if r["decision_type"] == "pause"]
    assert [p["decision_outcome"] for p in pauses] == ["paused"]
    _audit_clean(db)


def test_a_database_proposal_the_workspace_policy_forbids_is_refused_on_record(
    db: str, tmp_path: Path
) -> None:
    workspace = tmp_path / "ws"
    assert run_cli("init", str(workspace)).exit_code == 0
    settings = workspace / "stoic.toml"
    settings.write_text(
        settings.read_text()
        .replace("# forbidden_commands = []", 'forbidden_commands = ["rm "]')
        .replace("[store]\n", f'[store]\nurl = "{db}"\n')
    )
    victim = tmp_path / "victim"
    victim.write_text("keep")
    made = run_cli(
        "-w",
        str(workspace),
        "propose",
        "--title",
        "wipe",
        "--reasoning",
        "r",
        "--json",
        "--",
        "rm",
        str(victim),
    )
    proposal_id = str(orjson.loads(made.stdout)["id"])
    assert run_cli("-w", str(workspace), "approve", proposal_id, "--as", "ana").exit_code == 0
    refused = run_cli("-w", str(workspace), "execute", proposal_id, "--as", "ana")
    assert refused.exit_code != 0 and "refused by policy" in refused.stderr
    assert victim.exists()
    blocked = [r for r in _records(db) if r["decision_type"] == "policy_check"]
    assert [(b["decision_outcome"], b["proposal_id"]) for b in blocked] == [
        ("blocked", proposal_id)
    ]


TOOL_ERROR = 'printf \'{"failure": {"kind": "tool_error"}}\' > "$STOIC_RESULT"; exit 1'


def test_an_r2_task_that_failed_while_the_database_was_paused_is_retried_by_a_person(
    db: str, tmp_path: Path
) -> None:
    """A pause stops the queue's growth, so the task's R2 proposal is not made and the run
    waits with nothing in the queue: a person's retry takes it up, by name, once resumed."""
    tries, go = tmp_path / "tries", tmp_path / "go"
    script = tmp_path / "t.sh"
    script.write_text(
        f"echo x >> {tries}; [ $(wc -l < {tries}) -ge 2 ] && exit 0;"
        f" while [ ! -e {go} ]; do sleep 0.05; done; {TOOL_ERROR}\n"
    )
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"meta: {{name: paused-r2}}\ntasks:\n  - {{id: t, run: [sh, '{script}']}}\n")
    run_id = str(orjson.loads(run_cli("run", str(plan), "--db", db, "--json").stdout)["run_id"])
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [STOIC_BIN, "worker", "--db", db, "--poll-seconds", "0.1", "--scratch", str(tmp_path)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while not tries.exists():
            assert time.monotonic() < deadline, "the task did not start"
            time.sleep(0.05)
        assert run_cli("stop", "--db", db, "--reason", "look", "--as", "ana").exit_code == 0
        go.touch()
        while _records(db, run_id)[-1]["decision_type"] != "run_lifecycle":
            assert time.monotonic() < deadline, "the run did not end"
            time.sleep(0.1)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        log.close()
    records = _records(db, run_id)
    assert records[-1]["decision_outcome"] == "awaiting_approval"
    assert not any(r["decision_type"] == "proposal" for r in records)  # paused: none made
    resumed = run_cli("resume", "--db", db, "--procedure", "verification-batch", "--reason", "ok")
    assert resumed.exit_code == 0, resumed.stderr
    retried = run_cli("retry", run_id, "t", "--db", db, "--as", "ana", "--reason", "looked")
    assert retried.exit_code == 0, retried.stderr
    _work(db, tmp_path / "scratch")
    assert _records(db, run_id)[-1]["decision_outcome"] == "completed"
    _audit_clean(db)


def test_a_retry_of_a_task_waiting_on_its_proposal_names_it(db: str, tmp_path: Path) -> None:
    run_id, scratch = _slow_run(db, tmp_path)
    _work(db, scratch)
    proposal_id = next(
        str(r["proposal_id"]) for r in _records(db, run_id) if r["decision_type"] == "proposal"
    )
    refused = run_cli("retry", run_id, "slow", "--db", db, "--reason", "x")
    assert refused.exit_code == 2
    assert f"it waits for {proposal_id} to be decided" in refused.stderr
    assert "--continue" not in refused.stderr
