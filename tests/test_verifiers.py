"""Fail-open verifiers (DESIGN §10) and iterate loops (DESIGN §7) in real runs."""

from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stoic.core.verification import Severity, convergence, failure_count, parse_report
from tests.conftest import STOIC_BIN, log_path, run_cli, run_stoic_process
from tests.test_recovery_runs import audit_clean, records_of, run_id_of
from tests.test_runner import _alive, _wait_for

REPORT = {
    "verification_report": {
        "findings": [
            {
                "id": "SEC-1",
                "severity": "high",
                "category": "security",
                "description": "SQL built by string concatenation in export.py",
                "recommendation": "use bound parameters",
            },
            {
                "id": "DOC-2",
                "severity": "info",
                "category": "docs",
                "description": "README not updated",
                "recommendation": "",
            },
        ]
    }
}


def run(ws: Path, folder: Path, plan: str) -> tuple[int, str, str]:
    (folder / "plan.yaml").write_text(plan)
    result = run_cli("-w", str(ws), "run", str(folder / "plan.yaml"))
    return result.exit_code, result.stdout, result.stderr


def state(ws: Path) -> dict[str, object]:
    data: dict[str, object] = orjson.loads(
        (ws / "runs" / run_id_of(ws) / "state.json").read_bytes()
    )
    return data


def task_state(ws: Path, task: str) -> dict[str, object]:
    tasks = state(ws)["tasks"]
    assert isinstance(tasks, dict)
    entry: dict[str, object] = tasks[task]
    return entry


def verifier_plan(verify: str, *, extra: str = "") -> str:
    return (
        "tasks:\n  - id: build\n    run: ['true']\n    verify:\n"
        + verify
        + "  - id: after\n    run: ['true']\n    depends_on: [build]\n"
        + extra
    )


# -- the pure core -------------------------------------------------------------------------


def test_report_status_follows_the_severities() -> None:
    report = parse_report(REPORT)
    assert report.status == "WARN" and report.counts["high"] == 1
    assert [f.id for f in report.blocking] == ["SEC-1"]
    critical = {"verification_report": {"findings": [{"severity": "critical", "description": "x"}]}}
    assert parse_report(critical).status == "FAIL"
    assert parse_report({"verification_report": {"findings": []}}).status == "PASS"
    for bad, why in (
        ([], "expected"),
        ({"verification_report": {"findings": {}}}, "must be a list"),
        ({"verification_report": {"findings": [{"severity": "urgent"}]}}, "severity 'urgent'"),
        ({"verification_report": {"findings": [{"severity": "info"}]}}, "no description"),
    ):
        with pytest.raises(ValueError, match=why):
            parse_report(bad)


@given(st.lists(st.sampled_from(list(Severity)), max_size=6))
def test_fail_iff_critical_warn_iff_warning_or_high(severities: list[Severity]) -> None:
    findings = [{"severity": s.value, "description": "d"} for s in severities]
    status = parse_report({"verification_report": {"findings": findings}}).status
    if Severity.CRITICAL in severities:
        assert status == "FAIL"
    elif Severity.WARNING in severities or Severity.HIGH in severities:
        assert status == "WARN"
    else:
        assert status == "PASS"


def test_convergence_rules() -> None:
    assert convergence([3, 1, 0], max_iterations=3, stall_after=None).converged
    assert convergence([3, 2], max_iterations=3, stall_after=None).go_on
    bound = convergence([3, 2, 1], max_iterations=3, stall_after=None)
    assert not bound.go_on and "3 iterations (the bound)" in bound.why
    stalled = convergence([4, 4, 4], max_iterations=10, stall_after=2)
    assert not stalled.go_on and "not dropped for 2 iterations" in stalled.why
    assert convergence([4, 3, 3], max_iterations=10, stall_after=2).go_on
    assert not convergence([None, None], max_iterations=10, stall_after=2).go_on
    assert failure_count({"failures": 4}, 1) == 4
    assert failure_count(None, 0) == 0 and failure_count(None, 1) is None
    assert failure_count({"failures": True}, 0) == 0


@given(
    st.lists(st.integers(min_value=1, max_value=9) | st.none(), min_size=1, max_size=12),
    st.integers(min_value=1, max_value=12),
    st.none() | st.integers(min_value=1, max_value=5),
)
def test_a_loop_always_ends_within_its_bound(
    counts: list[int | None], bound: int, stall: int | None
) -> None:
    verdicts = [
        convergence(counts[: n + 1], max_iterations=bound, stall_after=stall)
        for n in range(len(counts))
    ]
    stops = [n for n, verdict in enumerate(verdicts) if not verdict.go_on]
    if len(counts) >= bound:
        assert stops and stops[0] < bound


