"""Anchoring the log's head outside the workspace (`stoic audit --head` / `--expect`).

The chain proves the log was not edited in place; only a head kept elsewhere shows that it was
rewritten whole and re-hashed by someone who can write the workspace.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

import stoic
from stoic.core.audit import Anchor, ViolationCode, check_anchor
from tests.conftest import fill, log_path, run_cli


def _head_of(root: Path) -> str:
    last = orjson.loads(log_path(root).read_bytes().splitlines()[-1])
    return f"{last['seq']}:{last['hash']}"


def _audit_json(root: Path, *args: str) -> tuple[int, dict[str, object]]:
    result = run_cli("-w", str(root), "audit", "--json", *args)
    return result.exit_code, orjson.loads(result.stdout)


@pytest.fixture
def five(ws: stoic.Workspace, ws_path: Path) -> Path:
    fill(ws, 5)
    ws.close()
    return ws_path


def test_head_prints_only_the_last_records_seq_and_hash(five: Path) -> None:
    result = run_cli("-w", str(five), "audit", "--head")
    assert result.exit_code == 0
    assert result.stdout == _head_of(five) + "\n"
    assert result.stdout.startswith("5:")
    assert "Audit clean" in result.stderr  # the report is still there, out of the way


def test_the_json_report_carries_the_head(five: Path) -> None:
    code, report = _audit_json(five)
    assert code == 0 and report["head"] == _head_of(five)


def test_an_anchor_the_log_still_holds_passes(five: Path) -> None:
    anchor = _head_of(five)
    with stoic.Workspace.open(five) as workspace:
        fill(workspace, 3)  # later records do not disturb an older anchor
    code, report = _audit_json(five, "--expect", anchor, "--expect", _head_of(five))
    assert code == 0 and report["violations"] == []


def test_a_log_rewritten_whole_and_rehashed_fails_only_against_its_anchor(
    five: Path, tmp_path: Path
) -> None:
    anchor = _head_of(five)
    # Someone who can write the workspace builds another history with the same shape and puts
    # it in place, projections included: the chain and every view agree with it.
    forged = tmp_path / "forged"
    with stoic.Workspace.init(forged) as workspace:
        fill(workspace, 5, run_id="run-forged")
    for folder in ("logs", "manifests"):
        shutil.rmtree(five / folder)
        shutil.copytree(forged / folder, five / folder)
    assert run_cli("-w", str(five), "audit").exit_code == 0

    code, report = _audit_json(five, "--expect", anchor)
    assert code == 1
    (violation,) = report["violations"]  # type: ignore[misc]
    assert violation["code"] == ViolationCode.ANCHOR_MISMATCH.value
    assert violation["seq"] == 5
    assert violation["expected"] == anchor.split(":")[1]
    assert "rewritten" in violation["message"]


def test_records_lost_past_the_anchor_fail(five: Path) -> None:
    anchor = _head_of(five)
    lines = log_path(five).read_bytes().splitlines(keepends=True)
    log_path(five).write_bytes(b"".join(lines[:3]))
    code, report = _audit_json(five, "--expect", anchor)
    assert code == 1
    anchored = [v for v in report["violations"] if v["code"] == "anchor_mismatch"]  # type: ignore[union-attr,index]
    assert len(anchored) == 1
    assert "the log ends at seq 3: records were lost" in anchored[0]["message"]


@pytest.mark.parametrize(
    "text",
    ["5", "five:abc", "0:" + "a" * 64, "5:" + "a" * 63, "5:" + "g" * 64, ":" + "a" * 64],
)
def test_a_malformed_anchor_is_a_usage_error(five: Path, text: str) -> None:
    result = run_cli("-w", str(five), "audit", "--expect", text)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "SEQ:HASH" in result.stderr or "64 hex digits" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_empty_log_has_no_head_to_anchor(ws_path: Path) -> None:
    result = run_cli("-w", str(ws_path), "audit", "--head")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "no head to anchor" in result.stderr


def test_notifiers_get_the_head_after_every_audit(five: Path) -> None:
    (five / "stoic.toml").write_text(
        '[[notifiers]]\nkind = "file"\npath = "anchors.ndjson"\n'
        'events = ["audit_passed", "audit_failed"]\n'
    )
    head = _head_of(five)
    assert run_cli("-w", str(five), "audit").exit_code == 0
    head_then = _head_of(five)  # the delivery itself went on record after the audit
    assert head_then.startswith("6:")
    log = log_path(five)
    log.write_bytes(log.read_bytes().replace(b"Task t1 finished.", b"Task t1 finishes."))
    assert run_cli("-w", str(five), "audit").exit_code == 1
    notices = [orjson.loads(line) for line in (five / "anchors.ndjson").read_bytes().splitlines()]
    assert [(n["event"], n["data"]["head"]) for n in notices] == [
        ("audit_passed", head),
        ("audit_failed", head_then),
    ]


@given(st.integers(1, 10**6), st.text("0123456789abcdef", min_size=64, max_size=64))
def test_an_anchor_reads_back_what_it_prints(seq: int, digest: str) -> None:
    anchor = Anchor(seq, digest)
    assert Anchor.parse(str(anchor)) == anchor
    assert check_anchor(anchor, digest, seq) is None
    violation = check_anchor(anchor, "f" * 64 if digest != "f" * 64 else "0" * 64, seq)
    assert violation is not None and violation.code is ViolationCode.ANCHOR_MISMATCH
