"""The fifteen recovery scenarios, each end to end through `stoic run`, then a clean audit."""

from __future__ import annotations

import signal
import subprocess
import threading
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import orjson
import pytest

from stoic.core.timeline import MECHANICS
from tests.conftest import STOIC_BIN, log_path, run_cli, run_stoic_process
from tests.test_runner import _alive, _wait_for

FAST = "[recovery]\ntimeout_retry_delay_seconds = 0.1\nunavailable_retry_delay_seconds = 0.1\n"


@pytest.fixture
def fast_ws(ws_path: Path) -> Path:
    (ws_path / "stoic.toml").write_text(FAST)
    return ws_path


def run_plan(ws: Path, folder: Path, body: str, *extra: str) -> int:
    (folder / "plan.yaml").write_text(body)
    return run_cli("-w", str(ws), "run", str(folder / "plan.yaml"), *extra).exit_code


def story(ws: Path, task: str) -> list[str]:
    """The task's records as `type/outcome`, in order."""
    lines = log_path(ws).read_bytes().splitlines()
    return [
        f"{r['decision_type']}/{r['decision_outcome']}"
        for r in map(orjson.loads, lines)
        if r.get("task_id") == task
    ]


def records_of(ws: Path, task: str, kind: str, outcome: str) -> list[dict[str, object]]:
    lines = log_path(ws).read_bytes().splitlines()
    return [
        r
        for r in map(orjson.loads, lines)
        if r.get("task_id") == task
        and r["decision_type"] == kind
        and r["decision_outcome"] == outcome
    ]


def audit_clean(ws: Path) -> None:
    result = run_cli("-w", str(ws), "audit")
    assert result.exit_code == 0, result.stdout


def run_id_of(ws: Path) -> str:
    (run,) = [p.name for p in (ws / "runs").iterdir()]
    return run


FLAKY_TIMEOUT = """
tasks:
  - id: t
    run: ["sh", "-c", "if [ -f marker ]; then exit 0; fi; touch marker; sleep 30"]
    idempotent: true
    timeout: 0.3
"""


def test_1_timeout_on_idempotent_task_is_retried_once_and_succeeds(
    tmp_path: Path, fast_ws: Path
) -> None:
    assert run_plan(fast_ws, tmp_path, FLAKY_TIMEOUT) == 0
    assert story(fast_ws, "t") == [
        "execution/started",
        "execution/failed",
        "recovery_evaluation/recovery_applied",
        "execution/started",
        "execution/succeeded",
    ]
    (evaluation,) = records_of(fast_ws, "t", "recovery_evaluation", "recovery_applied")
    assert evaluation["decision_source"] == "system"
    assert evaluation["decision_trigger"] == "reactive"
    assert evaluation["causal_role"] == "post_run"
    assert evaluation["decision_reason"].startswith("R1: ")
    inputs = evaluation["decision_inputs"]
    assert (inputs["failure_kind"], inputs["attempt"]) == ("timeout", 1)
    assert (inputs["recovery_class"], inputs["recovery_action"]) == ("R1", "retry")
    first, second = records_of(fast_ws, "t", "execution", "started")
    assert first["attempt_id"] != second["attempt_id"]
    assert first["request_id"] == second["request_id"] and first["run_id"] == second["run_id"]
    assert second["decision_inputs"]["attempt_kind"] == "automatic_retry"
    audit_clean(fast_ws)


def test_2_a_failed_retry_becomes_a_suggestion_and_the_run_waits(
    tmp_path: Path, fast_ws: Path
) -> None:
    body = 'tasks:\n  - {id: t, run: ["sleep", "30"], idempotent: true, timeout: 0.2}\n'
    assert run_plan(fast_ws, tmp_path, body) == 3
    assert story(fast_ws, "t")[-4:] == [
        "execution/started",
        "execution/failed",
        "recovery_evaluation/recovery_suggested",
        "proposal/created",  # the suggestion waits in the review queue
    ]
    (suggested,) = records_of(fast_ws, "t", "recovery_evaluation", "recovery_suggested")
    assert suggested["decision_reason"] == "R2: R1 exhausted, manual intervention suggested"
    suggestion = suggested["details"]["suggestion"]
    assert {"what_failed", "suggested", "trade_off"} <= set(suggestion)
    state = orjson.loads((fast_ws / "runs" / run_id_of(fast_ws) / "state.json").read_bytes())
    assert state["status"] == "awaiting_human"
    assert state["tasks"]["t"]["status"] == "suspended"
    audit_clean(fast_ws)