# -- tiers ---------------------------------------------------------------------------------


def test_tier_1_a_verifier_whose_agent_file_is_not_there_is_skipped_silently(
    tmp_path: Path, ws_path: Path
) -> None:
    code, out, err = run(
        ws_path,
        tmp_path,
        verifier_plan(
            "      - id: lint\n        agent: code-reviewer\n"
            "        agent_file: .claude/agents/lint.md\n"
        ),
    )
    assert code == 0
    assert "WARNING" not in err and "WARNING" not in out
    assert "verifications" not in task_state(ws_path, "build")
    (absent,) = records_of(ws_path, "build", "verification", "absent")
    assert absent["details"]["verifier"] == "lint"
    audit_clean(ws_path)


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        ("['no-such-linter-xyz', '-x']", "command not found: no-such-linter-xyz"),
        ("'shellchek -x build.sh'", "command not found: shellchek"),
        ("'LANG=C shellchek build.sh'", "command not found: shellchek"),
    ],
)
def test_a_verifier_whose_program_is_not_found_is_incomplete_not_silent(
    tmp_path: Path, ws_path: Path, command: str, reason: str
) -> None:
    plan = verifier_plan(f"      - id: lint\n        run: {command}\n")
    code, out, err = run(ws_path, tmp_path, plan)
    assert code == 0  # fail-open: the work goes on
    assert f"WARNING: verifier lint of task build could not verify: {reason}" in err
    assert f"lint was skipped ({reason})" in out
    entry = task_state(ws_path, "build")["verifications"]["lint"]  # type: ignore[index]
    assert entry == {"status": "skipped", "reason": reason}
    (incomplete,) = records_of(ws_path, "build", "verification", "incomplete")
    assert incomplete["details"]["reason"] == reason
    assert not records_of(ws_path, "build", "verification", "absent")
    audit_clean(ws_path)


@pytest.mark.parametrize(
    ("command", "outcome", "reason"),
    [
        ("'exit 7'", "incomplete", "exit status 7"),
        ("'true; no-such-tool-xyz'", "incomplete", "command not found (exit status 127"),
        ("'echo ''{\"verification_report\": {\"findings\": []}}'' | cat'", "passed", None),
    ],
)
def test_a_verifier_run_string_runs_through_the_shell(
    tmp_path: Path, ws_path: Path, command: str, outcome: str, reason: str | None
) -> None:
    code, _, _ = run(ws_path, tmp_path, verifier_plan(f"      - id: sh\n        run: {command}\n"))
    assert code == 0
    (record,) = records_of(ws_path, "build", "verification", outcome)
    if reason is not None:
        assert reason in str(record["details"]["reason"])
    audit_clean(ws_path)


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        ("['sh', '-c', 'echo broken >&2; exit 3']", "exit status 3"),
        ("['sh', '-c', 'echo this is not json']", "not a report: its output is not JSON"),
        ("['sh', '-c', 'echo {\"verification_report\": 1}']", "not a report"),
    ],
)
def test_tiers_2_and_3_warn_and_the_work_goes_on(
    tmp_path: Path, ws_path: Path, command: str, reason: str
) -> None:
    code, out, err = run(
        ws_path, tmp_path, verifier_plan(f"      - id: cross-check\n        run: {command}\n")
    )
    assert code == 0  # fail-open: the run completes
    assert "WARNING: verifier cross-check of task build could not verify" in err
    assert reason in err
    assert f"WARNING: verification incomplete for build: cross-check was skipped ({reason}" in out
    build = task_state(ws_path, "build")
    assert build["verification_status"] == "incomplete"
    entry = build["verifications"]["cross-check"]  # type: ignore[index]
    assert entry["status"] == "skipped" and reason in entry["reason"]
    assert build["attempts"] == 1  # no retry
    assert task_state(ws_path, "after")["status"] == "succeeded"
    (incomplete,) = records_of(ws_path, "build", "verification", "incomplete")
    assert reason in str(incomplete["details"]["reason"])
    audit_clean(ws_path)


def test_a_hanging_verifier_is_given_up_at_its_timeout(tmp_path: Path, ws_path: Path) -> None:
    started = time.monotonic()
    code, _, err = run(
        ws_path,
        tmp_path,
        verifier_plan("      - id: slow\n        run: ['sleep', '300']\n        timeout: 0.5\n"),
    )
    assert code == 0 and time.monotonic() - started < 120  # not the 300 s it would sleep
    assert "timed out after 0.5s" in err
    assert task_state(ws_path, "build")["verification_status"] == "incomplete"


