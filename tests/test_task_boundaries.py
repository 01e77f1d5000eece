"""What a task can reach: it never decides as a person, runs only what policy allows, imports
only from its plan's folder, and sees only the environment it is allowed (issue 12)."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pytest

import stoic
from tests.conftest import STOIC_BIN, log_path, run_cli

if TYPE_CHECKING:
    from stoic.run.attempt import AttemptResult


def records(ws_path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in log_path(ws_path).read_bytes().splitlines()]


def of_type(ws_path: Path, kind: str, outcome: str | None = None) -> list[dict[str, object]]:
    return [
        r
        for r in records(ws_path)
        if r["decision_type"] == kind and (outcome is None or r["decision_outcome"] == outcome)
    ]


def propose(ws_path: Path, *command: str) -> str:
    result = run_cli(
        "-w", str(ws_path), "propose", "--title", "t", "--reasoning", "r", "--", *command
    )
    assert result.exit_code == 0, result.stderr
    return result.stdout.strip().splitlines()[0]


def shell_task(task_id: str, command: str) -> str:
    return f"tasks:\n  - {{id: {task_id}, run: {orjson.dumps(command).decode()}, shell: true}}\n"


def run_plan(ws_path: Path, folder: Path, body: str) -> tuple[int, str]:
    plan = folder / "plan.yaml"
    plan.write_text(body)
    result = run_cli("-w", str(ws_path), "run", str(plan))
    return result.exit_code, result.stdout + result.stderr


def attempt_log(ws_path: Path, task: str) -> str:
    (run,) = list((ws_path / "runs").iterdir())
    path = run / "tasks" / task / "attempt-1.log"
    return path.read_text() if path.exists() else ""


def assert_audit_clean(ws_path: Path) -> None:
    result = run_cli("-w", str(ws_path), "audit")
    assert result.exit_code == 0, result.stdout


# -- item 9: a task cannot act as a person ---------------------------------------------------

APPROVER = """
import os
from pathlib import Path
import stoic

def approve(proposal):
    root = Path(os.environ["STOIC_RESULT"]).parents[3]
    for name in [n for n in os.environ if n.startswith("STOIC_")]:
        del os.environ[name]  # the worker process is a task's, whatever its environment says
    with stoic.Workspace.open(root) as ws:
        ws.approve(proposal, by="human:alice", reason="looks fine")
"""


def test_a_python_task_cannot_approve_as_a_person(tmp_path: Path, ws_path: Path) -> None:
    proposal = propose(ws_path, "true")
    (tmp_path / "approver.py").write_text(APPROVER)
    code, out = run_plan(
        ws_path,
        tmp_path,
        f'tasks:\n  - {{id: sneak, call: "approver:approve", params: {{proposal: {proposal}}}}}\n',
    )
    assert code == 1, out
    assert of_type(ws_path, "proposal", "approved") == []
    (failed,) = of_type(ws_path, "execution", "failed")
    assert "a task cannot act as a person" in failed["decision_inputs"]["message"]  # type: ignore[index]
    assert (ws_path / "queue" / "pending" / f"{proposal}.json").exists()
    assert_audit_clean(ws_path)


def test_a_shell_task_cannot_execute_as_a_person(tmp_path: Path, ws_path: Path) -> None:
    marker = tmp_path / "ran"
    proposal = propose(ws_path, "touch", str(marker))
    assert run_cli("-w", str(ws_path), "approve", proposal, "--as", "bob").exit_code == 0
    command = shlex.join([STOIC_BIN, "-w", str(ws_path), "execute", proposal, "--as", "alice"])
    code, out = run_plan(
        ws_path,
        tmp_path,
        f"tasks:\n  - {{id: sneak, run: {orjson.dumps(command).decode()}, shell: true}}\n",
    )
    assert code == 1, out
    assert not marker.exists()
    assert of_type(ws_path, "proposal", "execution_started") == []
    assert "a task cannot decide as a person" in attempt_log(ws_path, "sneak")
    assert_audit_clean(ws_path)


def test_a_task_proposes_as_itself_with_its_run_and_task(tmp_path: Path, ws_path: Path) -> None:
    command = shlex.join(
        [STOIC_BIN, "-w", str(ws_path), "propose", "--title", "t", "--reasoning", "r"]
    )
    code, out = run_plan(
        ws_path,
        tmp_path,
        f"tasks:\n  - {{id: asker, run: {orjson.dumps(command).decode()}, shell: true}}\n",
    )
    assert code == 0, out
    (created,) = of_type(ws_path, "proposal", "created")
    assert created["decision_source"] == "system"
    assert created["actor"] == "system:task"
    from_task = created["details"]["from_task"]  # type: ignore[index]
    assert from_task["task_id"] == "asker"
    run_id = (ws_path / "runs").iterdir().__next__().name
    assert from_task["run_id"] == run_id
    # Every view of it says the task proposed it, never a person.
    shown = run_cli("-w", str(ws_path), "queue", "show", str(created["proposal_id"]), "--json")
    proposal = orjson.loads(shown.stdout)
    assert (proposal["origin"], proposal["run_id"], proposal["task_id"]) == (
        "system:task",
        run_id,
        "asker",
    )
    assert_audit_clean(ws_path)


FORGER = """
import os
from pathlib import Path
import stoic

