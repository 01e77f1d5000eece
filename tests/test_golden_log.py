"""A recorded decision log kept as a fixture: a codec change that alters past records fails here."""

from __future__ import annotations

import json
import shutil
from itertools import groupby
from pathlib import Path
from typing import Any

import stoic
from stoic.core.graph import RunStatus
from stoic.core.run_state import RunFolder
from stoic.core.scheduling import Admission, Scheduler
from stoic.plan.loader import read_plan
from tests.conftest import log_path
from tests.golden import lines

FIXTURE = Path(__file__).parent / "fixtures" / "golden_decision_log.ndjson"


def test_sealing_the_same_decisions_gives_the_same_bytes() -> None:
    assert b"".join(lines()) == FIXTURE.read_bytes()


def test_golden_log_audits_clean_and_new_records_chain_onto_it(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    stoic.Workspace.init(root).close()
    shutil.copyfile(FIXTURE, log_path(root))
    with stoic.Workspace.open(root) as ws:  # the projection catches up from seq 0
        assert ws.status().records == 5
        added = ws.record("audit", "passed", "Audit clean.")
        report = ws.audit()
        assert report.ok and report.records == 6
        records = list(ws.records())
        assert records[4].details == {"note": 'line\nbreak and "quotes"'}
        assert records[4].decision_reason.endswith("ünïcödé ✓.")
        assert added.seq == 6 and added.prev_hash == records[4].hash


RUN_LOG = Path(__file__).parent / "fixtures" / "golden_run_log.ndjson"
RUN_PLAN = Path(__file__).parent / "fixtures" / "golden_run_plan.yaml"
_ENDS = frozenset({"succeeded", "failed", "halted", "interrupted"})


def _admission(record: dict[str, Any]) -> Admission | None:
    kind, outcome = record["decision_type"], record["decision_outcome"]
    if kind == "execution" and outcome == "started":
        return Admission.STARTED
    if kind == "execution" and outcome == "halted":
        return Admission.HALTED
    if kind == "policy_check" and record["decision_inputs"].get("requires") == "approval":
        return Admission.GATED
    return None


def test_the_scheduling_core_replays_a_recorded_run() -> None:
    """Replayed over a run a runner recorded (two workers, a dependency fan-out, an R1 retry after
    its delay, an R2, an approval gate), the core asks, append by append, for exactly the starts
    the log holds: a change that would start other tasks, or in another order, fails here."""
    records = [json.loads(line) for line in RUN_LOG.read_text().splitlines()]
    graph = read_plan(RUN_PLAN).graph
    run_id, workers = records[0]["run_id"], records[0]["decision_inputs"]["workers"]
    folder = RunFolder(run_id)
    replayed = 0
    # One append is one group commit: its records share their decided_at.
    for decided_at, appended in groupby(records, key=lambda record: record["decided_at"]):
        batch = list(appended)
        expected = [(r["task_id"], r.get("attempt"), a) for r in batch if (a := _admission(r))]
        ends = [
            r
            for r in batch
            if r["decision_type"] == "execution"
            and r["decision_outcome"] in _ENDS
            and _admission(r) is None
        ]
        for record in ends:  # the ends come before the starts they allow
            folder.feed(record)
        if expected:
            view = folder.view()
            busy = sum(1 for task in view.tasks.values() if task.open_attempt is not None)
            core = Scheduler.from_view(graph, view, workers - busy, 0.0, decided_at)
            admissions = {task_id: admission for task_id, _, admission in expected}
            asked = []
            while (start := core.next_start()) is not None:
                task_id = graph.ids[start.index]
                assert task_id in admissions, f"the core would start {task_id} at {decided_at}"
                asked.append(
                    (
                        task_id,
                        start.attempt if admissions[task_id] is not Admission.GATED else None,
                        admissions[task_id],
                    )
                )
                core.admitted(start, admissions[task_id])
            assert sorted(asked, key=str) == sorted(expected, key=str)
            started = [entry for entry in expected if entry[2] is Admission.STARTED]
            assert [entry for entry in asked if entry[2] is Admission.STARTED] == started
            replayed += 1
        for record in batch:
            if record not in ends:
                folder.feed(record)
    assert replayed == 5
    assert folder.view().analyse(graph).status is RunStatus.AWAITING_HUMAN
