"""`stoic audit`: every kind of damage to the log is named where it is."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import stoic
from stoic.core.audit import ChainChecker, ViolationCode
from stoic.core.records import GENESIS_HASH, Decision, canonical_json, seal
from tests.conftest import fill, log_path, run_cli


def _lines(root: Path) -> list[bytes]:
    return log_path(root).read_bytes().splitlines(keepends=True)


def _write(root: Path, lines: list[bytes]) -> None:
    log_path(root).write_bytes(b"".join(lines))


def _audit(root: Path) -> stoic.AuditReport:
    with stoic.Workspace.open(root, catch_up=False) as workspace:
        return workspace.audit()


def _codes(report: stoic.AuditReport) -> list[ViolationCode]:
    return [violation.code for violation in report.violations]


@pytest.fixture
def ten(ws: stoic.Workspace, ws_path: Path) -> Path:
    fill(ws, 10)
    ws.close()
    return ws_path


def test_clean_log_audits_clean(ten: Path) -> None:
    report = _audit(ten)
    assert report.ok and report.records == 10 and report.last_seq == 10


def test_one_byte_changed_in_a_middle_record_names_its_seq(ten: Path) -> None:
    lines = _lines(ten)
    lines[4] = lines[4].replace(b"Task t4 finished.", b"Task t4 finishel.")
    _write(ten, lines)
    report = _audit(ten)
    assert [(v.code, v.seq, v.line) for v in report.violations] == [
        (ViolationCode.HASH_MISMATCH, 5, 5)
    ]


def test_deleted_middle_line_is_named_as_a_gap(ten: Path) -> None:
    lines = _lines(ten)
    del lines[5]
    _write(ten, lines)
    report = _audit(ten)
    gap = [v for v in report.violations if v.code is ViolationCode.SEQ_GAP]
    assert len(gap) == 1
    assert gap[0].seq == 7 and "seq 6 missing" in gap[0].message
    assert (gap[0].expected, gap[0].found) == ("seq 6", "seq 7")


def test_two_swapped_lines_are_named(ten: Path) -> None:
    lines = _lines(ten)
    lines[2], lines[3] = lines[3], lines[2]
    _write(ten, lines)
    report = _audit(ten)
    assert _codes(report) == [ViolationCode.SEQ_ORDER]
    assert "seq 4 (line 3) and seq 3 (line 4) are swapped" in report.violations[0].message


def test_record_appended_by_hand_with_a_made_up_hash_is_named(ten: Path) -> None:
    last = orjson.loads(_lines(ten)[-1])
    forged = dict(last, seq=11, prev_hash=last["hash"], hash="ab" * 32, decision_reason="All ok.")
    _write(ten, [*_lines(ten), canonical_json(forged) + b"\n"])
    report = _audit(ten)
    assert [(v.code, v.seq) for v in report.violations if v.seq == 11] == [
        (ViolationCode.HASH_MISMATCH, 11)
    ]


def test_rewritten_history_breaks_the_chain(ten: Path) -> None:
    """A record replaced by a validly hashed forgery still breaks the link to its successor."""
    lines = _lines(ten)
    original = orjson.loads(lines[3])
    decision = Decision("execution", "succeeded", "Forged.", run_id="run-1")
    _, forged = seal(
        decision,
        seq=4,
        prev_hash=original["prev_hash"],
        decision_id="forged",
        decided_at=original["decided_at"],
    )
    lines[3] = forged
    _write(ten, lines)
    report = _audit(ten)
    assert [
        (v.code, v.seq)
        for v in report.violations
        if v.code is not ViolationCode.PROJECTION_MISMATCH
    ] == [(ViolationCode.CHAIN_BREAK, 5)]


def test_bad_json_before_the_last_line_is_an_audit_failure_never_repaired(ten: Path) -> None:
    lines = _lines(ten)
    lines[2] = b'{"seq": 3, broken\n'
    _write(ten, lines)
    report = _audit(ten)
    assert report.violations[0].code is ViolationCode.BAD_LINE
    assert report.violations[0].line == 3
    with stoic.Workspace.open(ten, catch_up=False) as workspace:
        repaired = workspace.audit(repair=True)
    assert repaired.repaired is None and not repaired.ok
    assert _lines(ten)[2] == b'{"seq": 3, broken\n'


def test_cli_lists_every_violation_and_exits_1(ten: Path) -> None:
    lines = _lines(ten)
    lines[1] = lines[1].replace(b"Task t1", b"Task X1")
    del lines[7]
    _write(ten, lines)
    result = run_cli("--workspace", str(ten), "audit")
    assert result.exit_code == 1
    assert "seq 2, line 2: hash_mismatch" in result.stdout
    assert "seq_gap" in result.stdout and "seq 8 missing" in result.stdout
    as_json = run_cli("--workspace", str(ten), "audit", "--json")
    document = orjson.loads(as_json.stdout)
    assert as_json.exit_code == 1 and document["ok"] is False
    assert {v["code"] for v in document["violations"]} >= {"hash_mismatch", "seq_gap"}


def test_cli_audit_clean_exits_0(ten: Path) -> None:
    result = run_cli("--workspace", str(ten), "audit")
    assert result.exit_code == 0
    assert "Audit clean: 10 records, last seq 10." in result.stdout


def _chain(count: int) -> list[bytes]:
    lines, prev = [], GENESIS_HASH
    for seq in range(1, count + 1):
        record, line = seal(
            Decision("execution", "started", f"Task {seq} started."),
            seq=seq,
            prev_hash=prev,
            decision_id=str(seq),
            decided_at="2026-11-23T10:00:00.000000Z",
        )
        lines.append(line.rstrip(b"\n"))
        prev = record.hash
    return lines


def _check(lines: list[bytes]) -> list[ViolationCode]:
    checker = ChainChecker()
    codes = []
    for number, line in enumerate(lines, start=1):
        _, found = checker.feed(number, line, is_last=number == len(lines))
        codes += [v.code for v in found]
    return codes + [v.code for v in checker.finish()]


_CHAIN = _chain(12)


@settings(max_examples=300)
@given(st.data())
def test_any_deletion_reorder_or_duplication_is_caught(data: st.DataObject) -> None:
    lines = list(_CHAIN)
    edit = data.draw(st.sampled_from(["delete", "swap", "duplicate", "move"]))
    i = data.draw(st.integers(0, len(lines) - 2))
    if edit == "delete":
        del lines[i]
    elif edit == "swap":
        lines[i], lines[i + 1] = lines[i + 1], lines[i]
    elif edit == "duplicate":
        lines.insert(i + 1, lines[i])
    else:
        j = data.draw(st.integers(0, len(lines) - 1).filter(lambda j: j not in (i, i + 1)))
        lines.insert(j, lines.pop(i))
    assert _check(lines), f"{edit} at {i} went unnoticed"


def test_clean_chain_has_no_violations() -> None:
    assert _check(list(_CHAIN)) == []


def test_deleting_the_last_record_is_visible_only_against_a_projection(ten: Path) -> None:
    """A truncated end leaves a valid chain; the projection stamp still names the lost seq."""
    with stoic.Workspace.open(ten) as workspace:
        workspace.status()
    _write(ten, _lines(ten)[:-1])
    report = _audit(ten)
    assert _codes(report) == [ViolationCode.RECORDS_LOST]
    assert "seq 10" in report.violations[0].message


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: {**d, "projection": "run_state"}, "it is not the workspace_status projection"),
        (lambda d: {**d, "version": 99}, "it has version 99, this stoic writes 1"),
        (lambda d: {k: v for k, v in d.items() if k != "log_offset"}, "not a valid projection"),
    ],
    ids=["another-projection", "another-version", "a-field-missing"],
)
def test_a_damaged_status_projection_is_named_and_repaired(
    ten: Path, edit: Any, message: str
) -> None:
    path = ten / "manifests" / "workspace_status.json"
    path.write_bytes(orjson.dumps(edit(orjson.loads(path.read_bytes()))))
    status = run_cli("-w", str(ten), "status")
    assert status.exit_code == 1 and message in status.stderr
    assert "`stoic audit" in status.stderr
    audit = run_cli("-w", str(ten), "audit")
    assert audit.exit_code == 1 and "workspace_status" in audit.stdout
    assert run_cli("-w", str(ten), "audit", "--repair").exit_code == 0
    assert run_cli("-w", str(ten), "status").exit_code == 0


_DROP = object()


def _with(line: bytes, **changes: Any) -> bytes:
    record = {**orjson.loads(line), **changes}
    return orjson.dumps({k: v for k, v in record.items() if v is not _DROP}) + b"\n"


@pytest.mark.parametrize(
    ("replace", "message"),
    [
        (lambda line: b"[1, 2]\n", "not a JSON object"),
        (lambda line: b'{"seq": 3}\n', "not a decision record: lacks "),
        (lambda line: _with(line, seq=0), "seq must be a whole number ≥ 1, not 0"),
        (lambda line: _with(line, seq=True), "seq must be a whole number ≥ 1, not True"),
        (lambda line: _with(line, hash="abc"), "hash must be 64 hex characters"),
        (lambda line: _with(line, prev_hash=_DROP), "lacks prev_hash"),
    ],
    ids=["an-array", "fields-missing", "seq-zero", "seq-a-boolean", "short-hash", "no-prev-hash"],
)
def test_json_that_is_not_a_record_is_named_at_its_line(
    ten: Path, replace: Any, message: str
) -> None:
    lines = _lines(ten)
    lines[2] = replace(lines[2])
    _write(ten, lines)
    report = _audit(ten)
    bad = [v for v in report.violations if v.code is ViolationCode.BAD_RECORD]
    assert len(bad) == 1 and bad[0].line == 3 and message in bad[0].message


@pytest.mark.parametrize("change", [b"go.", b"started, and then a good deal more was said."])
def test_a_middle_line_edited_to_another_length_is_listed_never_an_error(
    ws_path: Path, change: bytes
) -> None:
    with stoic.Workspace.open(ws_path) as workspace:
        fill(workspace, 3000)
    workspace = stoic.Workspace.open(ws_path, catch_up=False)
    fill(workspace, 100)  # a writer killed before it caught its projections up
    workspace.log.close()
    lines = _lines(ws_path)
    lines[1500] = lines[1500].replace(b'"decision_reason":"', b'"decision_reason":"' + change, 1)
    _write(ws_path, lines)
    for args in (["audit"], ["audit", "--json"], ["audit", "--repair"]):
        result = run_cli("-w", str(ws_path), *args)
        assert result.exit_code == 1, result.stderr
        assert "error:" not in result.stderr
        assert "hash_mismatch" in result.stdout
        assert "workspace_status.json does not line up with the log" in result.stdout
        assert "run `stoic audit`" not in result.stdout
        assert "run `stoic audit`" not in result.stderr  # not a hint to run itself again
        assert "could not record its pause" in result.stderr
        assert "mend that and what the violations name" in result.stderr


def test_a_record_with_fields_of_the_wrong_type_is_listed_never_an_error(ten: Path) -> None:
    lines = _lines(ten)
    record = orjson.loads(lines[4])
    record.update(decision_type="pause", decision_outcome="paused", decision_inputs="x")
    record.pop("hash")
    body = canonical_json(record)
    record["hash"] = hashlib.sha256(body).hexdigest()  # anyone can hash a record
    lines[4] = canonical_json(record) + b"\n"
    _write(ten, lines)
    result = run_cli("-w", str(ten), "audit")
    assert result.exit_code == 1 and "error:" not in result.stderr
    assert "bad_record: not a record stoic can replay" in result.stdout


def test_a_pause_the_audit_cannot_record_says_what_mends_it(ten: Path) -> None:
    manifest = ten / "manifests" / "workspace_status.json"
    manifest.write_text(manifest.read_text().replace('"last_seq"', '"last_seq_x"', 1))
    audited = run_cli("-w", str(ten), "audit")
    assert audited.exit_code == 1, audited.stderr
    assert "could not record its pause: " in audited.stderr, audited.stderr
    assert "restored from a backup" not in audited.stderr  # the log is fine
    assert "`stoic audit --repair` rebuilds it from the log" in audited.stderr  # its own hint
    assert "then `stoic audit` again records it" in audited.stderr
