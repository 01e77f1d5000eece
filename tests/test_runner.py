"""`stoic run`, `continue` and `status RUN_ID` end to end: real processes, real log, audit clean."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

import stoic
from tests.conftest import STOIC_BIN, log_path, run_cli, run_stoic_process


def write_plan(folder: Path, body: str, name: str = "plan.yaml") -> Path:
    path = folder / name
    path.write_text(body)
    return path


def records(ws_path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in log_path(ws_path).read_bytes().splitlines()]


def of_type(ws_path: Path, kind: str, outcome: str | None = None) -> list[dict[str, object]]:
    return [
        r
        for r in records(ws_path)
        if r["decision_type"] == kind and (outcome is None or r["decision_outcome"] == outcome)
    ]


def only_run(ws_path: Path) -> str:
    (run,) = [path.name for path in (ws_path / "runs").iterdir()]
    return run


def assert_audit_clean(ws_path: Path) -> None:
    result = run_cli("-w", str(ws_path), "audit")
    assert result.exit_code == 0, result.stdout


GRAPH = """
meta: {name: graph}
tasks:
  - id: fetch
    run: ["sh", "-c", "echo fetched"]
  - id: compile
    call: "steps:compile"
    params: {target: app}
    depends_on: [fetch]
  - id: lint
    run: ["sh", "-c", "echo lint problems; exit 2"]
    depends_on: [fetch]
  - id: package
    run: ["true"]
    depends_on: [compile, lint]
  - id: publish
    run: ["true"]
    depends_on: [package]
  - id: docs
    run: ["true"]
    depends_on: [fetch]
