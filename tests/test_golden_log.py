"""A recorded decision log kept as a fixture: a codec change that alters past records fails here."""

from __future__ import annotations

import shutil
from pathlib import Path

import stoic
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
