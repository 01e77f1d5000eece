"""The review queue and pause: proposals on record, folders and manifest that follow the log."""

from __future__ import annotations

import getpass
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

import stoic
from stoic.exceptions import ProposalNotFound, TransitionRefused, UsageError
from tests.conftest import STOIC_BIN, CliResult, log_path, run_cli, run_stoic_process

DAY = time.strftime("%Y%m%d", time.gmtime())


def pid(n: int) -> str:
    return f"PROP-{DAY}-{n:03d}"


def propose(ws: Path, *extra: str, title: str = "Clean tmp") -> str:
    result = run_cli(
        "-w", str(ws), "propose", "--title", title, "--reasoning", "disk at 91%", *extra
    )
    assert result.exit_code == 0, result.stderr
    return result.stdout.strip()


def folder_ids(ws: Path, status: str) -> list[str]:
    return sorted(path.stem for path in (ws / "queue" / status).glob("*.json"))


def resume_smaller(ws: Path) -> CliResult:
    return run_cli(
        "-w",
        str(ws),
        "resume",
        "--procedure",
        "smaller-batch",
        "--reason",
        "x",
        "--batch-size",
        "5",
    )


def logged(ws: Path, decision_type: str) -> list[dict[str, Any]]:
    lines = (ws / "logs" / "decision_log.ndjson").read_bytes().splitlines()
    return [r for r in map(orjson.loads, lines) if r["decision_type"] == decision_type]


def manifest(ws: Path) -> dict[str, object]:
    return orjson.loads((ws / "manifests" / "queue_manifest.json").read_bytes())


def test_propose_prints_the_id_and_writes_file_and_manifest(ws_path: Path) -> None:
    first = propose(ws_path, "--source", "logs/execution_log.md", "--", "echo", "hi")
    second = propose(ws_path, "--confidence", "0.5", title="Informational")
    assert (first, second) == (pid(1), pid(2))
    said = run_cli("-w", str(ws_path), "propose", "--title", "t", "--reasoning", "r", "--", "ls")
    assert f"note: {pid(3)} has no rollback action: it cannot be rolled back" in said.stderr
    informational = run_cli("-w", str(ws_path), "propose", "--title", "t", "--reasoning", "r")
    assert "rollback" not in informational.stderr  # nothing to run, nothing to roll back
    for extra in (pid(3), pid(4)):
        run_cli("-w", str(ws_path), "reject", extra, "--reason", "test")
    assert folder_ids(ws_path, "pending") == [first, second]
    stored = orjson.loads((ws_path / "queue" / "pending" / f"{first}.json").read_bytes())
    assert stored["action"] == ["echo", "hi"]
    assert stored["reasoning_trace"] == ["disk at 91%"]
    assert stored["sources"] == ["logs/execution_log.md"]
    assert stored["batch_id"] == "BATCH-0001"
    doc = manifest(ws_path)
    assert doc["summary"]["total_pending"] == 2
    assert doc["pending_by_confidence"] == {"unknown": 1, "low": 1}
    assert doc["oldest_pending"] == first and doc["newest_pending"] == second
    shown = run_cli("-w", str(ws_path), "queue", "show", first)
    assert "1. disk at 91%" in shown.stdout and "cannot be rolled back" in shown.stdout


def test_proposals_need_reasoning_and_existing_sources(ws_path: Path) -> None:
    no_reason = run_cli("-w", str(ws_path), "propose", "--title", "x")
    assert no_reason.exit_code == 2
    missing = run_cli(
        "-w", str(ws_path), "propose", "--title", "x", "--reasoning", "r", "--source", "nope"
    )
    assert missing.exit_code == 2 and "source 'nope' does not exist" in missing.stderr
    with stoic.Workspace.open(ws_path) as ws, pytest.raises(UsageError, match="reasoning"):
        ws.propose(title="x", reasoning_trace=[" "])
    assert folder_ids(ws_path, "pending") == []


def test_a_source_outside_the_workspace_is_refused_unprobed(ws_path: Path) -> None:
    outside = "../" * 12 + "etc"  # a folder that exists: its existence is not the workspace's
    with stoic.Workspace.open(ws_path) as ws, pytest.raises(UsageError, match="does not exist"):
        ws.propose(title="x", reasoning_trace=["r"], sources=[outside], by="agent:coder")
    assert folder_ids(ws_path, "pending") == []


def test_python_api_and_transitions(ws_path: Path) -> None:
    with stoic.Workspace.open(ws_path) as ws:
        a = ws.propose(title="a", reasoning_trace=["r"], action=["true"], by="agent:coder")
        b = ws.propose(title="b", reasoning_trace=["r"], sources=[a.id])
        c = ws.propose(title="c", reasoning_trace=["r"])
        assert ws.approve(a.id, by="human:ada").status.value == "approved"
        assert ws.reject(b.id, by="human:ada", reason="not now").status.value == "rejected"
        assert ws.defer(c.id, by="human:ada").status.value == "deferred"
        with pytest.raises(TransitionRefused) as refused:
            ws.approve(b.id, by="human:bob")
        assert "rejected by human:ada" in str(refused.value)
        assert "allowed now: none" in str(refused.value)
        with pytest.raises(UsageError, match="needs a reason"):
            ws.reject(c.id, by="human:ada", reason="")
        with pytest.raises(ProposalNotFound, match=f"no proposal {pid(99)}"):
            ws.approve(pid(99), by="human:ada")
    assert run_cli("-w", str(ws_path), "undefer", pid(3)).exit_code == 0
    assert folder_ids(ws_path, "pending") == [pid(3)]
    assert folder_ids(ws_path, "approved") == [pid(1)]
    assert folder_ids(ws_path, "rejected") == [pid(2)]


