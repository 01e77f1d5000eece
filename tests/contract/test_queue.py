"""The queue's use cases through the service: what each returns and what it puts on record."""

from __future__ import annotations

import re
import sys
from dataclasses import replace

import orjson
import pytest

from stoic.core.pause import Criterion
from stoic.core.proposals import ProposalStatus
from stoic.core.records import Record
from stoic.exceptions import TransitionRefused, UsageError, WorkspacePaused
from stoic.services import queue
from stoic.services.trust import pause, resume
from stoic.store.processes import ProcessPolicy
from stoic.store.queue import ActionRan, ExecutionClaim, Queue
from stoic.store.workspace import Workspace
from tests.contract.recorded import last

PRINT_HI = [sys.executable, "-c", "print('hi')"]


def proposals(store: Workspace, since: int = 0) -> list[Record]:
    return list(store.records(since_seq=since, decision_type="proposal"))


def outcomes(records: list[Record]) -> list[str]:
    return [record.decision_outcome for record in records]


def approved(store: Workspace, action: list[str], rollback: list[str] | None = None) -> str:
    created = queue.propose(
        store,
        title="clean the cache",
        reasoning_trace=["disk at 91%"],
        by="agent:ops",
        action=action,
        rollback=rollback,
    )
    queue.decide(store, created.id, "approved", by="human:ana")
    return created.id


def test_propose_decide_execute_runs_the_action_and_records_each_step(store: Workspace) -> None:
    created = queue.propose(
        store,
        title="clean the cache",
        reasoning_trace=["disk at 91%", ""],
        by="agent:ops",
        action=PRINT_HI,
    )
    assert created.status is ProposalStatus.PENDING and created.reasoning_trace == ("disk at 91%",)
    decided = queue.decide(store, created.id, "approved", by="human:ana", reason="looks right")
    assert decided.status is ProposalStatus.APPROVED

    result = queue.execute(store, created.id, by="human:ana")

    assert (result.exit_code, result.output) == (0, "hi\n")
    assert result.proposal.status is ProposalStatus.EXECUTED
    assert queue.get(store, created.id) == result.proposal
    records = proposals(store)
    assert outcomes(records) == ["created", "approved", "execution_started", "executed"]
    assert {record.proposal_id for record in records} == {created.id}
    assert records[0].actor == "agent:ops" and records[1].actor == "human:ana"
    assert records[1].decision_reason == "looks right"
    started, executed = records[2], records[3]
    assert started.decision_inputs == {"from": "approved", "rollback": False}
    assert executed.decision_inputs == {"from": "approved", "result": "success", "exit_code": 0}
    assert executed.details["output"] == "hi\n" and executed.details["exit_code"] == 0
    assert executed.details["command"].endswith("-c 'print('\"'\"'hi'\"'\"')'")


def test_a_second_execution_is_refused_and_an_unfinished_one_runs_again_only_on_purpose(
    store: Workspace,
) -> None:
    proposal_id = approved(store, PRINT_HI)
    queue.execute(store, proposal_id, by="human:ana")
    before = len(list(store.records()))
    with pytest.raises(
        TransitionRefused, match=r"is executed by human:ana at .* it cannot be executed"
    ):
        queue.execute(store, proposal_id, by="human:ben")
    assert len(list(store.records())) == before  # a refusal records nothing

    # A claim whose process died: on record as started, with no result.
    other = approved(store, PRINT_HI)
    Queue(store).begin_execution(other, actor="human:ana")
    with pytest.raises(TransitionRefused, match="has no result on record: it is running now"):
        queue.execute(store, other, by="human:ben")
    result = queue.execute(store, other, by="human:ben", again=True)
    assert result.exit_code == 0 and result.proposal.status is ProposalStatus.EXECUTED
    mine = [record for record in proposals(store) if record.proposal_id == other]
    assert outcomes(mine) == [
        "created",
        "approved",
        "execution_started",
        "execution_started",
        "executed",
    ]
    assert mine[3].decision_inputs["again"] is True and mine[3].actor == "human:ben"
    report = store.audit()
    assert report.ok, report.violations


def test_a_failing_action_is_recorded_and_pauses_the_workspace(store: Workspace) -> None:
    proposal_id = approved(store, [sys.executable, "-c", "import sys; sys.exit(3)"])
    result = queue.execute(store, proposal_id, by="human:ana")
    assert result.exit_code == 3 and result.proposal.status is ProposalStatus.EXECUTED
    executed = proposals(store)[-1]
    assert executed.decision_inputs["result"] == "failure"
    (paused,) = store.records(decision_type="pause")
    assert paused.decision_outcome == "paused"
    assert paused.decision_inputs["criterion"] == Criterion.EXECUTION_FAILURE
    assert store.status().paused is not None


