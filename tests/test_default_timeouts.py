"""Default timeouts: a task without `timeout:` that hangs is stopped at the workspace's default
(`runner.default_timeout_seconds`, `agents.default_timeout_seconds`) instead of hanging its run
forever; a plan's `timeout:` still wins. Real processes, a real hanging HTTP server."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from stoic.plan.loader import parse_plan
from stoic.run.timeouts import AGENTS_SETTING, TASKS_SETTING, DefaultTimeouts
from stoic.store.settings_text import default_settings_text
from tests.conftest import run_cli, run_stoic_process
from tests.test_runner import of_type

# A task that hangs, had no default stopped it: far past the subprocess timeout below.
FOREVER = "600"


def _settings(ws_path: Path, **values: float) -> None:
    """Uncomment the named defaults in the stoic.toml `stoic init` wrote, with new values."""
    settings = ws_path / "stoic.toml"
    text = settings.read_text()
    section = ""
    lines = []
    for line in text.splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        key = f"{section}_default_timeout_seconds"
        if line.startswith("# default_timeout_seconds = ") and key in values:
            line = f"default_timeout_seconds = {values[key]}"
        lines.append(line)
    settings.write_text("\n".join(lines) + "\n")


def _run(ws_path: Path, plan: Path) -> int:
    result = run_stoic_process("-w", str(ws_path), "run", str(plan), timeout=120)
    return result.returncode


def _end(ws_path: Path, task_id: str) -> dict[str, object]:
    (end,) = [
        r
        for r in of_type(ws_path, "execution")
        if r["task_id"] == task_id and r["decision_outcome"] != "started"
    ]
    return end


def _start_inputs(ws_path: Path, task_id: str) -> dict[str, object]:
    (start,) = [r for r in of_type(ws_path, "execution", "started") if r["task_id"] == task_id]
    inputs = start["decision_inputs"]
    assert isinstance(inputs, dict)
    return inputs


def _failure(end: dict[str, object]) -> dict[str, object]:
    inputs = end["decision_inputs"]
    assert isinstance(inputs, dict)
    return inputs


def test_a_hanging_shell_task_times_out_at_the_default(tmp_path: Path, ws_path: Path) -> None:
    _settings(ws_path, runner_default_timeout_seconds=1)
    plan = tmp_path / "hang.yaml"
    plan.write_text(
        f"meta: {{name: hang}}\ntasks:\n  - {{id: hang, run: [sleep, '{FOREVER}']}}\n"
        "  - {id: own, run: [sleep, '2'], timeout: 30}\n"
    )
    assert _run(ws_path, plan) == 3  # the timeout of a non-idempotent task waits for a person
    failure = _failure(_end(ws_path, "hang"))
    assert failure["failure_kind"] == "timeout"
    assert failure["message"] == (
        "timed out after 1s (the default timeout, runner.default_timeout_seconds in stoic.toml:"
        " the task sets no timeout:)"
    )
    inputs = _start_inputs(ws_path, "hang")
    assert (inputs["timeout_s"], inputs["timeout_from"]) == (1.0, TASKS_SETTING)
    assert _end(ws_path, "own")["decision_outcome"] == "succeeded"  # its timeout: wins
    assert "timeout_from" not in _start_inputs(ws_path, "own")


def test_a_hanging_python_task_times_out_at_the_default(tmp_path: Path, ws_path: Path) -> None:
    _settings(ws_path, runner_default_timeout_seconds=1)
    (tmp_path / "slow.py").write_text(f"import time\ndef hang():\n    time.sleep({FOREVER})\n")
    plan = tmp_path / "py.yaml"
    plan.write_text("meta: {name: py}\ntasks:\n  - {id: hang, call: 'slow:hang'}\n")
    assert _run(ws_path, plan) == 3
    failure = _failure(_end(ws_path, "hang"))
    assert failure["failure_kind"] == "timeout"
    assert "runner.default_timeout_seconds in stoic.toml" in str(failure["message"])
    assert _start_inputs(ws_path, "hang")["timeout_from"] == TASKS_SETTING


def test_the_plans_timeout_wins_over_the_default(tmp_path: Path, ws_path: Path) -> None:
    _settings(ws_path, runner_default_timeout_seconds=3600)
    plan = tmp_path / "own.yaml"
    plan.write_text(f"tasks:\n  - {{id: hang, run: [sleep, '{FOREVER}'], timeout: 1}}\n")
    assert _run(ws_path, plan) == 3
    failure = _failure(_end(ws_path, "hang"))
    assert failure["message"] == "timed out after 1s"  # no default was involved
    assert "timeout_from" not in _start_inputs(ws_path, "hang")


def test_an_agent_task_times_out_at_the_agents_default(tmp_path: Path, ws_path: Path) -> None:
    _settings(ws_path, runner_default_timeout_seconds=3600, agents_default_timeout_seconds=1)
    settings = ws_path / "stoic.toml"
    text = settings.read_text()
    assert "\n# agent_cli = " in text
    settings.write_text(
        "\n".join(
            f'agent_cli = ["sleep", "{FOREVER}"]' if line.startswith("# agent_cli = ") else line
            for line in text.splitlines()
        )
        + "\n"
    )
    plan = tmp_path / "agent.yaml"
    plan.write_text("tasks:\n  - {id: think, agent: coder, prompt: think hard}\n")
    assert _run(ws_path, plan) == 3
    failure = _failure(_end(ws_path, "think"))
    assert failure["failure_kind"] == "timeout"
    assert "agents.default_timeout_seconds in stoic.toml" in str(failure["message"])
    assert _start_inputs(ws_path, "think")["timeout_from"] == AGENTS_SETTING


@pytest.fixture
def silent_server() -> Iterator[str]:
    """An HTTP server that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/"
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    listener.close()