"""
STEPS = "def compile(target):\n    print('compiled', target)\n    return {'target': target}\n"


def test_failed_branch_blocks_its_dependents_with_root_cause(tmp_path: Path, ws_path: Path) -> None:
    (tmp_path / "steps.py").write_text(STEPS)
    plan = write_plan(tmp_path, GRAPH)
    result = run_cli("-w", str(ws_path), "run", str(plan), "--workers", "2")
    assert result.exit_code == 1, result.stdout + result.stderr
    assert "package is blocked by lint (root cause)" in result.stdout
    assert "publish is blocked by lint (root cause)" in result.stdout
    run_id = only_run(ws_path)
    state = orjson.loads((ws_path / "runs" / run_id / "state.json").read_bytes())
    assert state["status"] == "failed"
    statuses = {task: entry["status"] for task, entry in state["tasks"].items()}
    assert statuses == {
        "fetch": "succeeded",
        "compile": "succeeded",
        "lint": "failed",
        "package": "pending",
        "publish": "pending",
        "docs": "succeeded",
    }
    assert state["tasks"]["publish"]["blocked_by"] == ["lint"]
    assert state["tasks"]["lint"]["failure"]["exit_code"] == 2
    (end,) = of_type(ws_path, "run_lifecycle", "failed")
    assert end["decision_inputs"]["blocked"] == {"package": ["lint"], "publish": ["lint"]}
    assert (ws_path / "runs" / run_id / "plan.yaml").read_text() == GRAPH
    (started,) = of_type(ws_path, "run_lifecycle", "started")
    import hashlib

    assert started["details"]["plan_sha256"] == hashlib.sha256(GRAPH.encode()).hexdigest()
    entries = (ws_path / "logs" / "execution_log.md").read_text().count(f"· run {run_id} ·")
    assert entries == 4  # one per attempt: fetch, compile, lint, docs
    compiled = ws_path / "runs" / run_id / "tasks" / "compile" / "attempt-1.log"
    assert compiled.read_text() == "compiled app\n"
    assert_audit_clean(ws_path)


def test_success_exits_zero_and_status_run_id_reads_the_log(tmp_path: Path, ws_path: Path) -> None:
    plan = write_plan(
        tmp_path,
        'tasks:\n  - {id: a, run: ["true"]}\n  - {id: b, run: ["true"], depends_on: [a]}\n',
    )
    assert run_cli("-w", str(ws_path), "run", str(plan)).exit_code == 0
    run_id = only_run(ws_path)
    status = run_cli("-w", str(ws_path), "status", run_id, "--json")
    document = orjson.loads(status.stdout)
    assert document["status"] == "completed"
    assert {t: e["attempts"] for t, e in document["tasks"].items()} == {"a": 1, "b": 1}
    text = run_cli("-w", str(ws_path), "status", run_id)
    assert f"Run {run_id} completed" in text.stdout
    assert run_cli("-w", str(ws_path), "status", "run-nope").exit_code == 2


def test_start_record_is_durable_before_the_task_starts(tmp_path: Path, ws_path: Path) -> None:
    log = log_path(ws_path)
    script = f'grep \'"decision_outcome":"started"\' {log} | grep -q \'"task_id":"look"\''
    plan = write_plan(
        tmp_path, f'tasks:\n  - id: look\n    run: ["sh", "-c", {orjson.dumps(script).decode()}]\n'
    )
    assert run_cli("-w", str(ws_path), "run", str(plan)).exit_code == 0


def test_ready_tasks_run_concurrently(tmp_path: Path, ws_path: Path) -> None:
    wait_for = (
        "touch {me}.flag; for i in $(seq 200); do [ -f {other}.flag ] && exit 0;"
        " sleep 0.05; done; exit 1"
    )
    plan = write_plan(
        tmp_path,
        "tasks:\n"
        f"  - {{id: a, run: [sh, -c, '{wait_for.format(me='a', other='b')}']}}\n"
        f"  - {{id: b, run: [sh, -c, '{wait_for.format(me='b', other='a')}']}}\n",
    )
    assert run_cli("-w", str(ws_path), "run", str(plan), "--workers", "2").exit_code == 0


def test_invalid_plan_and_unrunnable_tasks_exit_2(tmp_path: Path, ws_path: Path) -> None:
    bad = write_plan(tmp_path, "tasks:\n  - id: a\n    status: complete\n")
    result = run_cli("-w", str(ws_path), "run", str(bad))
    assert result.exit_code == 2
    assert "did you mean 'completed'" in result.stderr
    agent = write_plan(tmp_path, "tasks:\n  - {id: a, agent: coder}\n  - {id: b}\n", "agent.yaml")
    result = run_cli("-w", str(ws_path), "run", str(agent))
    assert result.exit_code == 2
    assert "agent.yaml:2:10: the agent CLI 'claude' (for agent tasks) is not on PATH" in (
        result.stderr
    )
    assert "agent task 'a' has nothing to ask the agent" in result.stderr
    assert "task 'b' has nothing to run" in result.stderr
    assert records(ws_path) == []  # nothing was recorded for a plan that cannot run


def test_task_printing_200_mb_keeps_memory_flat_and_log_capped(
    tmp_path: Path, ws_path: Path
) -> None:
    plan = write_plan(
        tmp_path, 'tasks:\n  - {id: loud, run: ["head", "-c", "200000000", "/dev/zero"]}\n'
    )
    probe = (
        "import resource, subprocess, sys\n"
        "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n"
        "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, STOIC_BIN, "-w", str(ws_path), "run", str(plan)],
        capture_output=True,
        text=True,
        check=True,
        timeout=240,
    ).stdout.split()
    code, peak_kib = int(out[0]), int(out[1])
    assert code == 0
    assert peak_kib < 150 * 1024, f"peak RSS {peak_kib} KiB"
    run_id = only_run(ws_path)
    log = ws_path / "runs" / run_id / "tasks" / "loud" / "attempt-1.log"
    cap = 10 * 1024 * 1024
    assert cap < log.stat().st_size < cap + 200
    (end,) = of_type(ws_path, "execution", "succeeded")
    assert end["details"]["output_truncated"] is True


def _wait_for(predicate: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


LONG = """
tasks:
  - id: slow
    run: ["sh", "-c", "echo $$ > slow.pid; exec sleep 60"]
  - id: after
    run: ["true"]
    depends_on: [slow]
  - id: other
    run: ["true"]
