"""The public API is pinned, and the README's examples run as written."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import stoic
from stoic.services import users
from tests.conftest import PROJECT_ROOT, STOIC_BIN, fill

README = (PROJECT_ROOT / "README.md").read_text()


def test_exported_names_are_pinned() -> None:
    assert sorted(stoic.__all__) == sorted(
        [
            "AuditReport",
            "ConfigError",
            "Decision",
            "InvalidDecision",
            "LogCorrupt",
            "LogTornTail",
            "ProjectionMismatch",
            "Record",
            "StoicError",
            "UsageError",
            "Violation",
            "ViolationCode",
            "WaitTimedOut",
            "Workspace",
            "WorkspaceError",
            "WorkspaceExists",
            "WorkspaceNotFound",
            "WorkspaceNotWritable",
            "WorkspacePaused",
            "WorkspaceStatus",
            "__version__",
            "step_done",
            "escalate",
        ]
    )
    for name in stoic.__all__:
        assert hasattr(stoic, name)


def test_every_stoic_error_derives_from_the_base() -> None:
    errors = [getattr(stoic, name) for name in stoic.__all__ if name.endswith(("Error", "Found"))]
    assert errors and all(issubclass(error, stoic.StoicError) for error in errors)


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)


def test_readme_python_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    blocks = _python_blocks()
    assert blocks, "the README has no Python example"
    exec(compile(blocks[0], "README.md", "exec"), {})
    assert (tmp_path / "demo.stoic" / "logs" / "decision_log.ndjson").stat().st_size > 0


def test_readme_run_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    stoic.Workspace.init("demo.stoic").close()
    Path("release.yaml").write_text(GATED)
    namespace: dict[str, object] = {}
    exec(compile(_python_blocks()[1], "README.md", "exec"), namespace)
    assert namespace["proposal_id"] is not None  # the gate was met and approved


def test_readme_hash_check_without_stoic_says_true(ws: stoic.Workspace, ws_path: Path) -> None:
    fill(ws, 3)
    snippet = re.search(r"```sh\n(tail -n 1 \.stoic.*?)```", README, flags=re.DOTALL)
    assert snippet is not None
    script = snippet.group(1).replace(".stoic/", f"{ws_path}/")
    result = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "True"


def test_the_demo_runs_and_shows_each_part(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "examples" / "demo.py"), str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "## What Needs Your Decision" in output  # an escalation briefing
    assert "WARNING: verifier style-review of task write-notes could not verify" in output
    assert "stoic --workspace" in output.rsplit("# To review them:", 1)[1]  # the queue waits
    # A gated agent: its risky call becomes a proposal, is approved, and the agent goes on.
    gated = output.split("asked of stoic's gate first", 1)[1]
    assert "`rm -rf build` is a proposal; the task is suspended on it" in gated
    assert "was approved for exactly this input\nran rm -rf build -> 0" in gated
    assert "ran pwd -> 0\n# build/ is gone" in gated
    # It ends with how to open the console, as a user whose printed secret logs in.
    workspace = tmp_path / "demo" / ".stoic"
    ending = result.stdout.rstrip().splitlines()[-2:]
    assert ending[0] == f"stoic -w {workspace} serve"
    said = r"# then open (\S+/login) and log in as (\S+) with the one-time secret (\S+)"
    login = re.fullmatch(said, ending[1])
    assert login is not None, ending
    with stoic.Workspace.open(workspace) as ws:  # the console's own check of a login
        user = users.authenticate(ws, login[2], login[3])
    assert user is not None and user.role == "admin"


def test_the_readme_code_map_names_every_module_and_only_modules_that_exist() -> None:
    section = README.split("## Where the code is", 1)[1].split("\n## ", 1)[0]
    package = PROJECT_ROOT / "src" / "stoic"
    current = ""
    named = []
    for line in section.splitlines():
        folder = re.match(r"- `(\w+)/`", line)
        if folder:
            current = folder[1]
        named += [(current, module) for module in re.findall(r"`(\w+\.py)`", line)]
    assert len(named) >= 15
    missing = [
        f"{folder}/{module}"
        for folder, module in named
        if not (package / folder / module).is_file()
    ]
    assert missing == []
    unnamed = [
        str(path.relative_to(package))
        for path in sorted(package.rglob("*.py"))
        if not (path.name == "__init__.py" and path.parent != package)
        and (path.parent.name if path.parent != package else "", path.name) not in set(named)
    ]
    assert unnamed == []


# -- running plans from Python ----------------------------------------------------------------

GATED = """
meta: {name: gated}
tasks:
  - {id: build, run: ["sh", "-c", "echo built"]}
  - {id: deploy, run: ["true"], depends_on: [build], approval: required}
