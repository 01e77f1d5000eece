"""What `--json` prints: a run's final state (what waits on which proposal or escalation, what
failed and what blocks what), what a decision recorded, and errors that stay one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from tests.conftest import STOIC_BIN, run_cli, run_stoic_process

PLAN = """\
meta: {name: nightly}
tasks:
  - {id: build, run: ["true"]}
  - {id: deploy, run: ["true"], depends_on: [build], approval: required}
  - {id: broken, run: ["false"]}
  - {id: after, run: ["true"], depends_on: [broken]}
"""


def _json(ws: Path, *args: str, code: int = 0) -> Any:
    """The document `stoic ARGS --json` prints (--json before a `--`, which ends the options)."""
    cut = args.index("--") if "--" in args else len(args)
    result = run_cli("-w", str(ws), *args[:cut], "--json", *args[cut:])
    assert result.exit_code == code, result.stderr
    return orjson.loads(result.stdout)


def _plan(tmp_path: Path, text: str = PLAN) -> str:
    path = tmp_path / "plan.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def _pending(ws: Path) -> list[str]:
    return [row["id"] for row in _json(ws, "queue", "--status", "pending")]


def test_run_json_is_the_final_state_with_the_proposal_a_task_waits_on(
    tmp_path: Path, ws_path: Path
) -> None:
    ran = run_stoic_process("-w", str(ws_path), "run", _plan(tmp_path), "--json")
    assert ran.returncode == 3, ran.stderr
    state = orjson.loads(ran.stdout)  # stdout is exactly one document
    (proposal,) = _pending(ws_path)
    assert state["status"] == "awaiting_human" and state["exit_code"] == 3
    assert state["plan"] == "nightly"
    assert state["tasks"]["build"] == {"status": "succeeded", "attempts": 1}
    assert state["tasks"]["deploy"] == {"status": "suspended", "attempts": 0}
    assert state["waiting"] == [
        {"task_id": "deploy", "proposal_id": proposal, "escalation_id": None}
    ]
    assert state["proposal_ids"] == [proposal] and state["escalation_ids"] == []
    assert state["failed"] == ["broken"]
    assert state["blocked"] == {"after": ["broken"]}
    assert "started build (attempt 1)" in ran.stderr  # the progress lines, out of the way


def test_the_plain_summary_of_a_waiting_run_names_the_proposal(
    tmp_path: Path, ws_path: Path
) -> None:
    ran = run_cli("-w", str(ws_path), "run", _plan(tmp_path))
    (proposal,) = _pending(ws_path)
    assert f"is waiting for a person: deploy ({proposal})." in ran.stdout
    run_id = ran.stdout.split("run ", 1)[1].split(":", 1)[0]
    shown = run_cli("-w", str(ws_path), "status", run_id)  # read back from the log alike
    assert f"deploy ({proposal})" in shown.stdout


def test_continue_json_after_the_approval_says_how_the_run_ended(
    tmp_path: Path, ws_path: Path
) -> None:
    run_id = _json(ws_path, "run", _plan(tmp_path), code=3)["run_id"]
    (proposal,) = _pending(ws_path)
    approved = _json(ws_path, "approve", proposal)
    assert approved["proposal_id"] == proposal and approved["status"] == "approved"
    state = _json(ws_path, "continue", run_id, code=1)
    assert state["run_id"] == run_id and state["status"] == "failed" and state["exit_code"] == 1
    assert state["tasks"]["deploy"] == {"status": "succeeded", "attempts": 1}
    assert state["waiting"] == [] and state["proposal_ids"] == []


def test_run_json_names_the_escalation_a_task_waits_on(tmp_path: Path, ws_path: Path) -> None:
    argv = orjson.dumps([STOIC_BIN, "escalate", "--mode", "ambiguity", "--question", "Which?"])
    plan = _plan(tmp_path, f"tasks:\n  - id: ask\n    run: {argv.decode()}\n")
    state = _json(ws_path, "run", plan, code=3)
    (escalation,) = [row["id"] for row in _json(ws_path, "escalations", "--open")]
    assert state["waiting"] == [
        {"task_id": "ask", "proposal_id": None, "escalation_id": escalation}
    ]
    assert state["escalation_ids"] == [escalation]


def _recorded(ws: Path) -> set[tuple[str, int]]:
    """(outcome, seq) of every proposal record in the log."""
    lines = run_cli("-w", str(ws), "log", "--type", "proposal", "--json").stdout.splitlines()
    return {(r["decision_outcome"], r["seq"]) for r in map(orjson.loads, lines)}


def test_a_decision_prints_the_seq_of_its_record(ws_path: Path) -> None:
    proposal = _json(ws_path, "propose", "--title", "t", "--reasoning", "r", "--", "false")["id"]
    deferred = _json(ws_path, "defer", proposal)
    undeferred = _json(ws_path, "undefer", proposal)
    approved = _json(ws_path, "approve", proposal, "--reason", "fine")
    assert approved["proposal"]["decision"]["reason"] == "fine"
    failed = _json(ws_path, "execute", proposal, code=1)  # the command fails: exit 1, still JSON
    assert failed["status"] == "executed" and failed["exit_code"] == 1
    assert {
        ("deferred", deferred["seq"]),
        ("undeferred", undeferred["seq"]),
        ("approved", approved["seq"]),
        ("executed", failed["seq"]),
    } <= _recorded(ws_path)


def test_stop_says_whether_it_recorded_a_pause_and_resume_its_record(ws_path: Path) -> None:
    first = _json(ws_path, "stop", "--reason", "look at the deploy")
    again = _json(ws_path, "stop", "--reason", "again")
    assert first["recorded"] is True and again["recorded"] is False
    assert again["paused"] == first["paused"]
    assert first["paused"]["reason"] == "look at the deploy"
    resumed = _json(ws_path, "resume", "--procedure", "manual-verification", "--reason", "ok")
    assert resumed["seq"] == first["paused"]["seq"] + 1 and resumed["decision_id"]


def test_flag_calibrate_and_incident_print_what_they_recorded(ws_path: Path) -> None:
    for count in (1, 2):
        flagged = _json(ws_path, "flag", "rushed")
        assert flagged == {"signal": "rushed", "flags_since_resume": count, "paused": False}
    assert _json(ws_path, "flag", "rushed")["paused"] is True  # the third
    noted = _json(ws_path, "calibrate", "batches of 10 are too many")
    assert noted["file"] == "calibration_log.md" and noted["seq"] > 0
    incident = _json(ws_path, "incident", "new", "--severity", "minor", "--title", "slow")
    assert Path(incident["path"]).is_file() and incident["seq"] == noted["seq"] + 1
    reported = _json(ws_path, "incident", "report", "the site is down")
    assert reported["escalation_id"].startswith("ESC-") and reported["track_done"] is None


def test_init_json_names_the_workspace(tmp_path: Path) -> None:
    result = run_cli("init", str(tmp_path / "fresh"), "--json")
    created = orjson.loads(result.stdout)
    assert Path(created["settings"]).is_file() and created["workspace"] == str(tmp_path / "fresh")


def test_escalate_from_inside_a_task_says_it_was_requested(tmp_path: Path) -> None:
    result_file = tmp_path / "result.json"
    env = {"STOIC_RESULT": str(result_file), "STOIC_TASK_ID": "pick"}
    result = run_cli("escalate", "--mode", "ambiguity", "--question", "Which?", "--json", env=env)
    assert orjson.loads(result.stdout) == {
        "requested": True,
        "task_id": "pick",
        "mode": "ambiguity",
    }
    assert orjson.loads(result_file.read_bytes())["escalate"]["question"] == "Which?"


def test_an_error_in_json_mode_is_one_line_on_stderr_with_its_exit_code(ws_path: Path) -> None:
    plain = run_cli("-w", str(ws_path), "approve", "PROP-20260101-999")
    result = run_cli("-w", str(ws_path), "approve", "PROP-20260101-999", "--json")
    assert (result.exit_code, result.stderr) == (plain.exit_code, plain.stderr)
    assert result.exit_code != 0 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and "PROP-20260101-999" in result.stderr