"""


def _start_runner(tmp_path: Path, ws_path: Path, body: str = LONG) -> subprocess.Popen[str]:
    plan = write_plan(tmp_path, body)
    runner = subprocess.Popen(
        [STOIC_BIN, "-w", str(ws_path), "run", str(plan), "--workers", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(lambda: (tmp_path / "slow.pid").is_file() and (tmp_path / "slow.pid").read_text())
    return runner


def _sleep_pid(tmp_path: Path) -> int:
    return int((tmp_path / "slow.pid").read_text().split()[0])


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def _alive(pid: int) -> bool:
    """Whether `pid` still runs, allowing a killed process a moment to be torn down."""
    deadline = time.monotonic() + 5
    while _state(pid) not in ("Z", "gone") and time.monotonic() < deadline:
        time.sleep(0.05)
    return _state(pid) not in ("Z", "gone")


def test_sigkill_of_the_runner_then_continue_records_interrupted(
    tmp_path: Path, ws_path: Path
) -> None:
    runner = _start_runner(tmp_path, ws_path)
    leftover = _sleep_pid(tmp_path)
    runner.send_signal(signal.SIGKILL)
    runner.communicate(timeout=30)
    assert _state(leftover) not in ("Z", "gone")  # the task outlived its runner …
    run_id = only_run(ws_path)
    result = run_stoic_process("-w", str(ws_path), "continue", run_id)
    assert not _alive(leftover)  # … until continue killed it
    assert result.returncode == 1, result.stdout + result.stderr
    (interrupted,) = of_type(ws_path, "execution", "interrupted")
    assert interrupted["task_id"] == "slow"
    assert interrupted["decision_inputs"]["partial"] == "unknown"
    assert interrupted["decision_inputs"]["failure_kind"] == "interrupted"
    assert interrupted["details"]["leftover_processes_killed"] is True
    succeeded = {r["task_id"] for r in of_type(ws_path, "execution", "succeeded")}
    assert succeeded == {"other"}
    assert "after is blocked by slow (root cause)" in result.stdout
    assert_audit_clean(ws_path)


def test_a_run_whose_runner_is_gone_is_not_shown_running(tmp_path: Path, ws_path: Path) -> None:
    runner = _start_runner(tmp_path, ws_path)
    run_id = only_run(ws_path)
    live = run_stoic_process("-w", str(ws_path), "status", run_id)
    assert "is running: a runner is working on it" in live.stdout, live.stdout
    runner.send_signal(signal.SIGKILL)
    runner.communicate(timeout=30)
    shown = run_stoic_process("-w", str(ws_path), "status", run_id)
    assert f"its runner is gone without recording an end (killed?); `stoic continue {run_id}`" in (
        shown.stdout
    )
    (row,) = [line for line in shown.stdout.splitlines() if line.startswith("slow")]
    assert "interrupted" in row and "running" not in row
    as_json = run_stoic_process("-w", str(ws_path), "status", run_id, "--json")
    document = orjson.loads(as_json.stdout)
    assert (document["status"], document["runner"]) == ("interrupted", "none")
    assert document["tasks"]["slow"]["status"] == "interrupted"
    assert document["continue_with"] == f"stoic continue {run_id}"
    customer = run_stoic_process("-w", str(ws_path), "timeline", run_id, "--customer")
    assert "in progress" not in customer.stdout
    assert "plan: stopped before it finished" in customer.stdout
    assert "slow: stopped before it finished" in customer.stdout
    operator = run_stoic_process("-w", str(ws_path), "timeline", run_id)
    assert f"interrupted — not running: its runner is gone; `stoic continue {run_id}`" in (
        operator.stdout
    )
    # state.json is a projection of the log, which holds no end: it keeps the log's word, and
    # the views above say, as they render, that nobody is running it.
    state = orjson.loads((ws_path / "runs" / run_id / "state.json").read_bytes())
    assert state["status"] == "running" and "runner" not in state
    continued = run_stoic_process("-w", str(ws_path), "continue", run_id)
    assert continued.returncode == 1  # slow is not idempotent: interrupted, it stands
    assert run_stoic_process("-w", str(ws_path), "status", run_id).stdout.count("FAILED") == 1


def test_ctrl_c_stops_running_tasks_and_exits_130(tmp_path: Path, ws_path: Path) -> None:
    runner = _start_runner(tmp_path, ws_path)
    leftover = _sleep_pid(tmp_path)
    runner.send_signal(signal.SIGINT)
    out, err = runner.communicate(timeout=30)
    assert runner.returncode == 130, out + err
    assert not _alive(leftover)
    (interrupted,) = of_type(ws_path, "execution", "interrupted")
    assert interrupted["task_id"] == "slow"
    (paused,) = of_type(ws_path, "run_lifecycle", "paused")
    assert "SIGINT" in paused["decision_reason"]
    assert of_type(ws_path, "execution", "started")[-1]["task_id"] == "slow"  # nothing new began
    assert_audit_clean(ws_path)
    result = run_stoic_process("-w", str(ws_path), "continue", only_run(ws_path))
    assert result.returncode == 1
    assert {r["task_id"] for r in of_type(ws_path, "execution", "succeeded")} == {"other"}


LONE = """
tasks:
  - id: slow
    run: ["sh", "-c", "echo $$ > slow.pid; exec sleep 60"]
  - id: after
    run: ["true"]
    depends_on: [slow]
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_exits_128_plus_its_number_when_the_stopped_task_is_not_idempotent(
    tmp_path: Path, ws_path: Path, signum: signal.Signals
) -> None:
    # The stopped task cannot be retried (side effects unknown), so the graph alone would say
    # failed; the run was stopped by a person, and says so.
    runner = _start_runner(tmp_path, ws_path, LONE)
    runner.send_signal(signum)
    out, err = runner.communicate(timeout=30)
    assert runner.returncode == 128 + signum, out + err
    assert "was interrupted" in out and "FAILED" not in out
    (paused,) = of_type(ws_path, "run_lifecycle", "paused")
    assert paused["decision_inputs"]["status"] == "interrupted"
    assert signum.name in paused["decision_reason"]
    assert_audit_clean(ws_path)