@pytest.mark.parametrize("bad", ["../x", "/etc/passwd", "PROP-1", "queue/pending/x"])
def test_ids_with_paths_are_refused(ws_path: Path, bad: str) -> None:
    result = run_cli("-w", str(ws_path), "approve", bad)
    assert result.exit_code == 2 and "is not a proposal id" in result.stderr


def test_unknown_id_exits_1(ws_path: Path) -> None:
    result = run_cli("-w", str(ws_path), "approve", pid(7))
    assert result.exit_code == 1 and f"no proposal {pid(7)}" in result.stderr


def test_execute_and_rollback_record_their_results(ws_path: Path, tmp_path: Path) -> None:
    made = tmp_path / "made"
    first = propose(ws_path, "--rollback-cmd", f"rm {made}", "--", "touch", str(made))
    refused = run_cli("-w", str(ws_path), "execute", first)
    assert refused.exit_code == 1 and "cannot be executed (allowed now: approved" in refused.stderr
    run_cli("-w", str(ws_path), "approve", first)
    assert run_cli("-w", str(ws_path), "execute", first).exit_code == 0
    assert made.exists()
    stored = orjson.loads((ws_path / "queue" / "executed" / f"{first}.json").read_bytes())
    assert stored["execution"]["result"] == "success"
    assert f"proposal {first}" in (ws_path / "logs" / "execution_log.md").read_text()
    assert run_cli("-w", str(ws_path), "rollback", first).exit_code == 0
    assert not made.exists()
    stored = orjson.loads((ws_path / "queue" / "executed" / f"{first}.json").read_bytes())
    assert stored["execution"]["result"] == "rolled_back"
    failing = propose(ws_path, "--", "false")
    run_cli("-w", str(ws_path), "approve", failing)
    assert run_cli("-w", str(ws_path), "execute", failing).exit_code == 1
    stored = orjson.loads((ws_path / "queue" / "executed" / f"{failing}.json").read_bytes())
    assert stored["execution"]["result"] == "failure"
    paused = orjson.loads(run_cli("-w", str(ws_path), "status", "--json").stdout)["paused"]
    assert paused["criterion"] == "execution_failure"
    no_undo = run_cli("-w", str(ws_path), "rollback", failing)
    assert no_undo.exit_code == 1 and "has no rollback action" in no_undo.stderr
    assert run_cli("-w", str(ws_path), "audit").exit_code == 0


def test_a_rollback_that_succeeded_runs_once_and_one_that_failed_may_run_again(
    ws_path: Path, tmp_path: Path
) -> None:
    undone, tries = tmp_path / "undone", tmp_path / "tries"
    first = propose(ws_path, "--rollback-cmd", f"sh -c 'echo undone >> {undone}'", "--", "true")
    run_cli("-w", str(ws_path), "approve", first)
    assert run_cli("-w", str(ws_path), "execute", first).exit_code == 0
    assert run_cli("-w", str(ws_path), "rollback", first).exit_code == 0
    before = log_path(ws_path).read_bytes()
    for command in ("rollback", "execute"):
        again = run_cli("-w", str(ws_path), command, first, "--again")
        assert again.exit_code == 1
        assert f"{first} was rolled back at" in again.stderr and "runs once" in again.stderr
    assert undone.read_text() == "undone\n"  # its command ran once
    assert log_path(ws_path).read_bytes() == before  # nothing recorded
    flaky = f"sh -c 'echo try >> {tries}; [ -f {tmp_path / 'ok'} ]'"
    second = propose(ws_path, "--rollback-cmd", flaky, "--", "true")
    run_cli("-w", str(ws_path), "approve", second)
    assert run_cli("-w", str(ws_path), "execute", second).exit_code == 0
    assert run_cli("-w", str(ws_path), "rollback", second).exit_code == 1  # it did not undo
    (tmp_path / "ok").touch()
    assert run_cli("-w", str(ws_path), "rollback", second).exit_code == 0
    assert tries.read_text() == "try\ntry\n"
    with stoic.Workspace.open(ws_path) as workspace:
        report = workspace.audit()
    assert [v.code for v in report.violations] == []


def test_a_second_rollback_an_earlier_stoic_recorded_still_audits_clean(
    ws_path: Path, tmp_path: Path
) -> None:
    first = propose(ws_path, "--rollback-cmd", "true", "--", "true")
    run_cli("-w", str(ws_path), "approve", first)
    assert run_cli("-w", str(ws_path), "execute", first).exit_code == 0
    assert run_cli("-w", str(ws_path), "rollback", first).exit_code == 0
    with stoic.Workspace.open(ws_path) as workspace:  # what an earlier stoic let through
        for outcome, inputs in (
            ("execution_started", {"rollback": True}),
            ("rolled_back", {"result": "rolled_back", "exit_code": 0}),
        ):
            workspace.record(
                "proposal", outcome, "again.", actor="human:ana", source="human",
                proposal_id=first, inputs={"from": "executed", **inputs},
            )  # fmt: skip
    audited = run_cli("-w", str(ws_path), "audit")
    assert audited.exit_code == 0, audited.stdout
    shown = orjson.loads(run_cli("-w", str(ws_path), "queue", "show", first, "--json").stdout)
    steps = [step["decision"] for step in shown["history"]]
    assert steps.count("rolled_back") == 2  # history replays as it was recorded
    again = run_cli("-w", str(ws_path), "rollback", first)
    assert again.exit_code == 1 and "runs once" in again.stderr  # and no third one now


