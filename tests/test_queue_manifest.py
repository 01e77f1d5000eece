"""The queue manifest patched in place: always what the log says, whatever came before."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import stoic
from stoic.core.manifest import PAGE, Layout, manifest_document, read_header
from stoic.core.proposals import QueueState, allowed_from
from stoic.store.manifest import MANIFEST, update_manifest
from tests.conftest import kill_during, run_cli

DAY = "20261123"


def on_disk(root: Path) -> tuple[dict[str, Any], Layout]:
    data = (root / MANIFEST).read_bytes()
    found = read_header(data)
    assert found is not None, data[:200]
    assert len(data) == found.layout.size(len(orjson.loads(data)["proposals"]))
    document = orjson.loads(data)
    assert document.pop("layout") == {
        "header_bytes": found.layout.header_bytes,
        "row_bytes": found.layout.row_bytes,
    }
    return document, found.layout


def assert_matches(root: Path, state: QueueState) -> Layout:
    document, layout = on_disk(root)
    expected = manifest_document(state, document["generated_at"])
    assert document == expected
    return layout


class Log:
    """Proposal records as the store writes them, fed to a fold."""

    def __init__(self) -> None:
        self.seq = 0
        self.state = QueueState()

    def add(self, proposal_id: str, outcome: str, **details: Any) -> int:
        """Append one record; returns the seq of the proposal record before it."""
        self.seq += 1
        reflected = self.state.queue_seq
        self.state.feed(
            [
                {
                    "seq": self.seq,
                    "decision_type": "proposal",
                    "decision_outcome": outcome,
                    "proposal_id": proposal_id,
                    "actor": "human:ana",
                    "decided_at": f"2026-11-23T10:00:{self.seq % 60:02d}.000000Z",
                    "decision_reason": "because",
                    "decision_inputs": {},
                    "details": details,
                }
            ]
        )
        return reflected


kinds = st.sampled_from(["action", "recovery", "approval", "t" * 90, "type-" * 6, "ünïcødé ✓" * 9])
operations = st.lists(
    st.one_of(
        st.tuples(st.just("create"), kinds, st.floats(0, 1)),
        st.tuples(st.just("decide"), st.integers(0, 50), st.integers(0, 3)),
        st.tuples(st.just("damage"), st.sampled_from(["delete", "truncate", "lag", "v1"])),
    ),
    max_size=25,
)


@settings(max_examples=150, deadline=None)
@given(operations)
def test_any_history_of_decisions_leaves_the_manifest_the_log_tells(ops: list[Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "manifests").mkdir()
        log = Log()
        stale: bytes | None = None
        for op in ops:
            path = root / MANIFEST
            if op[0] == "damage":
                if not path.exists():
                    continue
                if op[1] == "delete":
                    path.unlink()
                elif op[1] == "truncate":
                    os.truncate(path, path.stat().st_size // 2)
                elif op[1] == "lag" and stale is not None:
                    path.write_bytes(stale)  # a writer killed between its record and its row
                elif op[1] == "v1":
                    path.write_bytes(orjson.dumps({"manifest_version": 1, "last_seq": log.seq}))
                continue
            if op[0] == "create":
                proposal_id = f"PROP-{DAY}-{len(log.state.proposals) + 1:03d}"
                reflected = log.add(proposal_id, "created", type=op[1], confidence=op[2])
            else:
                if not log.state.proposals:
                    continue
                ids = list(log.state.proposals)
                proposal_id = ids[op[1] % len(ids)]
                allowed = allowed_from(log.state.proposals[proposal_id].status)
                if not allowed:
                    continue
                reflected = log.add(proposal_id, allowed[op[2] % len(allowed)])
            stale = path.read_bytes() if path.exists() else None
            update_manifest(root, log.state, proposal_id, reflected)
            assert_matches(root, log.state)


def test_a_decision_rewrites_its_row_and_the_header_only(ws_path: Path) -> None:
    with stoic.Workspace.open(ws_path) as ws:
        ids = [ws.propose(title=f"p{n}", reasoning_trace=["r"]).id for n in range(30)]
        path = ws_path / MANIFEST
        before, inode = path.read_bytes(), path.stat().st_ino
        ws.approve(ids[17], by="human:ana")
        after = path.read_bytes()
        assert path.stat().st_ino == inode  # patched, not replaced
        _, layout = on_disk(ws_path)
        changed = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
        row = range(layout.offset(17), layout.offset(18))
        assert changed and all(i < layout.header_bytes or i in row for i in changed)
        assert b'"status":"approved"' in after[row.start : row.stop]
        assert orjson.loads(after)["summary"]["total_approved"] == 1
    assert run_cli("-w", str(ws_path), "audit").exit_code == 0


def test_rows_and_header_that_outgrow_their_room_are_laid_out_again(ws_path: Path) -> None:
    with stoic.Workspace.open(ws_path) as ws:
        ws.propose(title="short", reasoning_trace=["r"])
        _, first = on_disk(ws_path)
        ws.propose(title="long type", reasoning_trace=["r"], type="x" * 400)
        _, wider = on_disk(ws_path)
        assert wider.row_bytes > 400 > first.row_bytes
        for n in range(100):  # every new type is a key of pending_by_type in the header
            ws.propose(title=f"type {n}", reasoning_trace=["r"], type=f"kind-{n:02d}-" + "y" * 40)
        document, taller = on_disk(ws_path)
        assert taller.header_bytes > first.header_bytes == PAGE
        assert len(document["pending_by_type"]) == 102
    assert run_cli("-w", str(ws_path), "audit").exit_code == 0


def test_a_lagging_or_foreign_manifest_is_rendered_whole(ws_path: Path) -> None:
    path = ws_path / MANIFEST
    with stoic.Workspace.open(ws_path) as ws:
        ids = [ws.propose(title=f"p{n}", reasoning_trace=["r"]).id for n in range(6)]
        lagging = path.read_bytes()
        ws.approve(ids[0], by="human:ana")
        # A writer killed after its record, before the manifest: the whole file lags.
        path.write_bytes(lagging)
        ws.reject(ids[1], by="human:ana", reason="no")
        assert run_cli("-w", str(ws_path), "audit").exit_code == 0
        # … or killed after its row, before the header.
        before = path.read_bytes()
        ws.approve(ids[4], by="human:ana")
        _, layout = on_disk(ws_path)
        path.write_bytes(before[: layout.header_bytes] + path.read_bytes()[layout.header_bytes :])
        ws.reject(ids[3], by="human:ana", reason="no")
        assert run_cli("-w", str(ws_path), "audit").exit_code == 0
        # A hand edit claiming a header of a terabyte: not believed, not read.
        data = path.read_bytes().replace(b'"header_bytes":4096', b'"header_bytes":1099511627776')
        path.write_bytes(data[: len(data) - 14])
        ws.defer(ids[2], by="human:ana")
        assert run_cli("-w", str(ws_path), "audit").exit_code == 0
        # The one-line manifest of earlier versions.
        path.write_bytes(orjson.dumps({"manifest_version": 1, "last_seq": 999_999}) + b"\n")
        ws.approve(ids[5], by="human:ana")
        document, _ = on_disk(ws_path)
        assert document["summary"] == {
            "total_pending": 0,
            "total_approved": 3,
            "total_rejected": 2,
            "total_deferred": 1,
            "total_executed": 0,
        }
    assert run_cli("-w", str(ws_path), "audit").exit_code == 0


def test_the_manifest_reads_with_line_tools(ws_path: Path) -> None:
    with stoic.Workspace.open(ws_path) as ws:
        ids = [ws.propose(title=f"p{n}", reasoning_trace=["r"]).id for n in range(3)]
        ws.approve(ids[1], by="human:ana")
    lines = (ws_path / MANIFEST).read_text().splitlines()
    assert len(lines) == 1 + 3 + 1  # header, one line per proposal, the close
    assert [ids[1] in line and '"status":"approved"' in line for line in lines[1:4]] == [
        False,
        True,
        False,
    ]
    if shutil.which("jq"):
        statuses = subprocess.run(
            ["jq", "-r", ".proposals[].status", str(ws_path / MANIFEST)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert statuses == ["pending", "approved", "pending"]


@pytest.mark.parametrize(
    ("statement", "function", "nth"),
    [
        ("ws.propose(title='new', reasoning_trace=['r'])", "write_proposal_file", 1),
        ("ws.approve(ws.queue_ids[0], by='human:ana')", "write_proposal_file", 1),
        ("ws.approve(ws.queue_ids[0], by='human:ana')", "update_manifest", 1),
        ("ws.approve(ws.queue_ids[0], by='human:ana')", "_write_at", 2),  # row, not header
    ],
    ids=["propose-before-file", "approve-before-file", "approve-before-manifest", "row-only"],
)
def test_a_writer_killed_mid_decision_is_caught_up_on_open(
    ws_path: Path, statement: str, function: str, nth: int
) -> None:
    with stoic.Workspace.open(ws_path) as ws:
        ids = [ws.propose(title=f"p{n}", reasoning_trace=["r"]).id for n in range(3)]
    kill_during(ws_path, statement.replace("ws.queue_ids", repr(ids)), function, nth=nth)
    records = [
        orjson.loads(line)
        for line in (ws_path / "logs/decision_log.ndjson").read_bytes().splitlines()
    ]
    last = records[-1]
    assert last["decision_type"] == "proposal"  # on record before the process died
    audit = run_cli("-w", str(ws_path), "audit")  # opening catches the files up
    assert audit.exit_code == 0, audit.stdout
    document, _ = on_disk(ws_path)
    pending = sorted(path.stem for path in (ws_path / "queue" / "pending").glob("*.json"))
    assert [row["id"] for row in document["proposals"] if row["status"] == "pending"] == pending
    assert document["summary"]["total_pending"] == len(pending)
    assert last["proposal_id"] in {row["id"] for row in document["proposals"]}


def test_a_link_planted_in_place_of_the_manifest_is_replaced_not_written_through(
    ws_path: Path, tmp_path: Path
) -> None:
    with stoic.Workspace.open(ws_path) as ws:
        first = ws.propose(title="p", reasoning_trace=["r"]).id
        elsewhere = tmp_path / "elsewhere.json"
        elsewhere.write_bytes((ws_path / MANIFEST).read_bytes())
        (ws_path / MANIFEST).unlink()
        (ws_path / MANIFEST).symlink_to(elsewhere)
        kept = elsewhere.read_bytes()
        ws.approve(first, by="human:ana")
    assert elsewhere.read_bytes() == kept
    assert not (ws_path / MANIFEST).is_symlink()
    assert on_disk(ws_path)[0]["summary"]["total_approved"] == 1


_BUSY_WRITER = """
import sys
import stoic
with stoic.Workspace.open(sys.argv[1]) as ws:
    made = [ws.propose(title=f"w{sys.argv[2]}-{n}", reasoning_trace=["r"]).id for n in range(60)]
    for proposal_id in made[::3]:
        ws.approve(proposal_id, by=f"human:w{sys.argv[2]}")