def test_a_second_runner_on_the_same_run_is_refused(tmp_path: Path, ws_path: Path) -> None:
    runner = _start_runner(tmp_path, ws_path)
    try:
        result = run_stoic_process("-w", str(ws_path), "continue", only_run(ws_path))
        assert result.returncode == 2
        assert "is being run by another stoic process" in result.stderr
    finally:
        runner.send_signal(signal.SIGINT)
        runner.communicate(timeout=30)


@pytest.mark.parametrize(("body", "code"), [('["true"]', 0), ('["false"]', 1)])
def test_continuing_a_finished_run_appends_nothing_and_notifies_nobody(
    tmp_path: Path, ws_path: Path, body: str, code: int
) -> None:
    with (ws_path / "stoic.toml").open("a") as settings:
        settings.write('\n[[notifiers]]\nkind = "file"\npath = "notices.ndjson"\n')
    plan = write_plan(tmp_path, f"tasks:\n  - {{id: a, run: {body}}}\n")
    assert run_cli("-w", str(ws_path), "run", str(plan)).exit_code == code
    log_before = log_path(ws_path).read_bytes()
    notices = (ws_path / "notices.ndjson").read_bytes()
    assert notices.count(b"\n") == 1
    for _ in range(2):
        result = run_cli("-w", str(ws_path), "continue", only_run(ws_path))
        assert result.exit_code == code, result.stdout + result.stderr
    assert log_path(ws_path).read_bytes() == log_before
    assert (ws_path / "notices.ndjson").read_bytes() == notices
    assert_audit_clean(ws_path)