def test_a_valid_report_is_stored_with_counts(tmp_path: Path, ws_path: Path) -> None:
    (tmp_path / "report.json").write_bytes(orjson.dumps(REPORT))
    code, out, err = run(
        ws_path,
        tmp_path,
        verifier_plan("      - id: review\n        run: ['cat', 'report.json']\n"),
    )
    assert code == 0 and "WARNING" not in err
    assert "verifier review of build reported WARN (1 high, 1 info)" in out  # never silent
    entry = task_state(ws_path, "build")["verifications"]["review"]  # type: ignore[index]
    assert entry["status"] == "WARN"
    assert entry["counts"] == {"critical": 0, "high": 1, "warning": 0, "info": 1}
    assert entry["duration_s"] >= 0
    (warned,) = records_of(ws_path, "build", "verification", "warned")
    assert warned["details"]["findings"][0]["id"] == "SEC-1"


def test_a_report_written_to_stoic_report(tmp_path: Path, ws_path: Path) -> None:
    (tmp_path / "report.json").write_bytes(orjson.dumps({"verification_report": {"findings": []}}))
    verify = (
        "      - id: r\n        run: ['sh', '-c', 'echo chatter; cp report.json $STOIC_REPORT']\n"
    )
    assert run(ws_path, tmp_path, verifier_plan(verify))[0] == 0
    entry = task_state(ws_path, "build")["verifications"]["r"]  # type: ignore[index]
    assert entry["status"] == "PASS"


def test_a_gate_with_a_high_finding_blocks_and_escalates(tmp_path: Path, ws_path: Path) -> None:
    (tmp_path / "report.json").write_bytes(orjson.dumps(REPORT))
    verify = "      - id: security\n        run: ['cat', 'report.json']\n        gate: true\n"
    code, _, _ = run(ws_path, tmp_path, verifier_plan(verify))
    assert code == 3
    assert task_state(ws_path, "build")["status"] == "suspended"
    assert task_state(ws_path, "after")["status"] == "pending"
    (raised,) = records_of(ws_path, "build", "escalation", "raised")
    assert raised["details"]["mode"] == "security-alert"
    briefing = (ws_path / "escalations" / "ESC-001.md").read_text()
    assert "[high] SEC-1: SQL built by string concatenation" in briefing
    risks = briefing.split("## Risks or Concerns")[1].split("## To Proceed")[0]
    assert "SEC-1" in risks
    audit_clean(ws_path)


def test_a_non_gate_failure_does_not_block(tmp_path: Path, ws_path: Path) -> None:
    critical = {"verification_report": {"findings": [{"severity": "critical", "description": "x"}]}}
    (tmp_path / "report.json").write_bytes(orjson.dumps(critical))
    verify = "      - id: advisory\n        run: ['cat', 'report.json']\n"
    assert run(ws_path, tmp_path, verifier_plan(verify))[0] == 0
    assert records_of(ws_path, "build", "verification", "failed")


def test_plan_verifiers_run_after_every_task(tmp_path: Path, ws_path: Path) -> None:
    plan = (
        "meta:\n  verify:\n    - {id: everywhere, run: ['sh', '-c', 'exit 1']}\n"
        "tasks:\n  - {id: a, run: ['true']}\n  - {id: b, run: ['true']}\n"
    )
    code, _, err = run(ws_path, tmp_path, plan)
    assert code == 0 and err.count("WARNING: verifier everywhere") == 2


# -- iterate loops -------------------------------------------------------------------------

COUNTER = (
    "n=$(cat n 2>/dev/null || echo 0); n=$((n+1)); echo $n > n;"
    ' echo "iteration $STOIC_ITERATION" >> seen'
)
CHECK = 'n=$(cat n); left=$(({start} - n)); [ $left -lt 0 ] && left=0; echo "{{\\"failures\\": $left}}" > $STOIC_RESULT'  # noqa: E501


def iterate_plan(check: str, **bounds: int) -> str:
    extra = "".join(f"      {key}: {value}\n" for key, value in bounds.items())
    return (
        f"tasks:\n  - id: fix\n    run: [sh, -c, {orjson.dumps(COUNTER).decode()}]\n"
        f"    iterate:\n      check: [sh, -c, {orjson.dumps(check).decode()}]\n{extra}"
    )