TOOL_ERROR = """
tasks:
  - id: t
    run: ["sh", "-c", "echo '{\\"failure\\": {\\"kind\\": \\"tool_error\\"}}' > $STOIC_RESULT;
      exit 1"]
"""


def test_3_tool_error_is_suggested_without_a_retry(tmp_path: Path, fast_ws: Path) -> None:
    assert run_plan(fast_ws, tmp_path, TOOL_ERROR) == 3
    assert story(fast_ws, "t") == [
        "execution/started",
        "execution/failed",
        "recovery_evaluation/recovery_suggested",
        "proposal/created",
    ]
    audit_clean(fast_ws)


def test_4_policy_violation_halts_before_the_command_runs(tmp_path: Path, fast_ws: Path) -> None:
    (fast_ws / "stoic.toml").write_text(FAST + '[policy]\nforbidden_commands = ["rm -rf"]\n')
    body = 'tasks:\n  - {id: t, run: ["sh", "-c", "touch ran; rm -rf nothing"]}\n'
    assert run_plan(fast_ws, tmp_path, body) == 1
    assert not (tmp_path / "ran").exists()
    assert story(fast_ws, "t") == [
        "policy_check/blocked",
        "execution/halted",
        "recovery_evaluation/recovery_skipped",
    ]
    (skipped,) = records_of(fast_ws, "t", "recovery_evaluation", "recovery_skipped")
    assert skipped["decision_reason"].startswith("R3: policy violation")
    assert "rm -rf" in skipped["decision_reason"]
    audit_clean(fast_ws)


def test_4b_plan_policy_narrows_executors(tmp_path: Path, fast_ws: Path) -> None:
    body = (
        "meta: {policy: {allowed_executors: [python]}}\n"
        'tasks:\n  - {id: t, run: ["touch", "ran"]}\n'
    )
    assert run_plan(fast_ws, tmp_path, body) == 1
    assert not (tmp_path / "ran").exists()
    (blocked,) = records_of(fast_ws, "t", "policy_check", "blocked")
    assert "executor 'shell' is not allowed" in blocked["decision_inputs"]["rule"]


def test_5_exhausted_budget_is_skipped(tmp_path: Path, fast_ws: Path) -> None:
    body = (
        "tasks:\n"
        '  - {id: t, run: ["sleep", "30"], idempotent: true, timeout: 0.2,'
        " budget: {max_attempts: 1}}\n"
    )
    assert run_plan(fast_ws, tmp_path, body) == 1
    # The budget forbids the retry, so the one evaluation says so at the failure: no R1 on
    # record for a retry that could never start.
    assert story(fast_ws, "t") == [
        "execution/started",
        "execution/failed",
        "recovery_evaluation/recovery_skipped",
    ]
    skipped = records_of(fast_ws, "t", "recovery_evaluation", "recovery_skipped")[0]
    assert skipped["decision_reason"].startswith("R3: timeout, and the attempt a recovery needs")
    assert "task budget max_attempts=1 used up (1 made)" in skipped["decision_reason"]
    assert skipped["decision_inputs"]["recovery_class"] == "R3"
    audit_clean(fast_ws)


def test_5e_a_run_budget_that_forbids_the_suggested_recovery_is_r3(
    tmp_path: Path, fast_ws: Path
) -> None:
    body = "meta: {budget: {max_attempts: 1}}\n" + TOOL_ERROR.lstrip()
    assert run_plan(fast_ws, tmp_path, body) == 1
    assert story(fast_ws, "t") == [
        "execution/started",
        "execution/failed",
        "recovery_evaluation/recovery_skipped",
    ]
    (skipped,) = records_of(fast_ws, "t", "recovery_evaluation", "recovery_skipped")
    assert "run budget max_attempts=1 used up (1 made)" in skipped["decision_reason"]
    assert list((fast_ws / "queue" / "pending").iterdir()) == []  # nothing to approve
    audit_clean(fast_ws)


def test_5f_a_retry_that_would_start_after_the_run_budget_ends_is_r3(
    tmp_path: Path, ws_path: Path
) -> None:
    (ws_path / "stoic.toml").write_text("[recovery]\ntimeout_retry_delay_seconds = 20\n")
    body = (
        "meta: {budget: {max_seconds: 10}}\n"
        'tasks:\n  - {id: t, run: ["sleep", "30"], idempotent: true, timeout: 0.2}\n'
    )
    assert run_plan(ws_path, tmp_path, body) == 1
    assert story(ws_path, "t") == [
        "execution/started",
        "execution/failed",
        "recovery_evaluation/recovery_skipped",
    ]
    (skipped,) = records_of(ws_path, "t", "recovery_evaluation", "recovery_skipped")
    assert "run budget max_seconds=10 used up" in skipped["decision_reason"]
    audit_clean(ws_path)


