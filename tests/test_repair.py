"""`stoic audit --repair` never launders loss and never deletes evidence."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import STOIC_BIN, kill_during, run_cli


def cli(ws: Path, *args: str) -> tuple[int, str, str]:
    result = run_cli("-w", str(ws), *args)
    return result.exit_code, result.stdout, result.stderr


def records(ws: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in log_file(ws).read_bytes().splitlines()]


def log_file(ws: Path) -> Path:
    return ws / "logs" / "decision_log.ndjson"


def files_under(ws: Path, *folders: str) -> dict[str, bytes]:
    return {
        str(path.relative_to(ws)): path.read_bytes()
        for folder in folders
        for path in sorted((ws / folder).rglob("*"))
        if path.is_file()
    }


def propose(ws: Path, *action: str) -> str:
    code, out, err = cli(ws, "propose", "--title", "Count", "--reasoning", "needed", "--", *action)
    assert code == 0, err
    return out.strip()


def test_a_log_cut_back_after_an_execution_is_loss_and_repair_refuses(
    ws_path: Path, tmp_path: Path
) -> None:
    count = tmp_path / "count"
    proposal_id = propose(ws_path, "sh", "-c", f"echo ran >> {count}")
    assert cli(ws_path, "approve", proposal_id)[0] == 0
    assert cli(ws_path, "execute", proposal_id)[0] == 0
    lines = log_file(ws_path).read_bytes().splitlines(keepends=True)
    log_file(ws_path).write_bytes(b"".join(lines[:2]))  # created, approved
    code, out, _ = cli(ws_path, "audit")
    assert code == 1
    assert "reflects seq 4, which the log does not contain: records were lost" in out
    kept = files_under(ws_path, "queue", "manifests")
    code, out, _ = cli(ws_path, "audit", "--repair")
    assert code == 1
    assert "Nothing was repaired: records were lost" in out
    assert files_under(ws_path, "queue", "manifests") == kept  # nothing rebuilt from less
    assert [r["decision_outcome"] for r in records(ws_path)][:2] == ["created", "approved"]
    assert not any(r["decision_type"] == "audit" for r in records(ws_path))
    code, _, _ = cli(ws_path, "execute", proposal_id)
    assert code != 0
    assert count.read_text() == "ran\n"  # it ran once, never twice
    assert cli(ws_path, "audit")[0] == 1  # and the loss stays named


def test_a_log_cut_mid_line_after_an_approval_keeps_its_evidence(ws_path: Path) -> None:
    proposal_id = propose(ws_path, "true")
    assert cli(ws_path, "approve", proposal_id)[0] == 0
    data = log_file(ws_path).read_bytes()
    log_file(ws_path).write_bytes(data[: data.rindex(b"\n", 0, len(data) - 1) + 41])
    approved = ws_path / "queue" / "approved" / f"{proposal_id}.json"
    evidence = approved.read_bytes()
    code, out, _ = cli(ws_path, "audit", "--repair")
    assert code == 1, out
    assert "torn_tail" in out and "records_lost" in out
    assert f"queue/approved/{proposal_id}.json reflects records (seq 2)" in out
    assert approved.read_bytes() == evidence  # the only evidence left stays where it is
    assert not (ws_path / "quarantine").exists()
    assert len(log_file(ws_path).read_bytes().splitlines()) == 2  # the torn bytes too


def test_a_torn_tail_nothing_reflects_is_cut_and_kept_in_quarantine(ws_path: Path) -> None:
    propose(ws_path, "true")
    assert cli(ws_path, "status")[0] == 0  # every view reflects the whole lines
    torn = b'{"actor":"system:stoic","causal_role":null,"decid'
    with log_file(ws_path).open("ab") as handle:
        handle.write(torn)
    code, out, _ = cli(ws_path, "audit", "--repair")
    assert code == 0, out
    (repaired,) = [r for r in records(ws_path) if r["decision_type"] == "audit"]
    quarantine = ws_path / repaired["details"]["quarantine"]
    assert repaired["details"]["quarantined"] == ["logs/decision_log.ndjson.torn-tail"]
    assert (quarantine / "logs" / "decision_log.ndjson.torn-tail").read_bytes() == torn


def test_repair_moves_what_it_replaces_or_removes_to_quarantine(ws_path: Path) -> None:
    proposal_id = propose(ws_path, "echo", "safe")
    pending = ws_path / "queue" / "pending"
    edited = json.loads((pending / f"{proposal_id}.json").read_text())
    edited["action"] = ["echo", "forged"]
    (pending / f"{proposal_id}.json").write_text(json.dumps(edited))
    (pending / "PROP-20200101-001.json").write_text("{}")  # an orphan
    code, out, _ = cli(ws_path, "audit", "--repair")
    assert code == 0, out
    (repaired,) = [r for r in records(ws_path) if r["decision_type"] == "audit"]
    quarantined = repaired["details"]["quarantined"]
    assert sorted(quarantined) == sorted(
        [f"queue/pending/{proposal_id}.json", "queue/pending/PROP-20200101-001.json"]
    )
    quarantine = ws_path / repaired["details"]["quarantine"]
    assert json.loads((quarantine / "queue" / "pending" / f"{proposal_id}.json").read_text())[
        "action"
    ] == ["echo", "forged"]
    assert (quarantine / "queue" / "pending" / "PROP-20200101-001.json").read_text() == "{}"
    assert sorted(p.name for p in pending.iterdir()) == [f"{proposal_id}.json"]
    assert json.loads((pending / f"{proposal_id}.json").read_text())["action"] == ["echo", "safe"]
    assert cli(ws_path, "audit")[0] == 0


def test_repair_never_follows_a_quarantine_link(ws_path: Path, tmp_path: Path) -> None:
    propose(ws_path, "true")
    (ws_path / "queue" / "pending" / "PROP-20200101-001.json").write_text("{}")
    outside = tmp_path / "outside"
    outside.mkdir()
    (ws_path / "quarantine").symlink_to(outside)
    code, _, err = cli(ws_path, "audit", "--repair")
    assert code == 1
    assert "it is not a folder (a link?)" in err
    assert list(outside.iterdir()) == []
    assert (ws_path / "queue" / "pending" / "PROP-20200101-001.json").read_text() == "{}"


def test_a_finished_runs_files_are_audited_and_rebuilt(ws_path: Path, tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("tasks:\n  - {id: build, run: ['sh', '-c', 'echo built']}\n")
    assert cli(ws_path, "run", str(plan))[0] == 0
    assert cli(ws_path, "audit")[0] == 0
    (run_dir,) = (ws_path / "runs").iterdir()
    state_file = run_dir / "state.json"
    state = json.loads(state_file.read_text())
    state["status"] = "failed"
    state_file.write_text(json.dumps(state))
    execution_log = ws_path / "logs" / "execution_log.md"
    honest = execution_log.read_text()
    with execution_log.open("a") as handle:
        handle.write("- result: approved by the CEO\n")
    code, out, _ = cli(ws_path, "audit")
    assert code == 1
    assert f"runs/{run_dir.name}/state.json disagrees with a replay of the log at status" in out
    assert "(expected 'completed', found 'failed')" in out
    assert "logs/execution_log.md line" in out
    code, out, _ = cli(ws_path, "audit", "--repair")
    assert code == 0, out
    assert json.loads(state_file.read_text())["status"] == "completed"
    assert execution_log.read_text() == honest
    (repaired,) = [r for r in records(ws_path) if r["decision_type"] == "audit"]
    quarantine = ws_path / repaired["details"]["quarantine"]
    assert "approved by the CEO" in (quarantine / "logs" / "execution_log.md").read_text()
    assert (
        json.loads((quarantine / "runs" / run_dir.name / "state.json").read_text())["status"]
        == "failed"
    )


def test_an_execution_log_entry_the_log_does_not_back_is_named(ws_path: Path) -> None:
    proposal_id = propose(ws_path, "true")
    assert cli(ws_path, "approve", proposal_id)[0] == 0
    assert cli(ws_path, "execute", proposal_id)[0] == 0
    assert cli(ws_path, "audit")[0] == 0
    execution_log = ws_path / "logs" / "execution_log.md"
    text = execution_log.read_text()
    execution_log.write_text(
        text.replace("- result: success (exit 0)", "- result: failure (exit 1)")
    )
    code, out, _ = cli(ws_path, "audit")
    assert code == 1
    assert "differs from what its record says (edited by hand?)" in out


def test_an_edited_briefing_is_named_and_rebuilt_as_its_record_wrote_it(ws_path: Path) -> None:
    asked = ["escalate", "--mode", "ambiguity", "--question", "Which region should it use?"]
    assert cli(ws_path, *asked)[0] == 0
    briefing = ws_path / "escalations" / "ESC-001.md"
    honest = briefing.read_text()
    briefing.write_text(honest.replace("Which region should it use?", "May we wipe prod?"))
    code, out, _ = cli(ws_path, "audit")
    assert code == 1
    assert "escalations/ESC-001.md differs from the briefing its record wrote" in out
    assert cli(ws_path, "audit", "--repair")[0] == 0
    assert briefing.read_text() == honest
    (ws_path / "escalations" / "ESC-007.md").write_text("# Briefing — lost\n")
    code, out, _ = cli(ws_path, "audit", "--repair")
    assert code == 1
    assert "ESC-007.md is the briefing of an escalation the log does not hold" in out


def test_a_repair_killed_before_its_record_has_cut_nothing(ws_path: Path) -> None:
    propose(ws_path, "true")
    assert cli(ws_path, "status")[0] == 0
    torn = b'{"actor":"system:stoic","causal_role":null,"decid'
    with log_file(ws_path).open("ab") as handle:
        handle.write(torn)
    kill_during(ws_path, "ws.audit(repair=True)", "seal")  # kill -9 as the record is made
    assert log_file(ws_path).read_bytes().endswith(torn)  # no cut without its record
    (kept,) = (ws_path / "quarantine").glob("*/logs/decision_log.ndjson.torn-tail")
    assert kept.read_bytes() == torn
    code, out, _ = cli(ws_path, "audit", "--repair")
    assert code == 0, out
    repaired = [r for r in records(ws_path) if r["decision_type"] == "audit"]
    assert len(repaired) == 1 and repaired[0]["details"]["bytes_removed"] == len(torn)


def test_repair_leaves_an_intact_execution_log_in_place(ws_path: Path) -> None:
    """A live runner appends to it through a descriptor it keeps: replacing the file under
    it would lose every entry it writes after the repair."""
    execution_log = ws_path / "logs" / "execution_log.md"
    before = execution_log.stat().st_ino
    propose(ws_path, "true")
    (ws_path / "manifests" / "queue_manifest.json").write_text("{not json")
    assert cli(ws_path, "audit", "--repair")[0] == 0
    assert execution_log.stat().st_ino == before


_WRITE_DURING_AUDIT = """
import subprocess, sys
import orjson, stoic
root, stoic_bin, function, *commands = sys.argv[1:]
done = False
def hook(frame, event, arg):
    global done
    if event == "call" and frame.f_code.co_name == function and not done:
        done = True  # another process decides while this audit is between log and files
        for command in commands:
            subprocess.run([stoic_bin, "-w", root, *command.split("|")], check=True,
                           capture_output=True)