@pytest.mark.parametrize(
    "task",
    [
        "{id: a, run: ['true'], approval: required}",
        f"{{id: a, run: ['{STOIC_BIN}', escalate, --mode, ambiguity, --question, 'Which?']}}",
    ],
)
def test_continuing_a_run_waiting_for_a_person_with_nothing_decided_appends_nothing(
    tmp_path: Path, ws_path: Path, task: str
) -> None:
    with (ws_path / "stoic.toml").open("a") as settings:
        settings.write('\n[[notifiers]]\nkind = "file"\npath = "notices.ndjson"\n')
    plan = write_plan(tmp_path, f"tasks:\n  - {task}\n")
    first = run_stoic_process("-w", str(ws_path), "run", str(plan))
    assert first.returncode == 3, first.stdout + first.stderr
    log_before = log_path(ws_path).read_bytes()
    notices = (ws_path / "notices.ndjson").read_bytes()
    for _ in range(2):
        result = run_stoic_process("-w", str(ws_path), "continue", only_run(ws_path))
        assert result.returncode == 3, result.stdout + result.stderr
        assert "is waiting for a person: a" in result.stdout
    assert log_path(ws_path).read_bytes() == log_before
    assert (ws_path / "notices.ndjson").read_bytes() == notices
    assert_audit_clean(ws_path)


def test_continue_refuses_an_edited_plan_copy(tmp_path: Path, ws_path: Path) -> None:
    plan = write_plan(tmp_path, 'tasks:\n  - {id: a, run: ["true"]}\n')
    run_cli("-w", str(ws_path), "run", str(plan))
    run_id = only_run(ws_path)
    (ws_path / "runs" / run_id / "plan.yaml").write_text('tasks:\n  - {id: a, run: ["false"]}\n')
    result = run_cli("-w", str(ws_path), "continue", run_id)
    assert result.exit_code == 1
    assert "no longer matches the plan the run started with" in result.stderr


def test_plain_output_has_one_line_per_event(tmp_path: Path, ws_path: Path) -> None:
    words = " ".join(f"word{n}" for n in range(60))  # far wider than any terminal
    plan = write_plan(
        tmp_path, f'tasks:\n  - {{id: a, run: ["true"]}}\n  - {{id: b, run: [echo, {words}]}}\n'
    )
    result = run_stoic_process("-w", str(ws_path), "run", str(plan))
    lines = result.stdout.splitlines()
    assert any(line.endswith("started a (attempt 1): true") for line in lines)
    assert any("succeeded a (attempt 1," in line for line in lines)
    assert any(line.endswith(f"started b (attempt 1): echo '{words}'") for line in lines)


def test_python_api_records_are_readable(ws_path: Path, tmp_path: Path) -> None:
    plan = write_plan(tmp_path, 'tasks:\n  - {id: a, run: ["true"]}\n')
    run_cli("-w", str(ws_path), "run", str(plan))
    with stoic.Workspace.open(ws_path) as ws:
        kinds = [
            (r.decision_type, r.decision_outcome) for r in ws.records(run_id=only_run(ws_path))
        ]
    assert kinds == [
        ("run_lifecycle", "started"),
        ("execution", "started"),
        ("execution", "succeeded"),
        ("run_lifecycle", "completed"),
    ]