def test_a_loop_that_converges_is_one_attempt(tmp_path: Path, ws_path: Path) -> None:
    code, _, _ = run(ws_path, tmp_path, iterate_plan(CHECK.format(start=3), max_iterations=5))
    assert code == 0
    (ended,) = records_of(ws_path, "fix", "execution", "succeeded")
    assert [i["failures"] for i in ended["details"]["iterations"]] == [2, 1, 0]
    rounds = (tmp_path / "seen").read_text().splitlines()
    assert rounds == ["iteration 1", "iteration 2", "iteration 3"]
    assert not records_of(ws_path, "fix", "recovery_evaluation", "recovery_applied")
    audit_clean(ws_path)


def test_a_loop_that_hits_its_bound_escalates(tmp_path: Path, ws_path: Path) -> None:
    code, _, _ = run(ws_path, tmp_path, iterate_plan(CHECK.format(start=10), max_iterations=3))
    assert code == 3
    (failed,) = records_of(ws_path, "fix", "execution", "failed")
    assert failed["decision_inputs"]["failure_kind"] == "escalated"
    (raised,) = records_of(ws_path, "fix", "escalation", "raised")
    assert raised["details"]["mode"] == "convergence"
    briefing = (ws_path / "escalations" / "ESC-001.md").read_text()
    assert "Check failures per iteration: 9, 8, 7." in briefing
    audit_clean(ws_path)


def test_a_loop_whose_check_says_no_count_escalates_one_question(
    tmp_path: Path, ws_path: Path
) -> None:
    """A check that fails and prints nothing: its counts are unknown, and the escalation
    still asks one question (a `?` per unknown count made it two, and the run was stuck)."""
    plan = (
        "tasks:\n  - id: fix\n    run: ['true']\n"
        "    iterate: {check: ['false'], max_iterations: 2}\n"
    )
    code, _, err = run(ws_path, tmp_path, plan)
    assert code == 3, err
    (raised,) = records_of(ws_path, "fix", "escalation", "raised")
    assert "unknown, unknown" in str(raised["details"]["question"])
    assert run_cli("-w", str(ws_path), "continue", run_id_of(ws_path)).exit_code == 3
    audit_clean(ws_path)