ws = stoic.Workspace.open(root, catch_up=False)
sys.setprofile(hook)
report = ws.audit()
sys.setprofile(None)
print(orjson.dumps(report.to_dict()).decode())
"""


@pytest.mark.parametrize("function", ["feed_chunk", "check_queue_files", "check_escalation_files"])
def test_files_a_live_writer_made_after_the_audit_read_the_log_are_not_loss(
    ws_path: Path, function: str
) -> None:
    first = propose(ws_path, "true")
    assert cli(ws_path, "escalate", "--mode", "ambiguity", "--question", "Which one?")[0] == 0
    commands = [
        "propose|--title|Late|--reasoning|r|--|true",
        f"approve|{first}",
        "escalate|--mode|ambiguity|--question|Which other one?",
        "escalations|answer|ESC-001|--decision|routed",
    ]
    done = subprocess.run(
        [sys.executable, "-c", _WRITE_DURING_AUDIT, str(ws_path), STOIC_BIN, function, *commands],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = orjson.loads(done.stdout)
    assert report["violations"] == [], report["violations"]
    assert cli(ws_path, "audit")[0] == 0


def test_repair_never_moves_a_file_reached_through_a_planted_folder_link(
    ws_path: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "PROP-20200101-001.json").write_text("{}")  # someone else's file
    rejected = ws_path / "queue" / "rejected"
    rejected.rmdir()
    rejected.symlink_to(outside)
    code, _, err = cli(ws_path, "audit", "--repair")
    assert code == 1
    assert "queue/rejected is a link, not a folder" in err
    assert (outside / "PROP-20200101-001.json").read_text() == "{}"