def test_seed_inspection_commands_agree_with_the_manifest(ws_path: Path) -> None:
    for n in range(5):
        propose(ws_path, title=f"p{n}")
    run_cli("-w", str(ws_path), "approve", pid(2))
    run_cli("-w", str(ws_path), "reject", pid(4), "--reason", "duplicate")
    count = subprocess.run(
        f"ls {ws_path}/queue/pending | wc -l", shell=True, capture_output=True, text=True
    ).stdout.strip()
    assert int(count) == manifest(ws_path)["summary"]["total_pending"] == 3
    rows = manifest(ws_path)["proposals"]
    pending = sorted(row["id"] for row in rows if row["status"] == "pending")
    assert folder_ids(ws_path, "pending") == pending
    listed = orjson.loads(
        run_cli("-w", str(ws_path), "queue", "--status", "pending", "--json").stdout
    )
    assert [p["id"] for p in listed] == pending


def test_file_moved_by_hand_fails_the_audit_and_pauses(ws_path: Path) -> None:
    first = propose(ws_path)
    shutil.move(ws_path / "queue" / "pending" / f"{first}.json", ws_path / "queue" / "approved")
    result = run_cli("-w", str(ws_path), "audit")
    assert result.exit_code == 1
    assert f"{first} is pending in the log but sits in queue/approved" in result.stdout
    status = orjson.loads(run_cli("-w", str(ws_path), "status", "--json").stdout)
    assert status["paused"]["criterion"] == "audit_failure"
    refused = run_cli("-w", str(ws_path), "propose", "--title", "x", "--reasoning", "r")
    assert refused.exit_code == 4 and "paused" in refused.stderr
    assert run_cli("-w", str(ws_path), "audit", "--repair").exit_code == 0
    assert folder_ids(ws_path, "pending") == [first]
    resumed = run_cli(
        "-w", str(ws_path), "resume", "--procedure", "verification-batch", "--reason", "repaired"
    )
    assert resumed.exit_code == 0
    assert orjson.loads(run_cli("-w", str(ws_path), "status", "--json").stdout)["paused"] is None


def test_a_verification_batch_needs_a_clean_audit_first(ws_path: Path) -> None:
    first = propose(ws_path)
    assert run_cli("-w", str(ws_path), "stop", "--reason", "checking").exit_code == 0
    (ws_path / "queue" / "pending" / f"{first}.json").write_text("{}")
    args = ["-w", str(ws_path), "resume", "--procedure", "verification-batch", "--reason", "ok"]
    refused = run_cli(*args)
    assert refused.exit_code == 2
    assert "the audit is not clean (1 violation): run `stoic audit`" in refused.stderr
    assert orjson.loads(run_cli("-w", str(ws_path), "status", "--json").stdout)["paused"]
    assert run_cli("-w", str(ws_path), "audit", "--repair").exit_code == 0
    assert run_cli(*args).exit_code == 0


@pytest.mark.parametrize(
    ("args", "env", "said"),
    [
        (("--as", "agent:bot"), {}, "--as is 'agent:bot'"),
        (("--as", "system:runner"), {}, "--as is 'system:runner'"),
        (("--as", "bad name!"), {}, "--as is 'bad name!'"),
        (("--as", ""), {}, "--as is ''"),
        (("--as", "Ann"), {}, "--as is 'Ann'"),  # the console's `ann` is one person
        ((), {"STOIC_ACTOR": "human:eve"}, "$STOIC_ACTOR is 'human:eve'"),
    ],
)
def test_a_name_that_reads_as_another_actor_is_refused(
    ws_path: Path, args: tuple[str, ...], env: dict[str, str], said: str
) -> None:
    proposal_id = propose(ws_path)
    before = log_path(ws_path).read_bytes()
    refused = run_cli("-w", str(ws_path), "approve", proposal_id, *args, env=env)
    assert refused.exit_code == 2
    (line,) = refused.stderr.strip().splitlines()
    assert said in line and "a person's name is 1 to 64 of a-z" in line
    assert log_path(ws_path).read_bytes() == before


def test_the_os_user_is_on_record_by_the_console_s_form_of_its_name(ws_path: Path) -> None:
    proposal_id = propose(ws_path)
    env = {k: v for k, v in os.environ.items() if k != "STOIC_ACTOR"} | {"LOGNAME": "JohnSmith"}
    done = subprocess.run(
        [STOIC_BIN, "-w", str(ws_path), "approve", proposal_id], env=env, capture_output=True
    )
    assert done.returncode == 0, done.stderr
    (approved,) = [r for r in logged(ws_path, "proposal") if r["decision_outcome"] == "approved"]
    assert approved["actor"] == "human:johnsmith"
    env["LOGNAME"] = "jane@corp.example"
    refused = subprocess.run(
        [STOIC_BIN, "-w", str(ws_path), "defer", propose(ws_path)], env=env, capture_output=True
    )
    assert refused.returncode == 2 and b"give --as NAME" in refused.stderr