"""


def test_a_plan_runs_from_python_and_a_gate_waits_for_an_approval(
    ws: stoic.Workspace, tmp_path: Path
) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("tasks:\n  - {id: build, run: ['true']}\n")
    report = ws.run(plan)
    assert (report.status, report.exit_code) == ("completed", 0)
    assert ws.run_status(report.run_id).status == "completed"
    assert ws.wait(report.run_id, timeout=5) == "completed"

    plan.write_text(GATED)
    report = ws.run(str(plan), workers=1)
    assert (report.status, report.exit_code) == ("awaiting_human", 3)
    assert ws.run_status(report.run_id).report.analysis.awaiting_human == ("deploy",)
    (proposal,) = [
        r.proposal_id
        for r in ws.records(run_id=report.run_id, decision_type="proposal")
        if r.decision_outcome == "created"
    ]
    assert proposal is not None
    ws.approve(proposal, by="human:ada", reason="ship it")
    report = ws.continue_run(report.run_id, actor="human:ada")
    assert (report.status, report.exit_code) == ("completed", 0)
    outcomes = [
        (r.decision_outcome, r.task_id)
        for r in ws.records(run_id=report.run_id, decision_type="execution")
    ]
    assert outcomes[-2:] == [("started", "deploy"), ("succeeded", "deploy")]
    assert ws.run_status(report.run_id).status == "completed"


def _start_runner(ws_path: Path, tmp_path: Path, name: str) -> tuple[subprocess.Popen[bytes], Path]:
    """`stoic run` in another process, its one task holding until the test drops a file."""
    go = tmp_path / f"{name}.go"
    plan = tmp_path / f"{name}.yaml"
    plan.write_text(
        f"tasks:\n  - id: hold\n    run: ['sh', '-c', 'while [ ! -e {go} ]; do sleep 0.02; done']\n"
    )
    with (tmp_path / f"{name}.err").open("wb") as errors:  # the child keeps its own copy
        runner = subprocess.Popen(
            [STOIC_BIN, "-w", str(ws_path), "run", str(plan)],
            stdout=subprocess.DEVNULL,
            stderr=errors,
            start_new_session=True,
        )
    return runner, go


def _running_task(ws: stoic.Workspace, runner: subprocess.Popen[bytes], known: set[str]) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        started = [
            r.run_id
            for r in ws.records(decision_type="execution")
            if r.decision_outcome == "started" and r.run_id not in known
        ]
        if started and started[0] is not None:
            return started[0]
        assert runner.poll() is None, "the runner ended before its task started"
        time.sleep(0.02)
    raise AssertionError("the runner never started its task")


def test_wait_blocks_while_a_runner_works_and_returns_how_the_run_stopped(
    ws: stoic.Workspace, ws_path: Path, tmp_path: Path
) -> None:
    runner, go = _start_runner(ws_path, tmp_path, "done")
    try:
        run_id = _running_task(ws, runner, set())
        assert ws.run_status(run_id).status == "running"
        assert ws.run_status(run_id).runner_working
        with pytest.raises(stoic.WaitTimedOut, match=f"run {run_id} is still running after 0.2 s"):
            ws.wait(run_id, timeout=0.2)
        go.touch()
        assert ws.wait(run_id, timeout=60) == "completed"
        assert runner.wait(timeout=60) == 0
    finally:
        go.touch()
        runner.wait(timeout=60)

    runner, go = _start_runner(ws_path, tmp_path, "killed")
    try:
        second = _running_task(ws, runner, {run_id})
        os.killpg(runner.pid, signal.SIGKILL)  # a runner killed with -9 records nothing
        runner.wait(timeout=60)
        assert ws.wait(second, timeout=60) == "interrupted"
        assert ws.run_status(second).report.runner_gone
    finally:
        go.touch()