def forge():
    root = Path(os.environ["STOIC_RESULT"]).parents[3]
    with stoic.Workspace.open(root) as ws:
        ws.propose(title="t", reasoning_trace=["r"], by="system:ops", origin="human")
"""


def test_a_python_task_cannot_claim_a_person_as_a_proposals_origin(
    tmp_path: Path, ws_path: Path
) -> None:
    (tmp_path / "forger.py").write_text(FORGER)
    code, out = run_plan(ws_path, tmp_path, 'tasks:\n  - {id: forger, call: "forger:forge"}\n')
    assert code == 0, out
    (created,) = of_type(ws_path, "proposal", "created")
    shown = run_cli("-w", str(ws_path), "queue", "show", str(created["proposal_id"]), "--json")
    proposal = orjson.loads(shown.stdout)
    assert proposal["origin"] == "system:task"
    assert proposal["task_id"] == "forger"
    assert_audit_clean(ws_path)


def test_audit_names_a_human_decision_made_from_inside_a_task(ws_path: Path) -> None:
    with stoic.Workspace.open(ws_path) as ws:
        ws.record(
            "pause",
            "paused",
            "Stopped by alice.",
            source="human",
            actor="human:alice",
            details={"from_task": {"run_id": "run-1", "task_id": "sneak"}},
        )
    result = run_cli("-w", str(ws_path), "audit", "--json")
    assert result.exit_code == 1
    assert "person_inside_task" in result.stdout
    assert "inside task sneak of run run-1" in result.stdout


@pytest.mark.parametrize(
    ("outcome", "actor", "source"),
    [
        ("approved", "agent:bot", "system"),
        ("rejected", "system:gate", "system"),
        ("deferred", "human:ann", "system"),
        ("undeferred", "agent:bot", "human"),
    ],
)
def test_no_writer_records_a_proposals_decision_no_person_made(
    ws_path: Path, outcome: str, actor: str, source: str
) -> None:
    """The folds would skip such a record and the audit name it for good (pausing the
    workspace with no repair possible): the Python API refuses it before it is written."""
    assert run_cli("-w", str(ws_path), "propose", "--title", "t", "--reasoning", "r").exit_code == 0
    before = log_path(ws_path).read_bytes()
    with (
        stoic.Workspace.open(ws_path) as ws,
        pytest.raises(stoic.UsageError, match="only a person decides a proposal"),
    ):
        ws.record(
            "proposal", outcome, "forged", actor=actor, source=source,
            proposal_id="PROP-00000000-001",
        )  # fmt: skip
    assert log_path(ws_path).read_bytes() == before
    with stoic.Workspace.open(ws_path) as ws:  # a person's, as a person, is recorded
        ws.record(
            "proposal", "deferred", "later", actor="human:ann", source="human",
            proposal_id="PROP-00000000-001",
        )  # fmt: skip
    assert_audit_clean(ws_path)


# -- item 6: policy covers every process stoic starts ------------------------------------------

STRICT = '[policy]\nallowed_executors = ["python"]\nforbidden_commands = ["touch"]\n'
NOOP = "def noop():\n    return 1\n"


def test_policy_covers_iterate_checks_and_verifiers(tmp_path: Path, ws_path: Path) -> None:
    (ws_path / "stoic.toml").write_text(STRICT)
    (tmp_path / "steps.py").write_text(NOOP)
    checked, verified = tmp_path / "checked", tmp_path / "verified"
    code, out = run_plan(
        ws_path,
        tmp_path,
        "tasks:\n"
        f'  - {{id: looped, call: "steps:noop", iterate: {{check: [touch, "{checked}"]}}}}\n'
        f'  - {{id: checked, call: "steps:noop",'
        f' verify: [{{id: v, run: [touch, "{verified}"]}}]}}\n',
    )
    assert code == 1, out
    assert not checked.exists() and not verified.exists()
    blocked = {
        r["task_id"]: r["decision_inputs"] for r in of_type(ws_path, "policy_check", "blocked")
    }
    assert blocked["looped"]["command"] == f"touch {checked}"  # type: ignore[index]
    assert blocked["checked"]["command"] == f"touch {verified}"  # type: ignore[index]
    assert "executor 'shell' is not allowed" in blocked["looped"]["rule"]  # type: ignore[index]
    assert len(of_type(ws_path, "execution", "halted")) == 2
    assert of_type(ws_path, "execution", "started") == []
    assert_audit_clean(ws_path)


def test_execute_and_rollback_obey_the_policy_on_record(tmp_path: Path, ws_path: Path) -> None:
    marker = tmp_path / "ran"
    proposal = propose(ws_path, "touch", str(marker))
    assert run_cli("-w", str(ws_path), "approve", proposal, "--as", "bob").exit_code == 0
    (ws_path / "stoic.toml").write_text('[policy]\nforbidden_commands = ["^touch "]\n')
    refused = run_cli("-w", str(ws_path), "execute", proposal, "--as", "bob")
    assert refused.exit_code == 1
    assert "refused by policy: command matches forbidden pattern '^touch '" in refused.stderr
    assert not marker.exists()
    (blocked,) = of_type(ws_path, "policy_check", "blocked")
    assert blocked["proposal_id"] == proposal
    assert of_type(ws_path, "proposal", "execution_started") == []
    (ws_path / "stoic.toml").write_text('[policy]\nallowed_executors = ["python"]\n')
    refused = run_cli("-w", str(ws_path), "execute", proposal, "--as", "bob")
    assert "executor 'shell' is not allowed" in refused.stderr
    assert not marker.exists()
    assert_audit_clean(ws_path)


def test_execute_obeys_the_policy_of_the_run_a_proposal_came_from(
    tmp_path: Path, ws_path: Path
) -> None:
    marker = tmp_path / "ran"
    # The task builds the command line, so its own is not the forbidden one.
    proposer = shlex.join(
        [STOIC_BIN, "-w", str(ws_path), "propose", "--title", "t", "--reasoning", "r", "--"]
    )
    command = f"{proposer} $(printf tou)ch {shlex.quote(str(marker))}"
    code, out = run_plan(
        ws_path,
        tmp_path,
        'meta: {name: p, policy: {forbidden_commands: ["touch"]}}\n' + shell_task("asker", command),
    )
    assert code == 0, out
    (created,) = of_type(ws_path, "proposal", "created")
    proposal = str(created["proposal_id"])
    assert run_cli("-w", str(ws_path), "approve", proposal, "--as", "bob").exit_code == 0
    result = run_cli("-w", str(ws_path), "execute", proposal, "--as", "bob")
    assert result.exit_code == 1, result.stdout
    assert "refused by policy" in result.stderr
    assert not marker.exists()
    assert of_type(ws_path, "proposal", "execution_started") == []
    (blocked,) = of_type(ws_path, "policy_check", "blocked")
    assert blocked["proposal_id"] == proposal
    assert_audit_clean(ws_path)


def test_an_executed_action_sees_the_allowlist_and_its_output_is_masked(
    tmp_path: Path, ws_path: Path
) -> None:
    (ws_path / "stoic.toml").write_text('[policy]\nenv_passthrough = ["PATH", "API_TOKEN"]\n')
    proposal = propose(ws_path, "sh", "-c", "echo token=$API_TOKEN aws=$AWS_SECRET_ACCESS_KEY")
    assert run_cli("-w", str(ws_path), "approve", proposal, "--as", "bob").exit_code == 0
    secrets = {"API_TOKEN": "tok-5ecret-value", "AWS_SECRET_ACCESS_KEY": "aws-5ecret-value"}
    done = run_cli("-w", str(ws_path), "execute", proposal, "--as", "bob", env=secrets)
    assert done.exit_code == 0, done.stderr
    log = log_path(ws_path).read_text()
    assert "5ecret" not in log and "5ecret" not in done.stdout
    (executed,) = of_type(ws_path, "proposal", "executed")
    assert executed["details"]["output"] == "token=[API_TOKEN masked] aws=\n"  # type: ignore[index]


def test_command_notifiers_obey_the_policy_and_the_allowlist(tmp_path: Path, ws_path: Path) -> None:
    touched, seen = tmp_path / "touched", tmp_path / "env.txt"
    (ws_path / "stoic.toml").write_text(
        '[policy]\nforbidden_commands = ["touch"]\n'
        f'[[notifiers]]\nkind = "command"\ncommand = ["touch", "{touched}"]\n'
        f'[[notifiers]]\nkind = "command"\ncommand = ["sh", "-c", "env > {seen}"]\n'
    )
    stopped = run_cli(
        "-w", str(ws_path), "stop", "--reason", "checking", env={"DB_PASSWORD": "hunter2-db"}
    )
    assert stopped.exit_code == 0, stopped.stderr
    assert not touched.exists()
    (failed,) = of_type(ws_path, "notification", "failed")
    assert "refused by policy: command matches forbidden pattern 'touch'" in str(
        failed["decision_reason"]
    )
    shown = seen.read_text()
    assert "STOIC_EVENT=paused" in shown
    assert "hunter2" not in shown


def test_a_webhook_is_recorded_without_its_path_and_query(ws_path: Path) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(200 if self.path.startswith("/services/") else 500)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            del format, args

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        (ws_path / "stoic.toml").write_text(
            f'[[notifiers]]\nkind = "webhook"\nurl = "{base}/services/T0/B0/XoXsecret?k=qsecret"\n'
            f'[[notifiers]]\nkind = "webhook"\nurl = "{base}/hooks/XoXsecret2"\n'
        )
        assert run_cli("-w", str(ws_path), "stop", "--reason", "checking").exit_code == 0
    finally:
        server.shutdown()
        server.server_close()
    (sent,) = of_type(ws_path, "notification", "sent")
    (failed,) = of_type(ws_path, "notification", "failed")
    assert f"({base}/…)" in str(sent["details"])
    text = log_path(ws_path).read_text()
    assert "secret" not in text and "/services" not in text and "/hooks" not in text
    assert "HTTP 500" in str(failed["decision_reason"])


def test_a_command_notifiers_url_argument_is_recorded_without_its_path(ws_path: Path) -> None:
    (ws_path / "stoic.toml").write_text(
        '[[notifiers]]\nkind = "command"\n'
        'command = ["false", "https://hooks.example.com/services/T0/B0/XoXsecret?k=qsecret"]\n'
    )
    assert run_cli("-w", str(ws_path), "stop", "--reason", "checking").exit_code == 0
    (failed,) = of_type(ws_path, "notification", "failed")
    assert "(false https://hooks.example.com/…)" in str(failed["decision_reason"])
    text = log_path(ws_path).read_text()
    assert "secret" not in text and "/services" not in text


# -- item 7: call: imports only from the plan's folder ----------------------------------------


def test_call_cannot_import_a_module_outside_the_plan_folder(tmp_path: Path, ws_path: Path) -> None:
    marker = tmp_path / "popened"
    code, out = run_plan(
        ws_path,
        tmp_path,
        f'tasks:\n  - {{id: sneak, call: "os:popen", params: {{cmd: "touch {marker}"}}}}\n',
    )
    assert code == 1, out
    assert not marker.exists()
    (blocked,) = of_type(ws_path, "policy_check", "blocked")
    assert "module 'os' is neither in the plan's folder nor in policy allowed_modules" in str(
        blocked["decision_inputs"]
    )
    assert of_type(ws_path, "execution", "started") == []
    assert_audit_clean(ws_path)


def test_allowed_modules_lets_a_named_package_be_called(tmp_path: Path, ws_path: Path) -> None:
    (ws_path / "stoic.toml").write_text('[policy]\nallowed_modules = ["json"]\n')
    code, out = run_plan(
        ws_path, tmp_path, 'tasks:\n  - {id: j, call: "json:dumps", params: {obj: [1]}}\n'
    )
    assert code == 0, out
    (ended,) = of_type(ws_path, "execution", "succeeded")
    assert ended["details"]["outputs"] == "[1]"  # type: ignore[index]


def test_call_never_imports_from_the_invoking_shells_folder(tmp_path: Path, ws_path: Path) -> None:
    """The runner's own working directory is not the plan's folder: a module there is not
    found, in the runner's check or in the worker."""
    import os
    import subprocess

    shell_dir, plan_dir = tmp_path / "shell", tmp_path / "plan"
    shell_dir.mkdir()
    plan_dir.mkdir()
    marker = tmp_path / "imported"
    (shell_dir / "evil.py").write_text(f"open({str(marker)!r}, 'w').close()\ndef f():\n    pass\n")
    (plan_dir / "plan.yaml").write_text('tasks:\n  - {id: a, call: "evil:f"}\n')
    done = subprocess.run(
        [STOIC_BIN, "-w", str(ws_path), "run", str(plan_dir / "plan.yaml")],
        cwd=shell_dir,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": ""},
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert not marker.exists()


def _worker_calls(tmp_path: Path, calls: list[tuple[str, dict[str, Any]]]) -> list[AttemptResult]:
    """Each call run in turn by one real Python worker, as attempts of one task."""
    from stoic.run.attempt import Attempt
    from stoic.run.python_pool import WorkerPool

    pool = WorkerPool(1)
    try:
        return [
            pool.run(
                call,
                params,
                Attempt(
                    run_id="r",
                    request_id="r/t",
                    task_id="t",
                    attempt=1,
                    attempt_id=f"a{i}",
                    log_path=tmp_path / f"a{i}.log",
                    result_path=tmp_path / f"a{i}.json",
                    workspace_root=tmp_path,
                    plan_dir=tmp_path,
                    timeout=60,
                    output_cap_bytes=1 << 20,
                    kill_grace_seconds=1,
                ),
            )
            for i, (call, params) in enumerate(calls)
        ]
    finally:
        pool.close()


def test_the_worker_refuses_a_module_outside_the_plan_folder(tmp_path: Path) -> None:
    """The worker itself checks, whatever the runner admitted (a plan file shadowing a module
    the worker has loaded is refused too)."""
    (tmp_path / "json.py").write_text("def dumps(obj):\n    return 'shadow'\n")
    results = _worker_calls(
        tmp_path,
        [("os:getcwd", {}), ("json:dumps", {"obj": 1}), ("subprocess:run", {"args": ["true"]})],
    )
    messages = [r.failure.message if r.failure else "ran" for r in results]
    assert "module 'os' is neither in the plan's folder" in messages[0]
    assert "has the name of a module already loaded" in messages[1]
    assert "module 'subprocess' is neither in the plan's folder" in messages[2]


def test_the_worker_checks_a_call_again_once_its_module_was_swapped(tmp_path: Path) -> None:
    """A call the worker checked once is not checked again while its module is the one it
    checked; a task that swaps the module in sys.modules gets the check again."""
    (tmp_path / "tasks.py").write_text(
        "import sys, types\n"
        "def f():\n    return 'inside'\n"
        "def swap():\n"
        "    fake = types.ModuleType('tasks')\n"
        "    fake.__file__ = '/elsewhere/tasks.py'\n"
        "    fake.f = lambda: 'outside'\n"
        "    sys.modules['tasks'] = fake\n"
    )
    results = _worker_calls(
        tmp_path, [(call, {}) for call in ["tasks:f", "tasks:f", "tasks:swap", "tasks:f"]]
    )
    assert [r.outputs for r in results[:2]] == ["inside", "inside"]
    assert results[2].failure is None
    assert results[3].failure is not None
    assert "has the name of a module already loaded" in results[3].failure.message


# -- item 8: the environment allowlist, and nothing secret in the runner's block ---------------

READER = """
import os

def parent_environ():
    with open(f"/proc/{os.getppid()}/environ", "rb") as handle:
        return handle.read().decode(errors="replace")

def own_environ():
    return dict(os.environ)
"""

SECRETS = {"SECRET_TOKEN": "tok-5ecret-1", "AWS_SECRET_ACCESS_KEY": "aws-5ecret-2"}


def test_tasks_cannot_read_secrets_from_the_runners_environment(
    tmp_path: Path, ws_path: Path
) -> None:
    import os
    import subprocess

    (ws_path / "stoic.toml").write_text('[policy]\nenv_passthrough = ["PATH", "HOME", "LANG"]\n')
    (tmp_path / "reader.py").write_text(READER)
    (tmp_path / "plan.yaml").write_text(
        "tasks:\n"
        '  - {id: py, call: "reader:parent_environ"}\n'
        "  - id: sh\n"
        "    shell: true\n"
        "    run: \"tr '\\\\0' '\\\\n' < /proc/$PPID/environ; env\"\n"
    )
    done = subprocess.run(
        [STOIC_BIN, "-w", str(ws_path), "run", str(tmp_path / "plan.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **SECRETS, "STOIC_ACTOR": "carol"},
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (ended,) = [r for r in of_type(ws_path, "execution", "succeeded") if r["task_id"] == "py"]
    parent = str(ended["details"]["outputs"])  # type: ignore[index]
    assert "PATH=" in parent  # it did read the runner's block …
    assert "5ecret" not in parent  # … and found no secret there
    shell_output = attempt_log(ws_path, "sh")
    assert "PATH=" in shell_output and "5ecret" not in shell_output
    assert "5ecret" not in log_path(ws_path).read_text()
    for log in (ws_path / "runs").rglob("*.log"):
        assert "5ecret" not in log.read_text()


def test_a_plans_narrower_policy_keeps_its_variable_out_of_the_runners_block(
    tmp_path: Path, ws_path: Path
) -> None:
    """The runner confines itself early by the workspace's policy, then by the plan's: a
    variable the workspace passes on but the plan's policy does not is in no block either."""
    import os
    import subprocess

    (ws_path / "stoic.toml").write_text(
        '[policy]\nenv_passthrough = ["PATH", "HOME", "WIDE_ONLY"]\n'
    )
    (tmp_path / "reader.py").write_text(READER)
    (tmp_path / "plan.yaml").write_text(
        'meta: {policy: {env_passthrough: ["PATH", "HOME"]}}\n'
        'tasks:\n  - {id: py, call: "reader:parent_environ"}\n'
    )
    done = subprocess.run(
        [STOIC_BIN, "-w", str(ws_path), "run", str(tmp_path / "plan.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **SECRETS, "WIDE_ONLY": "w1de-value"},
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (ended,) = of_type(ws_path, "execution", "succeeded")
    parent = str(ended["details"]["outputs"])  # type: ignore[index]
    assert "PATH=" in parent
    assert "w1de-value" not in parent and "5ecret" not in parent


def test_the_default_environment_is_an_allowlist(tmp_path: Path, ws_path: Path) -> None:
    (tmp_path / "reader.py").write_text(READER)
    code, out = run_plan_env(
        ws_path,
        tmp_path,
        'tasks:\n  - {id: py, call: "reader:own_environ", env: {DECLARED: "yes"}}\n',
        {**SECRETS, "LC_TIME": "C", "TZ": "UTC"},
    )
    assert code == 0, out
    (ended,) = of_type(ws_path, "execution", "succeeded")
    seen = ended["details"]["outputs"]  # type: ignore[index]
    assert "SECRET_TOKEN" not in seen and "AWS_SECRET_ACCESS_KEY" not in seen
    assert seen["DECLARED"] == "yes" and seen["LC_TIME"] == "C" and seen["TZ"] == "UTC"
    assert "PATH" in seen and seen["STOIC_TASK_ID"] == "py"


def run_plan_env(ws_path: Path, folder: Path, body: str, env: dict[str, str]) -> tuple[int, str]:
    plan = folder / "plan.yaml"
    plan.write_text(body)
    result = run_cli("-w", str(ws_path), "run", str(plan), env=env)
    return result.exit_code, result.stdout + result.stderr


ECHO_SECRET = """
import os

def leak():
    print("printing", os.environ["API_TOKEN"])
    return {"token": os.environ["API_TOKEN"]}
"""


def test_a_secret_a_task_was_given_is_masked_in_its_records(tmp_path: Path, ws_path: Path) -> None:
    (tmp_path / "leaky.py").write_text(ECHO_SECRET)
    code, out = run_plan(
        ws_path,
        tmp_path,
        'tasks:\n  - {id: leak, call: "leaky:leak", env: {API_TOKEN: "tok-5ecret-3"}}\n'
        '  - {id: fail, run: ["sh", "-c", "exit 3"], env: {API_TOKEN: "tok-5ecret-3"},'
        " depends_on: [leak]}\n",
    )
    assert code == 1, out
    (ended,) = of_type(ws_path, "execution", "succeeded")
    assert ended["details"]["outputs"] == {"token": "[API_TOKEN masked]"}  # type: ignore[index]
    assert "5ecret" not in log_path(ws_path).read_text()


def test_a_result_file_planted_as_a_link_is_not_followed(tmp_path: Path, ws_path: Path) -> None:
    private = tmp_path / "private.json"
    private.write_text('{"steps_completed": 0, "note": "pr1vate-credential"}')
    for name, how in (("soft", "ln -s"), ("hard", "ln")):
        code, out = run_plan(ws_path, tmp_path, shell_task(name, f"{how} {private} $STOIC_RESULT"))
        assert code == 0, out
    assert "pr1vate" not in log_path(ws_path).read_text()
    errors = [str(r["details"]) for r in of_type(ws_path, "execution", "succeeded")]
    assert "is a link; stoic never follows a link" in errors[0]
    assert "hard link" in errors[1]


# -- runner.task_user ------------------------------------------------------------------------


def _world_readable_folder() -> Path:
    """pytest's tmp_path is root's alone; the task user must be able to enter the plan's folder."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="stoic-task-user-"))
    folder.chmod(0o755)
    return folder


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can run tasks as another user")
def test_tasks_run_as_the_task_user_and_cannot_write_the_log() -> None:
    import pwd
    import shutil

    nobody = pwd.getpwnam("nobody")
    folder = _world_readable_folder()
    try:
        ws_path = folder / "ws"
        stoic.Workspace.init(ws_path).close()
        (ws_path / "stoic.toml").write_text('[runner]\ntask_user = "nobody"\n')
        log = log_path(ws_path)
        code, out = run_plan(
            ws_path,
            folder,
            shell_task(
                "who", 'echo "{\\"steps_completed\\": 0, \\"uid\\": $(id -u)}" > $STOIC_RESULT'
            )
            + "  - {id: forge, run: "
            + orjson.dumps(f"echo forged >> {log}").decode()
            + ", shell: true}\n",
        )
        assert code == 1, out
        ended = {r["task_id"]: r for r in records(ws_path) if r["decision_type"] == "execution"}
        assert ended["who"]["decision_outcome"] == "succeeded"
        assert ended["who"]["details"]["result"]["uid"] == nobody.pw_uid  # type: ignore[index]
        assert ended["forge"]["decision_outcome"] == "failed"
        assert "Permission denied" in attempt_log(ws_path, "forge")
        assert_audit_clean(ws_path)
    finally:
        shutil.rmtree(folder)


def test_a_task_user_is_refused_unless_stoic_is_root_or_when_unknown(
    tmp_path: Path, ws_path: Path
) -> None:
    (ws_path / "stoic.toml").write_text('[runner]\ntask_user = "no-such-user-xyz"\n')
    code, out = run_plan(ws_path, tmp_path, shell_task("a", "true"))
    assert code == 2
    expected = "no user 'no-such-user-xyz'" if os.geteuid() == 0 else "only root"
    assert expected in out
    assert not (ws_path / "runs").exists() or not list((ws_path / "runs").iterdir())


def test_the_cli_looks_for_the_held_environment_under_the_name_it_is_handed_over_by() -> None:
    from stoic.cli.app import HELD_FD_NAME
    from stoic.run.environment import HELD_FD_VARIABLE

    assert HELD_FD_NAME.encode() == HELD_FD_VARIABLE


def test_the_console_script_finds_a_runs_workspace_as_the_command_line_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from stoic.cli.app import DEFAULT_WORKSPACE
    from stoic.cli.entry import DEFAULT_WORKSPACE as ENTRY_DEFAULT
    from stoic.cli.entry import run_workspace

    monkeypatch.delenv("STOIC_WORKSPACE", raising=False)
    assert Path(ENTRY_DEFAULT) == DEFAULT_WORKSPACE
    assert run_workspace(["run", "plan.yaml"]) == DEFAULT_WORKSPACE
    assert run_workspace(["-w", "ws", "--debug", "continue", "r1"]) == Path("ws")
    assert run_workspace(["--workspace=w s", "retry", "r1", "t"]) == Path("w s")
    for other in (["status"], ["-wws", "run", "p"], ["--workspace"], ["queue", "approve", "p"]):
        assert run_workspace(other) is None  # typer reads these; the command confines itself
    monkeypatch.setenv("STOIC_WORKSPACE", "elsewhere")
    assert run_workspace(["run", "plan.yaml"]) is None