def test_who_decides_is_as_then_stoic_actor_then_the_os_user(ws_path: Path) -> None:
    ids = [propose(ws_path, title=f"p{n}") for n in range(3)]
    run_cli("-w", str(ws_path), "approve", ids[0], "--as", "ada", env={"STOIC_ACTOR": "bob"})
    run_cli("-w", str(ws_path), "approve", ids[1], env={"STOIC_ACTOR": "bob"})
    os_user = getpass.getuser().lower()
    without = {key: value for key, value in os.environ.items() if key != "STOIC_ACTOR"}
    done = subprocess.run(
        [STOIC_BIN, "-w", str(ws_path), "approve", ids[2]], env=without, capture_output=True
    )
    assert done.returncode == 0, done.stderr
    by = {
        r["proposal_id"]: r["actor"]
        for r in logged(ws_path, "proposal")
        if r["decision_outcome"] == "approved"
    }
    assert by == {ids[0]: "human:ada", ids[1]: "human:bob", ids[2]: f"human:{os_user}"}


def test_deleted_manifest_is_named_and_rebuilt(ws_path: Path) -> None:
    propose(ws_path)
    (ws_path / "manifests" / "queue_manifest.json").unlink()
    result = run_cli("-w", str(ws_path), "audit")
    assert result.exit_code == 1 and "queue_manifest.json is missing" in result.stdout
    assert run_cli("-w", str(ws_path), "audit", "--repair").exit_code == 0
    assert manifest(ws_path)["summary"]["total_pending"] == 1


def test_edited_proposal_file_is_named(ws_path: Path) -> None:
    first = propose(ws_path, "--", "echo", "safe")
    path = ws_path / "queue" / "pending" / f"{first}.json"
    data = json.loads(path.read_text())
    data["action"] = ["rm", "-rf", "/"]
    path.write_text(json.dumps(data))
    result = run_cli("-w", str(ws_path), "audit")
    assert result.exit_code == 1
    assert f"queue/pending/{first}.json differs from the log's proposal" in result.stdout


def test_a_proposal_file_reformatted_with_the_same_content_is_not_an_edit(ws_path: Path) -> None:
    first = propose(ws_path, "--", "echo", "safe")
    path = ws_path / "queue" / "pending" / f"{first}.json"
    path.write_text(json.dumps(json.loads(path.read_text()), sort_keys=True))
    assert run_cli("-w", str(ws_path), "audit").exit_code == 0
    path.write_text(path.read_text()[:-1])  # no longer JSON at all
    result = run_cli("-w", str(ws_path), "audit")
    assert f"queue/pending/{first}.json differs from the log's proposal" in result.stdout