def test_malformed_result_file_is_recorded_in_the_log(tmp_path: Path, ws_path: Path) -> None:
    plan = write_plan(
        tmp_path,
        "tasks:\n"
        "  - id: sloppy\n"
        '    run: ["sh", "-c", "echo \'{broken\' > $STOIC_RESULT"]\n'
        "  - id: honest\n"
        '    run: ["sh", "-c", "echo \'{\\"failure\\": {\\"kind\\": \\"tool_error\\"}}\''
        ' > $STOIC_RESULT"]\n',
    )
    assert run_cli("-w", str(ws_path), "run", str(plan)).exit_code == 3  # tool_error: R2
    (sloppy,) = [r for r in of_type(ws_path, "execution", "succeeded") if r["task_id"] == "sloppy"]
    assert "not valid JSON" in sloppy["details"]["result_file_error"]
    (honest,) = of_type(ws_path, "execution", "failed")
    assert honest["decision_inputs"]["failure_kind"] == "tool_error"
    run_id = only_run(ws_path)
    assert (ws_path / "runs" / run_id / "results" / "honest.attempt-1.json").is_file()


def test_python_tasks_run_in_the_plan_folder_with_capped_output(
    tmp_path: Path, ws_path: Path
) -> None:
    (tmp_path / "steps.py").write_text(
        "import os\ndef where():\n    print(os.getcwd())\ndef loud():\n    print('x' * 5000)\n"
    )
    (ws_path / "stoic.toml").write_text("[runner]\noutput_cap_bytes = 1024\n")
    plan = write_plan(
        tmp_path,
        'tasks:\n  - {id: where, call: "steps:where"}\n  - {id: loud, call: "steps:loud"}\n',
    )
    assert run_cli("-w", str(ws_path), "run", str(plan)).exit_code == 0
    tasks = ws_path / "runs" / only_run(ws_path) / "tasks"
    assert (tasks / "where" / "attempt-1.log").read_text() == f"{tmp_path}\n"
    loud = (tasks / "loud" / "attempt-1.log").read_text()
    assert loud.startswith("x" * 1024) and "[stoic: output cut at 1024 bytes;" in loud


def test_a_silent_attempt_leaves_no_log_file(tmp_path: Path, ws_path: Path) -> None:
    plan = write_plan(tmp_path, 'tasks:\n  - {id: quiet, run: ["true"]}\n')
    assert run_cli("-w", str(ws_path), "run", str(plan)).exit_code == 0
    run_id = only_run(ws_path)
    assert not (ws_path / "runs" / run_id / "tasks").exists()
    assert "- log: none (no output)" in (ws_path / "logs" / "execution_log.md").read_text()


@pytest.mark.parametrize("bad", ["../..", "../x", "/etc", "runs/x"])
def test_run_ids_with_paths_are_refused(ws_path: Path, bad: str) -> None:
    for command in (["continue", bad], ["status", bad], ["timeline", bad]):
        result = run_cli("-w", str(ws_path), *command)
        assert result.exit_code == 2, (command, result.stderr)
        assert "is not a run id" in result.stderr
    assert not (ws_path.parent / "run.lock").exists()


def test_an_unknown_run_names_the_recent_ones(tmp_path: Path, ws_path: Path) -> None:
    (tmp_path / "plan.yaml").write_text("tasks:\n  - {id: a, run: ['true']}\n")
    assert run_cli("-w", str(ws_path), "run", str(tmp_path / "plan.yaml")).exit_code == 0
    (known,) = [path.name for path in (ws_path / "runs").iterdir()]
    missing = "run-20200101-000000-abcdef"
    for args in (
        ("continue", missing),
        ("status", missing),
        (
            "escalate",
            "--mode",
            "ambiguity",
            "--question",
            "Which?",
            "--run",
            missing,
            "--task",
            "a",
        ),
    ):
        result = run_cli("-w", str(ws_path), *args)
        assert result.exit_code == 2, args
        assert f"no run '{missing}' in this workspace (recent runs: {known})" in result.stderr