def test_5b_time_budget_stops_a_running_attempt(tmp_path: Path, fast_ws: Path) -> None:
    body = 'tasks:\n  - {id: t, run: ["sleep", "30"], budget: {max_seconds: 0.3}}\n'
    assert run_plan(fast_ws, tmp_path, body) == 1
    (failed,) = records_of(fast_ws, "t", "execution", "failed")
    assert failed["decision_inputs"]["failure_kind"] == "budget_exhausted"
    audit_clean(fast_ws)


def test_6_a_failed_human_approved_recovery_stands(tmp_path: Path, fast_ws: Path) -> None:
    assert run_plan(fast_ws, tmp_path, TOOL_ERROR) == 3
    run_id = run_id_of(fast_ws)
    refused = run_cli("-w", str(fast_ws), "continue", run_id, "--approve-suggestion", "nope")
    assert refused.exit_code == 2 and "suspended tasks: t" in refused.stderr
    result = run_cli(
        "-w", str(fast_ws), "continue", run_id, "--approve-suggestion", "t", "--as", "ada"
    )
    assert result.exit_code == 1
    assert story(fast_ws, "t")[4:] == [
        "proposal/approved",
        "execution/started",
        "execution/failed",
        "recovery_evaluation/recovery_skipped",
    ]
    (approved,) = records_of(fast_ws, "t", "proposal", "approved")
    assert approved["actor"] == "human:ada" and approved["decision_source"] == "human"
    assert approved["proposal_id"]  # the suggestion's proposal was approved, not a side channel
    second = records_of(fast_ws, "t", "execution", "started")[1]
    assert second["decision_inputs"]["recovery_approved_by"] == "human:ada"
    skipped = records_of(fast_ws, "t", "recovery_evaluation", "recovery_skipped")[0]
    assert "loop prevention" in skipped["decision_reason"]
    audit_clean(fast_ws)


def test_7_success_has_no_recovery_evaluation(tmp_path: Path, fast_ws: Path) -> None:
    assert run_plan(fast_ws, tmp_path, 'tasks:\n  - {id: t, run: ["true"]}\n') == 0
    assert not any("recovery_evaluation" in line for line in story(fast_ws, "t"))
    audit_clean(fast_ws)


def test_8_plain_error_has_no_applicable_recovery(tmp_path: Path, fast_ws: Path) -> None:
    assert run_plan(fast_ws, tmp_path, 'tasks:\n  - {id: t, run: ["false"]}\n') == 1
    (skipped,) = records_of(fast_ws, "t", "recovery_evaluation", "recovery_skipped")
    assert skipped["decision_reason"] == "none: no applicable recovery for error"
    audit_clean(fast_ws)


def test_9_operator_timeline_has_every_record_in_order(tmp_path: Path, fast_ws: Path) -> None:
    assert run_plan(fast_ws, tmp_path, FLAKY_TIMEOUT) == 0
    run_id = run_id_of(fast_ws)
    document = orjson.loads(run_cli("-w", str(fast_ws), "timeline", run_id, "--json").stdout)
    in_log = [
        r["seq"]
        for r in map(orjson.loads, log_path(fast_ws).read_bytes().splitlines())
        if r.get("run_id") == run_id
    ]
    assert [entry["seq"] for entry in document["records"]] == in_log
    attempts = document["tasks"]["t"]
    assert [group["attempt"] for group in attempts] == [1, 2]
    assert [e["class"] for e in attempts[0]["records"]] == [None, None, "R1"]
    reconciled = document["reconciliation"]["tasks"]["t"]
    assert reconciled["original_failure"]["failure_kind"] == "timeout"
    assert reconciled["recovery_class"] == "R1"
    assert reconciled["recovery_applied"] is True and reconciled["recovery_succeeded"] is True
    assert reconciled["final_status"] == "succeeded"
    text = run_cli("-w", str(fast_ws), "timeline", run_id).stdout
    assert "attempt 2" in text and "[R1]" in text
    state = orjson.loads((fast_ws / "runs" / run_id / "state.json").read_bytes())
    assert state["tasks"]["t"]["reconciliation"] == reconciled