def test_two_processes_deciding_at_once_exactly_one_wins(ws_path: Path) -> None:
    first = propose(ws_path)
    procs = [
        subprocess.Popen(
            [STOIC_BIN, "-w", str(ws_path), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in (
            ["approve", first, "--as", "ada"],
            ["reject", first, "--reason", "no", "--as", "bob"],
        )
    ]
    outcomes = [(p.wait(timeout=60), p.communicate()) for p in procs]
    codes = sorted(code for code, _ in outcomes)
    assert codes == [0, 1]
    loser = next(err for code, (_, err) in outcomes if code == 1)
    assert "by human:ada" in loser or "by human:bob" in loser
    decisions = [r for r in logged(ws_path, "proposal") if r["decision_outcome"] != "created"]
    assert len(decisions) == 1


def test_stop_pauses_new_work_but_not_decisions(ws_path: Path, tmp_path: Path) -> None:
    first = propose(ws_path)
    assert run_cli("-w", str(ws_path), "stop", "--reason", "odd proposals").exit_code == 0
    plan = tmp_path / "plan.yaml"
    plan.write_text('tasks:\n  - {id: a, run: ["true"]}\n')
    refused = run_cli("-w", str(ws_path), "run", str(plan))
    assert refused.exit_code == 4 and "odd proposals" in refused.stderr
    assert "PAUSED since" in refused.stderr
    assert run_cli("-w", str(ws_path), "approve", first).exit_code == 0
    assert run_cli("-w", str(ws_path), "queue").exit_code == 0
    status = orjson.loads(run_cli("-w", str(ws_path), "status", "--json").stdout)
    assert status["paused"]["reason"] == "odd proposals"
    assert status["paused"]["criterion"] == "human_stop"
    before = log_path(ws_path).read_bytes()
    again = run_cli("-w", str(ws_path), "stop", "--reason", "another reason")
    assert again.exit_code == 0 and "Paused:" not in again.stdout  # it says what holds
    assert "Paused already, since " in again.stdout and ": odd proposals; nothing recorded" in (
        again.stdout
    )
    assert log_path(ws_path).read_bytes() == before
    bad = run_cli("-w", str(ws_path), "resume", "--procedure", "smaller-batch", "--reason", "x")
    assert bad.exit_code == 2 and "--batch-size" in bad.stderr
    assert resume_smaller(ws_path).exit_code == 0
    assert run_stoic_process("-w", str(ws_path), "run", str(plan)).returncode == 0


def test_third_rejection_in_a_batch_pauses_at_once(ws_path: Path) -> None:
    ids = [propose(ws_path, title=f"p{n}") for n in range(4)]
    for proposal in ids[:2]:
        run_cli("-w", str(ws_path), "reject", proposal, "--reason", "wrong host")
    status = orjson.loads(run_cli("-w", str(ws_path), "status", "--json").stdout)
    assert status["paused"] is None
    run_cli("-w", str(ws_path), "reject", ids[2], "--reason", "wrong host")
    status = orjson.loads(run_cli("-w", str(ws_path), "status", "--json").stdout)
    assert status["paused"]["criterion"] == "rejection_rate"
    assert "3 rejections in batch BATCH-0001" in status["paused"]["reason"]
    assert folder_ids(ws_path, "pending") == [ids[3]]  # the queue is left untouched


def test_three_flags_since_resume_pause(ws_path: Path) -> None:
    unknown = run_cli("-w", str(ws_path), "flag", "rubberstamping")
    assert unknown.exit_code == 2 and "did you mean 'rubber-stamping'" in unknown.stderr
    for reported in ("rushed", "dont-understand"):
        assert run_cli("-w", str(ws_path), "flag", reported).exit_code == 0
    assert orjson.loads(run_cli("-w", str(ws_path), "status", "--json").stdout)["paused"] is None
    third = run_cli("-w", str(ws_path), "flag", "batch-too-large", "--note", "40 at once")
    assert "now paused" in third.stdout
    paused = orjson.loads(run_cli("-w", str(ws_path), "status", "--json").stdout)["paused"]
    assert paused["criterion"] == "red_flags"
    run_cli(
        "-w",
        str(ws_path),
        "resume",
        "--procedure",
        "smaller-batch",
        "--reason",
        "r",
        "--batch-size",
        "5",
    )
    run_cli("-w", str(ws_path), "flag", "rushed")
    assert orjson.loads(run_cli("-w", str(ws_path), "status", "--json").stdout)["paused"] is None


def status_json(ws: Path) -> dict[str, Any]:
    return orjson.loads(run_cli("-w", str(ws), "status", "--json").stdout)


def resume(ws: Path, procedure: str, *extra: str) -> CliResult:
    return run_cli("-w", str(ws), "resume", "--procedure", procedure, "--reason", "r", *extra)


def test_a_smaller_batch_after_a_resume_holds_for_new_proposals_and_the_review(
    ws_path: Path,
) -> None:
    early = [propose(ws_path, title=f"early {n}") for n in range(7)]
    assert status_json(ws_path)["batch_size"] == 10
    run_cli("-w", str(ws_path), "stop", "--reason", "too many at once")
    not_smaller = resume(ws_path, "smaller-batch", "--batch-size", "10")
    assert not_smaller.exit_code == 2
    assert "--batch-size must be below the current 10, not 10" in not_smaller.stderr
    wrong_procedure = resume(ws_path, "manual-verification", "--batch-size", "3")
    assert wrong_procedure.exit_code == 2 and "goes with --procedure smaller-batch" in (
        wrong_procedure.stderr
    )
    assert resume(ws_path, "smaller-batch", "--batch-size", "3").exit_code == 0
    assert status_json(ws_path)["batch_size"] == 3
    shown = run_cli("-w", str(ws_path), "status").stdout
    assert "review batches of 3 (named by the last resume)" in shown
    late = [propose(ws_path, title=f"late {n}") for n in range(4)]
    batches = {
        p["id"]: p["batch_id"]
        for p in orjson.loads(run_cli("-w", str(ws_path), "queue", "--json").stdout)
    }
    assert {batches[i] for i in early} == {"BATCH-0001"}
    assert [batches[i] for i in late] == ["BATCH-0002"] * 3 + ["BATCH-0003"]
    walked = subprocess.run(
        [STOIC_BIN, "-w", str(ws_path), "review", "--as", "rita"],
        input="q\n",
        capture_output=True,
        text=True,
        check=True,
    )
    assert "3 proposals in BATCH-0001" in walked.stdout  # the old batch, walked 3 at a time
    run_cli("-w", str(ws_path), "stop", "--reason", "again")
    assert resume(ws_path, "verification-batch").exit_code == 0
    assert status_json(ws_path)["batch_size"] == 10  # the last resume named no size


def test_the_same_rejection_reason_three_times_is_a_red_flag(ws_path: Path) -> None:
    (ws_path / "stoic.toml").write_text("[queue]\nbatch_size = 100\n")
    ids = [propose(ws_path, title=f"p{n}") for n in range(3)]
    for proposal in ids:
        run_cli("-w", str(ws_path), "reject", proposal, "--reason", "Wrong host")
    flags = logged(ws_path, "red_flag")
    assert len(flags) == 1
    assert flags[0]["decision_inputs"]["signal"] == "repeated-rejection-reason"
    assert flags[0]["decision_source"] == "system"


class _Terminal:
    """`stoic review` on a real pseudo-terminal: read what it shows, type what a person types."""

    def __init__(self, ws: Path) -> None:
        import os
        import pty

        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            [STOIC_BIN, "-w", str(ws), "review", "--as", "rita"],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            close_fds=True,
        )
        os.close(slave)
        self.seen = ""

    def expect(self, text: str, timeout: float = 30) -> str:
        import os
        import select

        deadline = time.monotonic() + timeout
        while text not in self.seen:
            left = deadline - time.monotonic()
            assert left > 0, f"never saw {text!r}; screen so far:\n{self.seen}"
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    self.seen += os.read(self.master, 4096).decode(errors="replace")
                except OSError:
                    break
        return self.seen

    def rest(self, timeout: float = 30) -> str:
        """Everything it shows until it exits."""
        import os
        import select

        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:  # the other end closed: it exited
                    break
                if not chunk:
                    break
                self.seen += chunk.decode(errors="replace")
        return self.seen

    def type(self, line: str) -> None:
        import os

        os.write(self.master, (line + "\n").encode())

    def close(self) -> int:
        import os

        code = self.proc.wait(timeout=30)
        os.close(self.master)
        return code


def test_review_walks_the_batch_through_a_terminal(ws_path: Path) -> None:
    (ws_path / "stoic.toml").write_text("[review]\nmin_read_seconds = 0\n")
    ids = [propose(ws_path, "--trade-off", "a minute of downtime", title=f"p{n}") for n in range(4)]
    term = _Terminal(ws_path)
    term.expect("1/4")
    screen = term.expect("> ")
    assert "disk at 91%" in screen and "a minute of downtime" in screen and "confidence" in screen
    term.type("a")
    term.expect(f"{ids[0]} approved.")
    term.expect("2/4")
    term.type("r")
    term.expect("reason (required) >")
    term.type("wrong host")
    term.expect(f"{ids[1]} rejected.")
    term.type("d")
    term.expect(f"{ids[2]} deferred.")
    term.type("q")
    term.expect("Session REVIEW-")
    assert term.close() == 0
    assert folder_ids(ws_path, "approved") == [ids[0]]
    assert folder_ids(ws_path, "rejected") == [ids[1]]
    assert folder_ids(ws_path, "deferred") == [ids[2]]
    assert folder_ids(ws_path, "pending") == [ids[3]]
    approved = orjson.loads((ws_path / "queue" / "approved" / f"{ids[0]}.json").read_bytes())
    assert approved["decision"]["by"] == "human:rita"


def test_fast_approvals_in_review_are_rubber_stamping_and_pause(ws_path: Path) -> None:
    (ws_path / "stoic.toml").write_text("[review]\nmin_read_seconds = 30\n")
    ids = [propose(ws_path, title=f"p{n}") for n in range(4)]
    term = _Terminal(ws_path)
    for proposal in ids[:3]:
        term.expect(f"{proposal}  (BATCH-0001)")
        term.expect("> ")
        term.type("a")
    term.expect("The workspace is now paused")
    assert "3 decided" in term.rest().split("ended:")[1]  # the approval that paused counts
    assert term.close() == 0
    paused = orjson.loads(run_cli("-w", str(ws_path), "status", "--json").stdout)["paused"]
    assert paused["criterion"] == "red_flags"
    assert "3 red flags since the last resume" in paused["reason"]
    assert folder_ids(ws_path, "pending") == [ids[3]]


def test_review_flags_count_since_the_last_resume_across_sessions(ws_path: Path) -> None:
    """Quitting and restarting `stoic review` does not reset the count; the approval that
    brought the pause is counted as decided."""
    (ws_path / "stoic.toml").write_text("[review]\nmin_read_seconds = 30\n")
    ids = [propose(ws_path, title=f"p{n}") for n in range(4)]
    for number, proposal in enumerate(ids[:3], 1):
        term = _Terminal(ws_path)
        term.expect(f"{proposal}  (BATCH-0001)")
        term.expect("> ")
        term.type("a")
        term.expect(f"{proposal} approved.")
        if number < 3:
            term.expect("> ")
            term.type("q")
        assert "1 decided" in term.rest().split("ended:")[1]
        assert term.close() == 0
    assert "The workspace is now paused" in term.seen
    assert "3 red flags since the last resume" in term.seen
    paused = orjson.loads(run_cli("-w", str(ws_path), "status", "--json").stdout)["paused"]
    assert paused["criterion"] == "red_flags"
    assert folder_ids(ws_path, "approved") == ids[:3]


def test_a_source_that_no_longer_exists_is_named(ws_path: Path) -> None:
    evidence = ws_path / "incidents" / "disk-report.txt"
    evidence.write_text("91% full\n")
    first = propose(ws_path, "--source", "incidents/disk-report.txt")
    evidence.unlink()
    result = run_cli("-w", str(ws_path), "audit")
    assert result.exit_code == 1
    assert f"{first} cites 'incidents/disk-report.txt', which no longer exists" in result.stdout


def test_a_failed_approved_action_pauses_and_manual_verification_confirms(ws_path: Path) -> None:
    failing = propose(ws_path, "--", "false")
    run_cli("-w", str(ws_path), "approve", failing)
    assert run_cli("-w", str(ws_path), "execute", failing).exit_code == 1
    paused = orjson.loads(run_cli("-w", str(ws_path), "status", "--json").stdout)["paused"]
    assert paused["criterion"] == "execution_failure"
    resumed = run_cli(
        "-w", str(ws_path), "resume", "--procedure", "manual-verification", "--reason", "fixed"
    )
    assert resumed.exit_code == 0
    nxt = propose(ws_path, "--", "true")
    run_cli("-w", str(ws_path), "approve", nxt)
    refused = run_cli("-w", str(ws_path), "execute", nxt)
    assert refused.exit_code == 2 and f"--confirm {nxt}" in refused.stderr
    mistyped = run_cli("-w", str(ws_path), "execute", nxt, "--confirm", failing)
    assert mistyped.exit_code == 2  # says it did not match, not only that one is needed
    assert f"--confirm takes the proposal's id again: '{failing}' is not {nxt}" in mistyped.stderr
    assert run_cli("-w", str(ws_path), "execute", nxt, "--confirm", nxt).exit_code == 0


def test_calibration_notes_and_incidents(ws_path: Path) -> None:
    assert run_cli("-w", str(ws_path), "calibrate", "I approved too fast on Monday").exit_code == 0
    assert "I approved too fast on Monday" in (ws_path / "calibration_log.md").read_text()
    minor = run_cli(
        "-w", str(ws_path), "incident", "new", "--severity", "minor", "--title", "Typo in a plan"
    )
    path = Path(minor.stdout.strip())
    text = path.read_text()
    assert path.name == f"ISSUE-{DAY}-001.md"
    assert "**Severity:** minor" in text and "- [x] detected" in text and "## Prevention" in text
    assert "Minor incident" in (ws_path / "calibration_log.md").read_text()
    assert orjson.loads(run_cli("-w", str(ws_path), "status", "--json").stdout)["paused"] is None
    run_cli(
        "-w", str(ws_path), "incident", "new", "--severity", "major", "--title", "Wrong host wiped"
    )
    paused = orjson.loads(run_cli("-w", str(ws_path), "status", "--json").stdout)["paused"]
    assert paused["criterion"] == "major_incident"
    (ws_path / "queue" / "pending" / "PROP-20200101-001.json").write_text("{}")  # an orphan
    refused = resume_smaller(ws_path)  # a major incident needs a clean audit, whatever the way
    assert refused.exit_code == 2 and "the audit is not clean" in refused.stderr
    assert run_cli("-w", str(ws_path), "audit", "--repair").exit_code == 0
    assert resume_smaller(ws_path).exit_code == 0


def test_a_queue_growing_past_three_batches_raises_a_flag(ws_path: Path) -> None:
    (ws_path / "stoic.toml").write_text("[queue]\nbatch_size = 2\n")
    with stoic.Workspace.open(ws_path) as ws:
        for n in range(7):
            ws.propose(title=f"p{n}", reasoning_trace=["r"])
    flags = logged(ws_path, "red_flag")
    assert [f["decision_inputs"]["signal"] for f in flags] == ["queue-growing"]
    assert "7 proposals pending" in flags[0]["decision_reason"]


def test_queue_commands_refuse_bad_input_with_one_line_each(ws_path: Path) -> None:
    def refused(*args: str) -> str:
        result = run_cli("-w", str(ws_path), *args)
        assert result.exit_code == 2, (args, result.stdout, result.stderr)
        lines = [line for line in result.stderr.splitlines() if "PAUSED since" not in line]
        assert len(lines) == 1, result.stderr  # one line (besides the pause banner), no traceback
        return lines[0]

    assert "unknown status 'waiting' (allowed: pending, approved" in refused(
        "queue", "--status", "waiting"
    )
    assert "a proposal needs a title" in refused("propose", "--title", " ", "--reasoning", "r")
    assert "Invalid value for '--confidence': Input should be less than or equal to 1" in refused(
        "propose", "--title", "t", "--reasoning", "r", "--confidence", "1.5"
    )
    assert "a calibration note cannot be empty" in refused("calibrate", "  ")
    assert "unknown severity 'huge'" in refused(
        "incident", "new", "--severity", "huge", "--title", "x"
    )
    assert "the workspace is not paused" in refused(
        "resume", "--procedure", "smaller-batch", "--reason", "r", "--batch-size", "2"
    )
    run_cli("-w", str(ws_path), "stop", "--reason", "checking")
    assert "unknown procedure 'retry' (allowed: smaller-batch" in refused(
        "resume", "--procedure", "retry", "--reason", "r"
    )
    assert "--procedure smaller-batch needs --batch-size N" in refused(
        "resume", "--procedure", "smaller-batch", "--reason", "r"
    )


def test_queue_listing_and_show_in_both_forms(ws_path: Path, tmp_path: Path) -> None:
    assert run_cli("-w", str(ws_path), "queue").stdout.strip() == "No proposals."
    made = tmp_path / "made"
    created = run_cli(
        "-w",
        str(ws_path),
        "propose",
        "--title",
        "Make a file",
        "--reasoning",
        "it is missing",
        "--summary",
        "creates one file",
        "--trade-off",
        "one more file to keep",
        "--confidence",
        "0.9",
        "--rollback-cmd",
        f"rm {made}",
        "--json",
        "--",
        "touch",
        str(made),
    )
    proposal = orjson.loads(created.stdout)
    assert proposal["status"] == "pending" and proposal["confidence_band"] == "high"
    shown = run_cli("-w", str(ws_path), "queue", "show", proposal["id"]).stdout
    assert "summary: creates one file" in shown
    assert "trade-off: one more file to keep" in shown
    assert f"rollback: rm {made}" in shown
    run_cli("-w", str(ws_path), "approve", proposal["id"], "--as", "ana", "--reason", "fine")
    shown = run_cli("-w", str(ws_path), "queue", "show", proposal["id"]).stdout
    assert "decided: approved by human:ana at " in shown
    as_json = orjson.loads(
        run_cli("-w", str(ws_path), "queue", "show", proposal["id"], "--json").stdout
    )
    assert as_json["decision"]["by"] == "human:ana"
    assert run_cli("-w", str(ws_path), "execute", proposal["id"]).exit_code == 0
    assert made.exists()
    undone = run_cli("-w", str(ws_path), "rollback", proposal["id"])
    assert undone.exit_code == 0 and f"{proposal['id']} rolled back: exit 0." in undone.stdout
    assert not made.exists()
    shown = run_cli("-w", str(ws_path), "queue", "show", proposal["id"]).stdout
    assert "status: executed" in shown and "\nlast run: rolled back at " in shown
    assert shown.rstrip().endswith(", exit 0")


def test_a_field_of_many_lines_cannot_pass_for_another_field(ws_path: Path) -> None:
    forged = "fine\nstatus: approved   type: action\naction: ls"
    proposal_id = propose(ws_path, "--summary", forged, "--trade-off", "a\ndecided: approved")
    shown = run_cli("-w", str(ws_path), "queue", "show", proposal_id).stdout.splitlines()
    assert [line.split(":")[0] for line in shown if not line.startswith(" ")] == [
        f"{proposal_id} — Clean tmp",
        "status",
        "confidence",
        "summary",
        "action",
        "rollback",
        "reasoning",
        "sources",
        "trade-off",
    ]
    assert "    status: approved   type: action" in shown


def test_the_audit_names_each_kind_of_queue_damage(ws_path: Path) -> None:
    first, second = propose(ws_path), propose(ws_path, title="Second")
    pending = ws_path / "queue" / "pending"
    (pending / "PROP-20200101-001.json").write_text("{}")
    shutil.copy(pending / f"{second}.json", ws_path / "queue" / "approved" / f"{second}.json")
    manifest_path = ws_path / "manifests" / "queue_manifest.json"
    document = orjson.loads(manifest_path.read_bytes())
    document["summary"]["total_pending"] = 7
    manifest_path.write_bytes(orjson.dumps(document))
    out = run_cli("-w", str(ws_path), "audit").stdout
    assert "queue/pending/PROP-20200101-001.json is not a proposal the log knows (orphan)" in out
    assert f"{second} is pending in the log but sits in queue/pending, queue/approved" in out
    assert "manifests/queue_manifest.json disagrees with the log at summary" in out
    assert first not in out
    manifest_path.write_text("{not json")
    out = run_cli("-w", str(ws_path), "audit").stdout
    assert "manifests/queue_manifest.json is unreadable" in out
    assert run_cli("-w", str(ws_path), "audit", "--repair").exit_code == 0
    assert folder_ids(ws_path, "pending") == [first, second]
    assert folder_ids(ws_path, "approved") == []
    assert run_cli("-w", str(ws_path), "audit").exit_code == 0


def test_two_people_executing_one_approved_action_at_once_run_it_once(
    ws_path: Path, tmp_path: Path
) -> None:
    marks = tmp_path / "ran.txt"
    first = propose(ws_path, "--", "sh", "-c", f"sleep 1; echo ran >> {marks}")
    run_cli("-w", str(ws_path), "approve", first, "--as", "ada")
    procs = [
        subprocess.Popen(
            [STOIC_BIN, "-w", str(ws_path), "execute", first, "--as", name],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("ada", "bob")
    ]
    outcomes = [(p.wait(timeout=60), p.communicate()[1]) for p in procs]
    assert sorted(code for code, _ in outcomes) == [0, 1]
    refused = next(err for code, err in outcomes if code == 1)
    assert "has no result on record: it is running now" in refused or "is executed" in refused
    assert marks.read_text() == "ran\n"  # once
    assert run_cli("-w", str(ws_path), "audit").exit_code == 0


def test_an_execution_whose_process_died_is_refused_until_run_again_on_purpose(
    ws_path: Path, tmp_path: Path
) -> None:
    marks = tmp_path / "ran.txt"
    quick = tmp_path / "quick"
    first = propose(ws_path, "--", "sh", "-c", f"echo ran >> {marks}; [ -f {quick} ] || sleep 30")
    run_cli("-w", str(ws_path), "approve", first)
    executing = subprocess.Popen(
        [STOIC_BIN, "-w", str(ws_path), "execute", first],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while not marks.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(executing.pid, signal.SIGKILL)  # stoic and its action, as a crash would
    executing.wait(timeout=30)
    shown = orjson.loads(run_cli("-w", str(ws_path), "queue", "show", first, "--json").stdout)
    assert shown["status"] == "approved" and shown["running"]["rollback"] is False
    said = run_cli("-w", str(ws_path), "queue", "show", first).stdout
    assert f"running: its action started at {shown['running']['at']} by human:" in said
    refused = run_cli("-w", str(ws_path), "execute", first)
    assert refused.exit_code == 1
    assert f"{first}'s action started at {shown['running']['at']}" in refused.stderr
    assert f"`stoic execute {first} --again` runs it once more" in refused.stderr
    quick.write_text("")
    again = run_cli("-w", str(ws_path), "execute", first, "--again")
    assert again.exit_code == 0, again.stderr
    assert marks.read_text() == "ran\nran\n"  # twice: the person chose so, on record
    starts = [
        r for r in logged(ws_path, "proposal") if r["decision_outcome"] == "execution_started"
    ]
    assert [r["decision_inputs"].get("again", False) for r in starts] == [False, True]
    assert run_cli("-w", str(ws_path), "audit").exit_code == 0


def test_executing_a_proposal_without_an_action_is_refused_and_records_nothing(
    ws_path: Path,
) -> None:
    bare = propose(ws_path)  # no `-- CMD`: nothing would run
    assert run_cli("-w", str(ws_path), "approve", bare).exit_code == 0
    log = ws_path / "logs" / "decision_log.ndjson"
    before = log.read_bytes()
    refused = run_cli("-w", str(ws_path), "execute", bare)
    assert refused.exit_code == 1, refused.stdout
    assert f"{bare} has no action: there is nothing to execute" in refused.stderr
    assert log.read_bytes() == before  # no `executed` for a command that never ran
    assert folder_ids(ws_path, "approved") == [bare]


def test_a_runs_proposals_that_outgrow_review_raise_the_flag_too(
    ws_path: Path, tmp_path: Path
) -> None:
    (ws_path / "stoic.toml").write_text("[queue]\nbatch_size = 1\n")
    tasks = "".join(f'  - id: t{n}\n    run: ["true"]\n    approval: required\n' for n in range(4))
    plan = tmp_path / "plan.yaml"
    plan.write_text("tasks:\n" + tasks)
    assert run_cli("-w", str(ws_path), "run", str(plan)).exit_code == 3
    assert len(logged(ws_path, "proposal")) == 4
    flags = logged(ws_path, "red_flag")
    assert [f["decision_inputs"]["signal"] for f in flags] == ["queue-growing"]
    assert "4 proposals pending, more than three batches of 1" in flags[0]["decision_reason"]