def test_an_http_task_times_out_at_a_default_shorter_than_its_own(
    tmp_path: Path, ws_path: Path, silent_server: str
) -> None:
    _settings(ws_path, runner_default_timeout_seconds=1)
    plan = tmp_path / "http.yaml"
    plan.write_text(f"tasks:\n  - {{id: call, http: {{method: POST, url: '{silent_server}'}}}}\n")
    assert _run(ws_path, plan) == 3
    failure = _failure(_end(ws_path, "call"))
    assert failure["failure_kind"] == "timeout"
    assert "runner.default_timeout_seconds in stoic.toml" in str(failure["message"])


def test_an_http_request_keeps_its_own_limit_when_it_is_the_shorter() -> None:
    defaults = DefaultTimeouts(tasks=3600.0, agents=7200.0)
    plan = parse_plan(
        "tasks:\n"
        "  - {id: plain, http: {url: 'http://127.0.0.1/'}}\n"
        "  - {id: own, http: {url: 'http://127.0.0.1/', timeout: 5}}\n"
        "  - {id: long, http: {url: 'http://127.0.0.1/', timeout: 9000}}\n"
        "  - {id: shell, run: ['true']}\n"
        "  - {id: given, run: ['true'], timeout: 7}\n"
        "  - {id: agent, agent: coder}\n"
    )
    limits = {task.id: defaults.of(task) for task in plan.tasks}
    assert limits == {
        "plain": (None, None),  # its own 30 s
        "own": (None, None),
        "long": (3600.0, TASKS_SETTING),
        "shell": (3600.0, TASKS_SETTING),
        "given": (7, None),
        "agent": (7200.0, AGENTS_SETTING),
    }


def test_an_iterate_check_that_hangs_times_out_at_the_default(
    tmp_path: Path, ws_path: Path
) -> None:
    _settings(ws_path, runner_default_timeout_seconds=1)
    marker = tmp_path / "checked-once"
    plan = tmp_path / "loop.yaml"
    plan.write_text(
        "tasks:\n  - id: loop\n    run: ['true']\n    timeout: 30\n    iterate:\n"
        f"      check: [sh, -c, 'if [ -e {marker} ]; then exit 0; fi; touch {marker};"
        f" exec sleep {FOREVER}']\n      max_iterations: 3\n"
    )
    assert _run(ws_path, plan) == 0
    end = _end(ws_path, "loop")
    details = end["details"]
    assert isinstance(details, dict)
    assert len(details["iterations"]) == 2  # the first check was stopped, the second passed


@pytest.mark.parametrize("section", ["runner", "agents"])
@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("0", "must be more than 0 and at most 604800 seconds (a week), not 0"),
        ("-5", "must be more than 0 and at most 604800 seconds (a week), not -5"),
        ("1e9", "must be more than 0 and at most 604800 seconds (a week), not 1000000000.0"),
        ('"3600"', "must be a number of seconds, not '3600' (hint: write a plain number"),
        ("true", "must be a number of seconds, not True (hint: write a plain number"),
    ],
)
def test_a_bad_default_timeout_is_refused_with_its_line_and_a_hint(
    ws_path: Path, section: str, value: str, problem: str
) -> None:
    (ws_path / "stoic.toml").write_text(f"[{section}]\n\ndefault_timeout_seconds = {value}\n")
    result = run_cli("-w", str(ws_path), "status")
    assert result.exit_code == 2
    where = f"{ws_path / 'stoic.toml'}:3: {section}.default_timeout_seconds: "
    assert result.stderr.startswith(f"stoic: error: {where}{problem}")
    assert "(hint: " in result.stderr


def test_the_settings_template_explains_both_defaults() -> None:
    text = default_settings_text()
    runner = text.split("[runner]", 1)[1].split("\n[", 1)[0]
    agents = text.split("[agents]", 1)[1].split("\n[", 1)[0]
    assert "\n# default_timeout_seconds = 3600.0\n" in runner
    assert "\n# default_timeout_seconds = 7200.0\n" in agents
    assert "# Seconds a shell, python or http task, or an iterate check, may run" in runner
    assert "# Seconds an agent task may run when the plan gives it no timeout" in agents