def test_a_runner_killed_at_random_moments_finishes_on_continue_with_every_task_once(
    tmp_path: Path, ws_path: Path
) -> None:
    import random

    body = "tasks:\n" + "".join(
        f"  - {{id: t{n}, run: [sh, -c, 'sleep 0.1; echo t{n} >> done.txt'], idempotent: true"
        + (f", depends_on: [t{n - 1}]" if n else "")
        + "}\n"
        for n in range(16)
    )
    (tmp_path / "plan.yaml").write_text(body)
    chance = random.Random(11)
    command = [STOIC_BIN, "-w", str(ws_path), "run", str(tmp_path / "plan.yaml")]
    kills = 0
    errors = tmp_path / "stderr.txt"
    log = log_path(ws_path)
    succeeded = b'"decision_outcome":"succeeded"'
    for _ in range(60):
        done = log.read_bytes().count(succeeded)
        with errors.open("wb") as sink:
            runner = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=sink)
            deadline = time.monotonic() + 60
            # Each round gets a task done before the kill (however slow the machine), so no
            # task is cut twice — that would rightly need a person (one automatic retry only).
            while runner.poll() is None and log.read_bytes().count(succeeded) == done:
                assert time.monotonic() < deadline, "the runner finished no task in a minute"
                time.sleep(0.01)
            try:
                code = runner.wait(timeout=chance.random() * 0.3)  # then anywhere in the run
            except subprocess.TimeoutExpired:
                runner.kill()
                runner.wait(timeout=30)
                kills += 1
                command = [STOIC_BIN, "-w", str(ws_path), "continue", only_run(ws_path)]
                continue
        assert code == 0, errors.read_text()
        break
    else:
        pytest.fail("the run never finished")
    assert kills >= 2, kills
    succeeded = [r["task_id"] for r in of_type(ws_path, "execution", "succeeded")]
    assert sorted(succeeded) == sorted(f"t{n}" for n in range(16))  # each exactly once
    state = orjson.loads((ws_path / "runs" / only_run(ws_path) / "state.json").read_bytes())
    assert state["status"] == "completed"
    assert_audit_clean(ws_path)


PAUSABLE = """
tasks:
  - id: first
    run: ["sh", "-c", "echo $$ > first.pid; while [ ! -f go ]; do sleep 0.05; done"]
  - id: second
    run: ["true"]
    depends_on: [first]
  - id: third
    run: ["true"]
    depends_on: [second]
"""