def test_10_customer_view_shows_final_statuses_and_no_mechanics(
    tmp_path: Path, fast_ws: Path
) -> None:
    body = (
        FLAKY_TIMEOUT + '  - {id: u, run: ["false"]}\n  - {id: v, run: ["true"], depends_on: [u]}\n'
    )
    assert run_plan(fast_ws, tmp_path, body) == 1
    run_id = run_id_of(fast_ws)
    result = run_cli("-w", str(fast_ws), "timeline", run_id, "--customer", "--json")
    document = orjson.loads(result.stdout)
    assert document == {
        "run": run_id,
        "status": "failed",
        "tasks": [
            {"task": "t", "name": "t", "status": "done"},
            {"task": "u", "name": "u", "status": "failed"},
            {
                "task": "v",
                "name": "v",
                "status": "not started: work it needs failed",
                "needs": ["u"],
            },
        ],
    }
    text = run_cli("-w", str(fast_ws), "timeline", run_id, "--customer").stdout
    assert not MECHANICS.search(text)
    assert "attempt" not in text.lower()


def test_11_every_retry_follows_its_decision(tmp_path: Path, fast_ws: Path) -> None:
    assert run_plan(fast_ws, tmp_path, FLAKY_TIMEOUT) == 0
    kinds = story(fast_ws, "t")
    second_start = [i for i, k in enumerate(kinds) if k == "execution/started"][1]
    assert kinds[second_start - 1] == "recovery_evaluation/recovery_applied"
    audit_clean(fast_ws)


class _Limited(BaseHTTPRequestHandler):
    calls: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        _Limited.calls.append(self.path)
        first = _Limited.calls.count(self.path) == 1
        if first and self.path == "/with-header":
            self.send_response(429)
            self.send_header("Retry-After", "2")
        elif self.path == "/without-header":
            self.send_response(429)
        else:
            self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        del format, args


@pytest.fixture
def limited_server() -> Iterator[str]:
    _Limited.calls = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Limited)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_12_http_429_with_retry_after_waits_then_retries(
    tmp_path: Path, fast_ws: Path, limited_server: str
) -> None:
    body = f'tasks:\n  - id: t\n    http: {{url: "{limited_server}/with-header"}}\n'
    assert run_plan(fast_ws, tmp_path, body) == 0
    failed = records_of(fast_ws, "t", "execution", "failed")[0]
    assert failed["decision_inputs"]["retry_after_s"] == 2
    applied = records_of(fast_ws, "t", "recovery_evaluation", "recovery_applied")[0]
    assert applied["decision_inputs"]["retry_delay_s"] == 2
    retry = records_of(fast_ws, "t", "execution", "started")[1]
    waited = datetime.fromisoformat(retry["decided_at"]) - datetime.fromisoformat(
        failed["decided_at"]
    )
    assert waited.total_seconds() >= 2
    audit_clean(fast_ws)


def test_13_http_429_without_retry_after_is_suggested(
    tmp_path: Path, fast_ws: Path, limited_server: str
) -> None:
    body = f'tasks:\n  - id: t\n    http: {{url: "{limited_server}/without-header"}}\n'
    assert run_plan(fast_ws, tmp_path, body) == 3
    assert story(fast_ws, "t") == [
        "execution/started",
        "execution/failed",
        "recovery_evaluation/recovery_suggested",
        "proposal/created",
    ]
    assert _Limited.calls == ["/without-header"]
    audit_clean(fast_ws)


def test_14_failure_after_a_completed_step_of_a_non_idempotent_task(
    tmp_path: Path, fast_ws: Path
) -> None:
    script = (
        'echo \'{\\"failure\\": {\\"kind\\": \\"unavailable\\"}, \\"steps_completed\\": 1}\''
        " > $STOIC_RESULT; exit 1"
    )
    body = f'tasks:\n  - id: t\n    run: ["sh", "-c", "{script}"]\n'
    assert run_plan(fast_ws, tmp_path, body) == 1
    (skipped,) = records_of(fast_ws, "t", "recovery_evaluation", "recovery_skipped")
    assert "partial execution of a non-idempotent task" in skipped["decision_reason"]
    (failed,) = records_of(fast_ws, "t", "execution", "failed")
    assert failed["decision_inputs"]["partial"] == "true"
    audit_clean(fast_ws)