def test_a_run_an_earlier_stoic_left_with_a_two_question_escalation_is_not_stuck(
    tmp_path: Path, ws_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An earlier stoic wrote `?` for each unknown count into a loop's question: its run
    died raising that escalation, and every `continue` after it did too."""
    from stoic.core import verification
    from stoic.run import stages

    def earlier(failures: list[int | None], **bounds: int | None) -> verification.Convergence:
        verdict = verification.convergence(failures, **bounds)  # type: ignore[arg-type]
        return replace(verdict, why=verdict.why.replace("unknown", "?"))

    monkeypatch.setattr(stages, "convergence", earlier)
    plan = (
        "tasks:\n  - id: fix\n    run: ['true']\n"
        "    iterate: {check: ['false'], max_iterations: 2}\n"
    )
    code, _, _ = run(ws_path, tmp_path, plan)
    assert code != 0  # how the earlier stoic ended: the escalation refused
    monkeypatch.undo()
    continued = run_cli("-w", str(ws_path), "continue", run_id_of(ws_path))
    assert continued.exit_code == 1, continued.stderr  # ends: the failure stands
    assert "internal error" not in continued.stderr
    assert f"`stoic retry {run_id_of(ws_path)} fix" in continued.stdout


def test_a_convergence_briefing_quotes_the_last_lines_of_the_last_iteration(
    tmp_path: Path, ws_path: Path
) -> None:
    talk = (
        "n=$(cat n 2>/dev/null || echo 0); n=$((n+1)); echo $n > n;"
        ' i=0; while [ $i -lt 30 ]; do i=$((i+1)); echo "round $n line $i"; done;'
        " printf 'evil \\033[2J end\\n'"
    )
    plan = (
        f"tasks:\n  - id: fix\n    run: [sh, -c, {orjson.dumps(talk).decode()}]\n"
        "    iterate:\n      check: [sh, -c, 'echo ''{\"failures\": 5}'' > $STOIC_RESULT']\n"
        "      max_iterations: 2\n"
    )
    code, _, _ = run(ws_path, tmp_path, plan)
    assert code == 3
    briefing = (ws_path / "escalations" / "ESC-001.md").read_text()
    assert "The last lines it wrote (iteration 2, runs/" in briefing
    assert ".iteration-2.log):" in briefing
    quoted = [line for line in briefing.splitlines() if line.startswith("- > ")]
    assert len(quoted) == 20  # QUOTED_LINES: the last ones, of the last iteration only
    assert quoted[0] == "- > round 2 line 12" and quoted[-2] == "- > round 2 line 30"
    assert quoted[-1] == "- > evil \\x1b[2J end"  # escaped, never raw
    assert "\x1b" not in briefing and "round 1 line" not in briefing


def test_a_loop_that_stalls_escalates_early(tmp_path: Path, ws_path: Path) -> None:
    stuck = "echo '{\"failures\": 4}' > $STOIC_RESULT"
    code, _, _ = run(ws_path, tmp_path, iterate_plan(stuck, max_iterations=10, stall_after=2))
    assert code == 3
    (failed,) = records_of(ws_path, "fix", "execution", "failed")
    assert len(failed["details"]["iterations"]) == 3
    assert "not dropped for 2 iterations" in str(failed["decision_reason"])


def test_log_has_every_check(tmp_path: Path, ws_path: Path) -> None:
    run(ws_path, tmp_path, iterate_plan(CHECK.format(start=2), max_iterations=5))
    assert b'"iterations"' in log_path(ws_path).read_bytes()


# -- stopping and killing mid-stage --------------------------------------------------------


def _start(tmp_path: Path, ws: Path, plan: str) -> subprocess.Popen[str]:
    (tmp_path / "plan.yaml").write_text(plan)
    return subprocess.Popen(
        [STOIC_BIN, "-w", str(ws), "run", str(tmp_path / "plan.yaml")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _pid_in(path: Path) -> int:
    _wait_for(lambda: path.exists() and path.read_text().strip())
    return int(path.read_text())


HANGING_VERIFIER = (
    "tasks:\n  - id: build\n    run: ['true']\n    verify:\n"
    "      - {id: slow, run: [sh, -c, 'echo $$ > verifier.pid; exec sleep 60']}\n"
)


def test_sigkill_during_a_verifier_then_continue_kills_it_and_records_interrupted(
    tmp_path: Path, ws_path: Path
) -> None:
    runner = _start(tmp_path, ws_path, HANGING_VERIFIER)
    verifier = _pid_in(tmp_path / "verifier.pid")
    runner.send_signal(signal.SIGKILL)
    runner.communicate(timeout=30)
    run_id = run_id_of(ws_path)
    result = run_stoic_process("-w", str(ws_path), "continue", run_id)
    assert not _alive(verifier)
    (interrupted,) = records_of(ws_path, "build", "execution", "interrupted")
    assert interrupted["details"]["leftover_processes_killed"] is True
    assert result.returncode in (0, 1), result.stdout + result.stderr
    audit_clean(ws_path)


def test_ctrl_c_during_an_iterate_check_stops_it(tmp_path: Path, ws_path: Path) -> None:
    plan = (
        "tasks:\n  - id: fix\n    run: ['true']\n    idempotent: true\n    iterate:\n"
        "      check: [sh, -c, 'echo $$ > check.pid; exec sleep 60']\n"
    )
    runner = _start(tmp_path, ws_path, plan)
    check = _pid_in(tmp_path / "check.pid")
    runner.send_signal(signal.SIGINT)
    out, err = runner.communicate(timeout=30)
    assert runner.returncode == 130, out + err
    assert not _alive(check)
    (interrupted,) = records_of(ws_path, "fix", "execution", "interrupted")
    assert interrupted["decision_inputs"]["failure_kind"] == "interrupted"
    assert "stopped by the runner" in interrupted["decision_reason"]
    audit_clean(ws_path)


def test_ctrl_c_during_a_verifier_leaves_every_verifier_incomplete_and_says_why(
    tmp_path: Path, ws_path: Path
) -> None:
    plan = HANGING_VERIFIER + "      - {id: lint, run: ['true']}\n"
    runner = _start(tmp_path, ws_path, plan)
    verifier = _pid_in(tmp_path / "verifier.pid")
    runner.send_signal(signal.SIGINT)
    out, err = runner.communicate(timeout=30)
    # The task itself succeeded and verifiers fail open: the run is complete, and says what
    # was not verified.
    assert runner.returncode == 0, out + err
    assert "WARNING: verification incomplete for build: slow was skipped" in out + err
    assert not _alive(verifier)
    entry = task_state(ws_path, "build")
    assert entry["verification_status"] == "incomplete"
    verifications = entry["verifications"]
    assert isinstance(verifications, dict)
    reasons = {name: (v["status"], v["reason"]) for name, v in verifications.items()}
    assert reasons == {
        "slow": ("skipped", "stopped with the run"),
        "lint": ("skipped", "the run was stopped before it ran"),
    }
    audit_clean(ws_path)