def test_a_command_that_cannot_start_exits_127_on_record(store: Workspace) -> None:
    proposal_id = approved(store, ["/nonexistent/stoic-no-such-command"])
    result = queue.execute(store, proposal_id, by="human:ana")
    assert result.exit_code == 127 and result.output.startswith("cannot start ")
    assert proposals(store)[-1].details["exit_code"] == 127


def test_the_output_recorded_has_the_secrets_the_action_was_given_masked(
    store: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LC_API_TOKEN", "tok-5ecret-value")  # passed through (LC_*), a secret
    proposal_id = approved(
        store, [sys.executable, "-c", "import os; print(os.environ['LC_API_TOKEN'])"]
    )
    result = queue.execute(store, proposal_id, by="human:ana")
    assert result.output == "[LC_API_TOKEN masked]\n"
    assert all("5ecret" not in str(record) for record in store.records())


def test_rollback_runs_the_rollback_of_an_executed_proposal(store: Workspace) -> None:
    proposal_id = approved(store, PRINT_HI, rollback=[sys.executable, "-c", "print('undone')"])
    with pytest.raises(TransitionRefused, match="cannot be rolled back"):
        queue.rollback(store, proposal_id, by="human:ana")
    queue.execute(store, proposal_id, by="human:ana")
    result = queue.rollback(store, proposal_id, by="human:ana")
    assert (result.exit_code, result.output) == (0, "undone\n")
    assert result.proposal.status is ProposalStatus.EXECUTED
    assert result.proposal.execution is not None
    assert result.proposal.execution["result"] == "rolled_back"
    last = proposals(store)[-2:]
    assert outcomes(last) == ["execution_started", "rolled_back"]
    assert last[0].decision_inputs["rollback"] is True
    assert last[1].decision_inputs["result"] == "rolled_back"

    bare = approved(store, PRINT_HI)
    queue.execute(store, bare, by="human:ana")
    with pytest.raises(TransitionRefused, match="has no rollback action"):
        queue.rollback(store, bare, by="human:ana")


def test_a_proposal_without_an_action_is_not_executed(store: Workspace) -> None:
    created = queue.propose(store, title="note", reasoning_trace=["fyi"], by="human:ana")
    queue.decide(store, created.id, "approved", by="human:ana")
    count = len(list(store.records()))
    with pytest.raises(TransitionRefused, match="has no action: there is nothing to execute"):
        queue.execute(store, created.id, by="human:ana")
    assert len(list(store.records())) == count


def test_a_paused_workspace_refuses_proposals_and_executions_but_not_decisions(
    store: Workspace,
) -> None:
    first = queue.propose(store, title="a", reasoning_trace=["r"], by="agent:ops")
    second = queue.propose(store, title="b", reasoning_trace=["r"], by="agent:ops")
    ready = approved(store, PRINT_HI)
    pause(store, reason="investigating", criterion=Criterion.HUMAN_STOP, actor="human:ana")
    seq = max(record.seq for record in store.records())

    with pytest.raises(WorkspacePaused, match=r"paused \(investigating\); `stoic propose`"):
        queue.propose(store, title="c", reasoning_trace=["r"], by="agent:ops")
    with pytest.raises(WorkspacePaused, match="`stoic execute` is refused"):
        queue.execute(store, ready, by="human:ana")
    assert list(store.records(since_seq=seq)) == []

    assert queue.decide(store, first.id, "approved", by="human:ana").status.value == "approved"
    rejected = queue.decide(store, second.id, "rejected", by="human:ana", reason="not now")
    assert rejected.status.value == "rejected"
    assert outcomes(proposals(store, seq)) == ["approved", "rejected"]
    assert store.status().paused is not None


def test_decisions_are_checked_before_anything_is_recorded(store: Workspace) -> None:
    created = queue.propose(store, title="a", reasoning_trace=["r"], by="agent:ops")
    count = len(list(store.records()))
    with pytest.raises(UsageError, match="unknown decision 'execution_started'"):
        queue.decide(store, created.id, "execution_started", by="human:ana")
    with pytest.raises(UsageError, match="a rejection needs a reason"):
        queue.decide(store, created.id, "rejected", by="human:ana")
    with pytest.raises(TransitionRefused, match="cannot be taken out of deferral"):
        queue.decide(store, created.id, "undeferred", by="human:ana")
    with pytest.raises(UsageError, match="needs its reasoning"):
        queue.propose(store, title="b", reasoning_trace=[" "], by="agent:ops")
    assert len(list(store.records())) == count
    queue.decide(store, created.id, "deferred", by="human:ana")
    assert queue.decide(store, created.id, "undeferred", by="human:ana").status.value == "pending"


def test_the_listing_is_the_fold_in_both_forms(store: Workspace) -> None:
    first = queue.propose(store, title="a", reasoning_trace=["r"], by="agent:ops")
    second = approved(store, PRINT_HI)
    assert [p.id for p in queue.list_proposals(store)] == [first.id, second]
    assert [p.id for p in queue.list_proposals(store, ProposalStatus.APPROVED)] == [second]
    listed = orjson.loads(queue.list_json(store, queue.status_named("pending")))
    assert [row["id"] for row in listed] == [first.id]
    assert orjson.loads(queue.list_json(store)) == [
        p.to_json() for p in queue.list_proposals(store)
    ]
    assert queue.status_named(None) is None
    with pytest.raises(UsageError, match="unknown status 'done'"):
        queue.status_named("done")


def test_after_a_manual_verification_resume_an_execution_needs_confirming(
    store: Workspace,
) -> None:
    failing = approved(store, [sys.executable, "-c", "raise SystemExit(1)"])
    assert queue.execute(store, failing, by="human:ana").exit_code == 1
    resume(store, procedure="manual-verification", reason="checked it", actor="human:ana")
    ready = approved(store, PRINT_HI)
    count = len(list(store.records()))
    with pytest.raises(UsageError, match=f"needs explicit confirmation .*--confirm {ready}"):
        queue.execute(store, ready, by="human:ana")
    assert len(list(store.records())) == count
    assert queue.execute(store, ready, by="human:ana", confirmed=True).exit_code == 0


def batches_of(store: Workspace, size: int) -> None:
    """The review batch size the workspace's settings name."""
    queue_settings = store.settings.queue.model_copy(update={"batch_size": size})
    store.settings = store.settings.model_copy(update={"queue": queue_settings})


def kinds(store: Workspace, since: int) -> list[tuple[str, str]]:
    return [
        (record.decision_type, record.decision_outcome)
        for record in store.records(since_seq=since)
        if record.decision_type in ("proposal", "red_flag", "pause")
    ]


def test_the_proposal_that_makes_the_queue_outgrow_review_raises_one_red_flag(
    store: Workspace,
) -> None:
    batches_of(store, 2)
    for n in range(6):
        queue.propose(store, title=f"p{n}", reasoning_trace=["r"], by="agent:ops")
    assert list(store.records(decision_type="red_flag")) == []
    seq = store.head().seq
    queue.propose(store, title="p6", reasoning_trace=["r"], by="agent:ops")
    assert kinds(store, seq) == [("proposal", "created"), ("red_flag", "raised")]
    (flag,) = store.records(decision_type="red_flag")
    assert flag.decision_inputs["signal"] == "queue-growing"
    assert (flag.actor, flag.decision_source, flag.decision_trigger) == (
        "system:stoic",
        "system",
        "reactive",
    )
    assert "7 proposals pending, more than three batches of 2" in flag.decision_reason
    queue.propose(store, title="p7", reasoning_trace=["r"], by="agent:ops")
    assert len(list(store.records(decision_type="red_flag"))) == 1  # once per crossing


def test_the_same_rejection_reason_a_third_time_raises_a_red_flag(store: Workspace) -> None:
    batches_of(store, 100)  # three rejections in a batch this big pause nothing
    ids = [
        queue.propose(store, title=f"p{n}", reasoning_trace=["r"], by="agent:ops").id
        for n in range(4)
    ]
    for proposal_id, reason in zip(ids[:2], ["Too risky", "too risky "], strict=True):
        queue.decide(store, proposal_id, "rejected", by="human:ana", reason=reason)
    assert list(store.records(decision_type="red_flag")) == []
    seq = store.head().seq
    queue.decide(store, ids[2], "rejected", by="human:ana", reason="TOO RISKY")
    assert kinds(store, seq) == [("proposal", "rejected"), ("red_flag", "raised")]
    (flag,) = store.records(decision_type="red_flag")
    assert flag.decision_inputs["signal"] == "repeated-rejection-reason"
    assert f"'too risky' given 3 times ({', '.join(ids[:3])})" in flag.decision_reason
    queue.decide(store, ids[3], "rejected", by="human:ana", reason="too risky")
    assert len(list(store.records(decision_type="red_flag"))) == 1  # at the 3rd, not after
    assert store.status().paused is None


def test_the_third_rejection_in_a_batch_of_ten_pauses_at_once(store: Workspace) -> None:
    ids = [
        queue.propose(store, title=f"p{n}", reasoning_trace=["r"], by="agent:ops").id
        for n in range(3)
    ]
    queue.decide(store, ids[0], "rejected", by="human:ana", reason="wrong disk")
    queue.decide(store, ids[1], "rejected", by="human:ana", reason="wrong host")
    assert store.status().paused is None
    seq = store.head().seq
    queue.decide(store, ids[2], "rejected", by="human:ana", reason="wrong day")
    assert kinds(store, seq) == [("proposal", "rejected"), ("pause", "paused")]
    paused = last(store, "pause")
    batch = queue.get(store, ids[2]).batch_id
    assert paused.decision_inputs == {
        "criterion": Criterion.REJECTION_RATE,
        "batch_id": batch,
        "rejections": 3,
    }
    assert f"3 rejections in batch {batch} of 10: more than 20%" in paused.decision_reason


def test_the_python_api_decides_through_the_queue_service(store: Workspace) -> None:
    ids = [store.propose(title=f"p{n}", reasoning_trace=["r"]).id for n in range(5)]
    assert store.approve(ids[0], by="human:ana").status is ProposalStatus.APPROVED
    assert store.defer(ids[1], by="human:ana").status is ProposalStatus.DEFERRED
    for proposal_id in ids[2:]:
        store.reject(proposal_id, by="human:ana", reason="not now")
    assert [f.decision_inputs["signal"] for f in store.records(decision_type="red_flag")] == [
        "repeated-rejection-reason"
    ]
    assert last(store, "pause").decision_inputs["criterion"] == Criterion.REJECTION_RATE


def test_a_failing_rollback_is_recorded_and_pauses_nothing(store: Workspace) -> None:
    proposal_id = approved(store, PRINT_HI, rollback=[sys.executable, "-c", "raise SystemExit(4)"])
    queue.execute(store, proposal_id, by="human:ana")
    result = queue.rollback(store, proposal_id, by="human:ana")
    assert result.exit_code == 4
    assert proposals(store)[-1].decision_inputs["result"] == "failure"
    assert list(store.records(decision_type="pause")) == []


def test_a_result_is_recorded_only_for_the_claim_the_proposal_shows_running(
    store: Workspace,
) -> None:
    proposal_id = approved(store, PRINT_HI)
    ran = ActionRan(exit_code=0, output="done\n", duration_s=0.1)
    other = ProcessPolicy.for_command(store.settings, ["sh", "-c", "echo other"])
    before = len(list(store.records()))

    # Built by hand: nothing on record started it.
    forged = ExecutionClaim(proposal_id, "human:ana", False, other, before, "2026-01-01T00:00:00Z")
    with pytest.raises(
        TransitionRefused, match=f"^{proposal_id} has no action running on record: a result"
    ):
        Queue(store).finish_execution(forged, ran)
    assert len(list(store.records())) == before

    claim = Queue(store).begin_execution(proposal_id, actor="human:ana")
    started = len(list(store.records()))
    # The claim on record, with another command, another start or the rollback instead.
    for wrong, refusal in [
        (replace(claim, process=other), "'s action is not `sh -c 'echo other'`: this claim"),
        (replace(claim, started_seq=claim.started_seq - 1), "'s action running on record"),
        (
            replace(claim, actor="human:ben"),
            f"'s action running on record started at {claim.started_at} by human:ana, not at"
            f" {claim.started_at} by human:ben (seq {claim.started_seq})",
        ),
        (replace(claim, rollback=True), " is approved by human:ana at"),  # not executed yet
    ]:
        with pytest.raises(TransitionRefused, match=re.escape(f"{proposal_id}{refusal}")):
            Queue(store).finish_execution(wrong, ran)
        assert len(list(store.records())) == started
    assert queue.get(store, proposal_id).status is ProposalStatus.APPROVED

    # Run once more: the first claim is no longer the one running.
    again = Queue(store).begin_execution(proposal_id, actor="human:ben", again=True)
    with pytest.raises(TransitionRefused, match="this claim's result is not recorded"):
        Queue(store).finish_execution(claim, ran)
    result = Queue(store).finish_execution(again, ran)
    assert result.proposal.status is ProposalStatus.EXECUTED
    assert outcomes(proposals(store)) == [
        "created",
        "approved",
        "execution_started",
        "execution_started",
        "executed",
    ]
    assert last(store, "proposal").actor == "human:ben"
    with pytest.raises(TransitionRefused, match=f"^{proposal_id} has no rollback running on"):
        Queue(store).finish_execution(replace(again, rollback=True), ran)
    assert outcomes(proposals(store))[-1] == "executed"
    report = store.audit()
    assert report.ok, report.violations