def test_14b_python_step_done_marks_partial(tmp_path: Path, fast_ws: Path) -> None:
    (tmp_path / "steps.py").write_text(
        "import stoic\nfrom stoic.errors import Unavailable\n"
        "def pay():\n    stoic.step_done()\n    raise Unavailable('gateway down')\n"
    )
    assert run_plan(fast_ws, tmp_path, 'tasks:\n  - {id: t, call: "steps:pay"}\n') == 1
    (skipped,) = records_of(fast_ws, "t", "recovery_evaluation", "recovery_skipped")
    assert "partial execution" in skipped["decision_reason"]
    audit_clean(fast_ws)


def _kill_mid_task(tmp_path: Path, ws: Path, idempotent: bool) -> str:
    script = "if [ -f done ]; then exit 0; fi; touch done; echo $$ > task.pid; exec sleep 60"
    (tmp_path / "plan.yaml").write_text(
        f'tasks:\n  - id: t\n    run: ["sh", "-c", "{script}"]\n'
        f"    idempotent: {'true' if idempotent else 'false'}\n"
    )
    runner = subprocess.Popen(
        [STOIC_BIN, "-w", str(ws), "run", str(tmp_path / "plan.yaml")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_for(lambda: (tmp_path / "task.pid").is_file() and (tmp_path / "task.pid").read_text())
    runner.send_signal(signal.SIGKILL)
    runner.wait(timeout=30)
    leftover = int((tmp_path / "task.pid").read_text())
    result = run_stoic_process("-w", str(ws), "continue", run_id_of(ws))
    assert not _alive(leftover)
    return f"{result.returncode}"


def test_15a_sigkill_then_continue_non_idempotent_is_skipped(tmp_path: Path, fast_ws: Path) -> None:
    assert _kill_mid_task(tmp_path, fast_ws, idempotent=False) == "1"
    assert story(fast_ws, "t") == [
        "execution/started",
        "execution/interrupted",
        "recovery_evaluation/recovery_skipped",
    ]
    audit_clean(fast_ws)


def test_15b_sigkill_then_continue_idempotent_is_retried(tmp_path: Path, fast_ws: Path) -> None:
    assert _kill_mid_task(tmp_path, fast_ws, idempotent=True) == "0"
    assert story(fast_ws, "t") == [
        "execution/started",
        "execution/interrupted",
        "recovery_evaluation/recovery_applied",
        "execution/started",
        "execution/succeeded",
    ]
    audit_clean(fast_ws)


def test_context_overflow_retry_gets_the_reduce_input_hint(tmp_path: Path, fast_ws: Path) -> None:
    (tmp_path / "task.sh").write_text(
        'if [ "$STOIC_HINT" = reduce_input ]; then exit 0; fi\n'
        'echo \'{"failure": {"kind": "context_overflow"}}\' > "$STOIC_RESULT"\n'
        "exit 1\n"
    )
    body = 'tasks:\n  - {id: t, idempotent: true, run: ["sh", "task.sh"]}\n'
    assert run_plan(fast_ws, tmp_path, body) == 0
    (applied,) = records_of(fast_ws, "t", "recovery_evaluation", "recovery_applied")
    assert applied["decision_inputs"]["hint"] == "reduce_input"
    audit_clean(fast_ws)


def test_a_task_that_needs_approval_waits_then_runs_once_approved(
    tmp_path: Path, fast_ws: Path
) -> None:
    (fast_ws / "stoic.toml").write_text(FAST + '[policy]\nrequire_approval = ["deploy-*"]\n')
    body = (
        "tasks:\n"
        '  - {id: build, run: ["true"]}\n'
        '  - {id: deploy-prod, run: ["touch", "deployed"], depends_on: [build]}\n'
        '  - {id: announce, run: ["true"], depends_on: [deploy-prod], approval: required}\n'
    )
    assert run_plan(fast_ws, tmp_path, body) == 3
    assert not (tmp_path / "deployed").exists()
    (blocked,) = records_of(fast_ws, "deploy-prod", "policy_check", "blocked")
    assert blocked["decision_inputs"]["requires"] == "approval"
    run_id = run_id_of(fast_ws)
    result = run_cli(
        "-w", str(fast_ws), "continue", run_id, "--approve-suggestion", "deploy-prod", "--as", "ops"
    )
    assert result.exit_code == 3  # announce now waits for its own approval
    assert (tmp_path / "deployed").exists()
    started = records_of(fast_ws, "deploy-prod", "execution", "started")[0]
    assert started["decision_inputs"]["approved_by"] == "human:ops"
    assert story(fast_ws, "announce") == ["policy_check/blocked", "proposal/created"]
    result = run_cli("-w", str(fast_ws), "continue", run_id, "--approve-suggestion", "announce")
    assert result.exit_code == 0
    audit_clean(fast_ws)


def test_suggestions_and_approvals_are_decided_in_the_review_queue(
    tmp_path: Path, fast_ws: Path
) -> None:
    body = TOOL_ERROR + '  - {id: deploy, run: ["touch", "deployed"], approval: required}\n'
    assert run_plan(fast_ws, tmp_path, body) == 3
    queue = orjson.loads(run_cli("-w", str(fast_ws), "queue", "--json").stdout)
    by_task = {p["task_id"]: p for p in queue}
    assert by_task["t"]["type"] == "recovery" and by_task["deploy"]["type"] == "approval"
    assert by_task["t"]["status"] == by_task["deploy"]["status"] == "pending"
    assert "tool_error" in by_task["t"]["reasoning_trace"][0]
    run_id = run_id_of(fast_ws)
    assert (
        run_cli("-w", str(fast_ws), "approve", by_task["deploy"]["id"], "--as", "ops").exit_code
        == 0
    )
    rejected = run_cli(
        "-w", str(fast_ws), "reject", by_task["t"]["id"], "--reason", "the linter is broken"
    )
    assert rejected.exit_code == 0
    assert run_cli("-w", str(fast_ws), "continue", run_id).exit_code == 1
    assert (tmp_path / "deployed").exists()
    state = orjson.loads((fast_ws / "runs" / run_id / "state.json").read_bytes())
    assert state["tasks"]["t"]["status"] == "failed"
    assert state["tasks"]["deploy"]["status"] == "succeeded"
    started = records_of(fast_ws, "deploy", "execution", "started")[0]
    assert started["decision_inputs"]["approved_by"] == "human:ops"
    audit_clean(fast_ws)


def test_a_bad_policy_pattern_in_stoic_toml_is_a_config_error(ws_path: Path) -> None:
    (ws_path / "stoic.toml").write_text('[policy]\nforbidden_commands = ["(bad"]\n')
    result = run_cli("-w", str(ws_path), "status")
    assert result.exit_code == 2
    assert "stoic.toml:2: policy.forbidden_commands" in result.stderr
    assert "'(bad' is not a valid regular expression" in result.stderr


def test_5c_a_run_cost_budget_halts_the_next_task_once_spent(tmp_path: Path, fast_ws: Path) -> None:
    (tmp_path / "spend.sh").write_text('echo "{\\"cost\\": $1}" > "$STOIC_RESULT"\n')
    body = (
        "meta: {budget: {max_cost: 1}}\n"
        "tasks:\n"
        "  - {id: a, run: [sh, spend.sh, '0.7']}\n"
        "  - {id: b, run: [sh, spend.sh, '0.5'], depends_on: [a]}\n"
        "  - {id: c, run: [touch, c-ran], depends_on: [b]}\n"
    )
    assert run_plan(fast_ws, tmp_path, body) == 1
    assert story(fast_ws, "b")[:2] == ["execution/started", "execution/succeeded"]
    assert not (tmp_path / "c-ran").exists()
    (exhausted,) = records_of(fast_ws, "c", "budget_check", "exhausted")
    assert "run budget max_cost=1 used up (1.2 spent)" in exhausted["decision_reason"]
    audit_clean(fast_ws)


def test_5d_a_run_attempt_budget_holds_for_tasks_started_together(
    tmp_path: Path, fast_ws: Path
) -> None:
    body = "meta: {budget: {max_attempts: 2}}\ntasks:\n" + "".join(
        f"  - {{id: t{n}, run: [touch, ran-{n}]}}\n" for n in range(4)
    )
    assert run_plan(fast_ws, tmp_path, body) == 1  # four ready at once, two allowed
    assert len(list(tmp_path.glob("ran-*"))) == 2
    exhausted = [
        r
        for r in map(orjson.loads, log_path(fast_ws).read_bytes().splitlines())
        if (r["decision_type"], r["decision_outcome"]) == ("budget_check", "exhausted")
    ]
    assert len(exhausted) == 2
    assert "run budget max_attempts=2 used up (2 made)" in exhausted[0]["decision_reason"]
    assert "run budget max_attempts=2 used up" in exhausted[1]["decision_reason"]
    audit_clean(fast_ws)