def test_a_pause_stops_a_run_in_progress_and_continue_goes_on_after_resume(
    tmp_path: Path, ws_path: Path
) -> None:
    plan = write_plan(tmp_path, PAUSABLE)
    runner = subprocess.Popen(
        [STOIC_BIN, "-w", str(ws_path), "run", str(plan)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(lambda: (tmp_path / "first.pid").is_file())
    stop = run_stoic_process("-w", str(ws_path), "stop", "--reason", "hold everything")
    assert stop.returncode == 0, stop.stderr
    (tmp_path / "go").touch()  # the running attempt finishes, and is recorded …
    out, err = runner.communicate(timeout=60)
    assert runner.returncode == 4, out + err
    assert "is paused with the workspace" in out
    started = [r["task_id"] for r in of_type(ws_path, "execution", "started")]
    assert started == ["first"]  # … and nothing starts after the pause
    assert [r["task_id"] for r in of_type(ws_path, "execution", "succeeded")] == ["first"]
    (ended,) = of_type(ws_path, "run_lifecycle", "paused")
    assert ended["decision_inputs"]["status"] == "paused"
    assert "hold everything" in ended["decision_reason"]
    assert_audit_clean(ws_path)
    run_id = only_run(ws_path)
    refused = run_stoic_process("-w", str(ws_path), "continue", run_id)
    assert refused.returncode == 4
    resume = run_stoic_process(
        "-w", str(ws_path), "resume", "--procedure", "smaller-batch", "--batch-size", "5",
        "--reason", "looked at it",
    )  # fmt: skip
    assert resume.returncode == 0, resume.stderr
    went_on = run_stoic_process("-w", str(ws_path), "continue", run_id)
    assert went_on.returncode == 0, went_on.stdout + went_on.stderr
    started = [r["task_id"] for r in of_type(ws_path, "execution", "started")]
    assert started == ["first", "second", "third"]
    assert_audit_clean(ws_path)


def test_a_runner_started_while_paused_starts_nothing(tmp_path: Path, ws_path: Path) -> None:
    """The CLI refuses a run while paused; a runner that got past that check (the pause landed
    just after it) still sees the pause in the transaction of its first start."""
    import io

    from rich.console import Console

    from stoic.core.pause import Criterion
    from stoic.plan.loader import read_plan
    from stoic.run.lifecycle import start_run
    from stoic.run.reporting import PlainReporter
    from stoic.store.trust import pause

    plan = read_plan(write_plan(tmp_path, PAUSABLE))
    with stoic.Workspace.open(ws_path) as ws:
        pause(ws, reason="held\x1b[2J", actor="human:ada", criterion=Criterion.HUMAN_STOP)
        shown = io.StringIO()
        report = start_run(ws, plan, workers=1, reporter=PlainReporter(Console(file=shown)))
    assert (report.status, report.exit_code) == ("paused", 4)
    assert "the workspace is paused (held\\x1b[2J): starting nothing new" in shown.getvalue()
    assert "\x1b" not in shown.getvalue()  # a reason reaches the terminal escaped
    assert of_type(ws_path, "execution", "started") == []
    assert_audit_clean(ws_path)


def test_a_pause_watch_names_a_damaged_line_instead_of_crashing(ws_path: Path) -> None:
    from stoic.exceptions import LogCorrupt

    with stoic.Workspace.open(ws_path) as ws:
        watch = ws.pause_watch()
        with log_path(ws_path).open("ab") as log:
            log.write(b'{"decision_type":"pause","seq": oops\n')
        with ws.log.locked(), pytest.raises(LogCorrupt, match="at byte 0 is not a valid record"):
            watch.check()


def test_a_planted_run_lock_link_is_refused_not_followed(tmp_path: Path, ws_path: Path) -> None:
    plan = write_plan(tmp_path, 'tasks:\n  - {id: a, run: ["false"]}\n')
    run_cli("-w", str(ws_path), "run", str(plan))
    run_id = only_run(ws_path)
    lock = ws_path / "runs" / run_id / "run.lock"
    lock.unlink()
    target = tmp_path / "elsewhere.lock"
    lock.symlink_to(target)
    for args in (("continue", run_id), ("status", run_id)):
        result = run_cli("-w", str(ws_path), *args)
        assert result.exit_code == 1, result.stdout
        assert result.stderr.startswith("stoic: error: cannot open")
        assert "run.lock is a link; stoic never follows a link" in result.stderr
    assert not target.exists()


def test_no_task_starts_after_a_pause_that_lands_mid_chain(tmp_path: Path, ws_path: Path) -> None:
    body = "tasks:\n" + "".join(
        f"  - {{id: t{n}, run: [sh, -c, 'sleep 0.02'], idempotent: true"
        + (f", depends_on: [t{n - 1}]" if n else "")
        + "}\n"
        for n in range(400)  # far more than run while `stop` starts: the pause lands mid-chain
    )
    plan = write_plan(tmp_path, body)
    runner = subprocess.Popen(
        [STOIC_BIN, "-w", str(ws_path), "run", str(plan)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(lambda: log_path(ws_path).read_bytes().count(b'"decision_outcome":"succeeded"') >= 3)
    stop = run_stoic_process("-w", str(ws_path), "stop", "--reason", "mid-chain")
    assert stop.returncode == 0, stop.stderr
    out, err = runner.communicate(timeout=60)
    assert runner.returncode == 4, out + err
    (paused,) = of_type(ws_path, "pause", "paused")
    starts = of_type(ws_path, "execution", "started")
    assert starts and all(int(str(r["seq"])) < int(str(paused["seq"])) for r in starts)
    assert len(of_type(ws_path, "execution", "succeeded")) == len(starts)  # each one finished
    assert_audit_clean(ws_path)
