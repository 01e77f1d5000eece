"""The runs service: start, continue, status and wait, read back through the records."""

from __future__ import annotations

from pathlib import Path

import pytest

from stoic.core.pause import Criterion
from stoic.exceptions import UsageError, WorkspacePaused
from stoic.plan.loader import PlanInvalid
from stoic.services import runs
from stoic.services.trust import pause
from stoic.store.workspace import Workspace

CHAIN = """
meta: {name: chain}
tasks:
  - {id: build, run: ["sh", "-c", "echo built"]}
  - {id: test, run: ["true"], depends_on: [build]}
"""

GATED = """
meta: {name: gated}
tasks:
  - {id: build, run: ["true"]}
  - {id: deploy, run: ["true"], depends_on: [build], approval: required}
"""

BROKEN = """
meta: {name: broken}
tasks:
  - {id: build, run: ["false"]}
  - {id: test, run: ["true"], depends_on: [build]}
"""


def _plan(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(body)
    return path


def _decisions(store: Workspace, run_id: str) -> list[tuple[str, str, str | None]]:
    return [
        (r.decision_type, r.decision_outcome, r.task_id)
        for r in store.records(run_id=run_id)
        if r.decision_type in ("run_lifecycle", "execution")
    ]


def test_a_started_plan_completes_with_its_records(store: Workspace, tmp_path: Path) -> None:
    report = runs.start(store, _plan(tmp_path, CHAIN), workers=1)
    assert (report.status, report.exit_code) == ("completed", 0)
    assert _decisions(store, report.run_id) == [
        ("run_lifecycle", "started", None),
        ("execution", "started", "build"),
        ("execution", "succeeded", "build"),
        ("execution", "started", "test"),
        ("execution", "succeeded", "test"),
        ("run_lifecycle", "completed", None),
    ]
    shown = runs.status(store, report.run_id)
    assert (shown.status, shown.runner_working, shown.report.exit_code) == ("completed", False, 0)
    document = shown.document()
    assert (document["status"], document["runner"]) == ("completed", "none")
    assert runs.wait(store, report.run_id, timeout=0) == "completed"


def test_an_invalid_plan_records_nothing(store: Workspace, tmp_path: Path) -> None:
    before = list(store.records())
    with pytest.raises(PlanInvalid):
        runs.start(store, _plan(tmp_path, "tasks:\n  - {id: a}\n"))
    assert list(store.records()) == before


def test_an_approval_gate_waits_then_continues_to_completion(
    store: Workspace, tmp_path: Path
) -> None:
    report = runs.start(store, _plan(tmp_path, GATED), workers=1)
    run_id = report.run_id
    assert (report.status, report.exit_code) == ("awaiting_human", 3)
    assert runs.status(store, run_id).status == "awaiting_human"
    assert runs.wait(store, run_id, timeout=0) == "awaiting_human"
    (proposal,) = [r for r in store.records(run_id=run_id) if r.decision_type == "proposal"]
    assert (proposal.decision_outcome, proposal.task_id) == ("created", "deploy")
    assert proposal.proposal_id is not None

    store.approve(proposal.proposal_id, by="human:ada", reason="go")
    report = runs.continue_(store, run_id, actor="human:ada")
    assert (report.status, report.exit_code) == ("completed", 0)
    decisions = _decisions(store, run_id)
    assert decisions[-3:] == [
        ("execution", "started", "deploy"),
        ("execution", "succeeded", "deploy"),
        ("run_lifecycle", "completed", None),
    ]
    assert ("run_lifecycle", "awaiting_approval", None) in decisions
    assert runs.status(store, run_id).status == "completed"
    assert runs.wait(store, run_id) == "completed"


def test_a_failed_run_says_so_in_every_vocabulary(store: Workspace, tmp_path: Path) -> None:
    report = runs.start(store, _plan(tmp_path, BROKEN), workers=1)
    assert (report.status, report.exit_code) == ("failed", 1)
    assert [r.decision_outcome for r in store.records(run_id=report.run_id)][-1] == "failed"
    shown = runs.status(store, report.run_id)
    assert (shown.status, shown.report.exit_code) == ("failed", 1)
    assert shown.report.analysis.blocked == {"test": ("build",)}
    assert runs.wait(store, report.run_id, timeout=0) == "failed"

    history = runs.timeline(store, report.run_id)
    seqs = [r.seq for r in store.records(run_id=report.run_id)]
    assert [entry["seq"] for entry in history.operator()["records"]] == seqs
    customer = history.customer()
    assert (customer["status"], [row["status"] for row in customer["tasks"]]) == (
        "failed",
        ["failed", "not started: work it needs failed"],
    )
    assert history.reconciliation()["run"]["original_failures"] == 1


def test_a_paused_workspace_refuses_start_and_continue(store: Workspace, tmp_path: Path) -> None:
    waiting = runs.start(store, _plan(tmp_path, GATED), workers=1)
    pause(store, reason="held", actor="human:ada", criterion=Criterion.HUMAN_STOP)
    last = [r.seq for r in store.records()][-1]

    with pytest.raises(WorkspacePaused, match=r"paused \(held\); `stoic run` is refused"):
        runs.start(store, _plan(tmp_path, CHAIN))
    with pytest.raises(WorkspacePaused, match=r"`stoic continue` is refused until `stoic resume`"):
        runs.continue_(store, waiting.run_id)
    assert list(store.records(since_seq=last)) == []
    assert WorkspacePaused.exit_code == 4
    # Inspecting stays open to a person while paused.
    assert runs.status(store, waiting.run_id).status == "awaiting_human"


def test_an_unknown_run_is_named(store: Workspace) -> None:
    with pytest.raises(UsageError, match="no run 'run-nope' in this workspace"):
        runs.status(store, "run-nope")
    with pytest.raises(UsageError, match="is not a run id"):
        runs.wait(store, "../x", timeout=0)


def test_a_plan_is_checked_without_running_it(store: Workspace, tmp_path: Path) -> None:
    before = list(store.records())
    verdict = runs.check(_plan(tmp_path, CHAIN))
    assert (verdict.status.value, verdict.runnable, verdict.waiting) == (
        "runnable",
        ("build",),
        ("test",),
    )
    invalid = runs.check(_plan(tmp_path, "tasks:\n  - {id: a, run: [x], depends_on: [b]}\n"))
    assert (invalid.status.value, invalid.status.exit_code) == ("invalid", 2)
    assert [error.message for error in invalid.errors] == [
        "task 'a' depends on 'b', which is not a task in this plan"
    ]
    assert list(store.records()) == before