"""


def test_four_processes_proposing_and_deciding_at_once_leave_one_consistent_queue(
    ws_path: Path,
) -> None:
    writers = [
        subprocess.Popen([sys.executable, "-c", _BUSY_WRITER, str(ws_path), str(n)])
        for n in range(4)
    ]
    assert [writer.wait(timeout=120) for writer in writers] == [0] * 4
    document, _ = on_disk(ws_path)
    ids = [row["id"] for row in document["proposals"]]
    assert ids == [f"PROP-{time.strftime('%Y%m%d', time.gmtime())}-{n:03d}" for n in range(1, 241)]
    assert document["summary"]["total_approved"] == 4 * 20
    for status in ("pending", "approved"):
        in_folder = sorted(path.stem for path in (ws_path / "queue" / status).glob("*.json"))
        assert in_folder == sorted(r["id"] for r in document["proposals"] if r["status"] == status)
    assert run_cli("-w", str(ws_path), "audit").exit_code == 0


_ENDLESS_WRITER = """
import sys
import stoic
ws = stoic.Workspace.open(sys.argv[1])
n = 0
while True:
    made = ws.propose(title=f"p{n}", reasoning_trace=["r"]).id
    if n % 2:
        ws.approve(made, by="human:ana")
    n += 1
"""


def test_writers_killed_at_random_moments_leave_a_queue_that_opens_consistent(
    ws_path: Path,
) -> None:
    import random

    chance = random.Random(5)
    log = ws_path / "logs" / "decision_log.ndjson"
    for _ in range(8):
        size = log.stat().st_size
        writer = subprocess.Popen([sys.executable, "-c", _ENDLESS_WRITER, str(ws_path)])
        deadline = time.monotonic() + 60
        while log.stat().st_size == size and time.monotonic() < deadline:
            time.sleep(0.01)  # past start-up, into the writing (however slow the machine) …
        time.sleep(chance.random() * 0.3)  # … then anywhere in it
        writer.kill()
        writer.wait(timeout=30)
    audit = run_cli("-w", str(ws_path), "audit")  # opening catches the files up first
    assert audit.exit_code == 0, audit.stdout
    document, _ = on_disk(ws_path)
    assert len(document["proposals"]) > 8
    for status in ("pending", "approved"):
        in_folder = sorted(path.stem for path in (ws_path / "queue" / status).glob("*.json"))
        assert in_folder == sorted(r["id"] for r in document["proposals"] if r["status"] == status)
