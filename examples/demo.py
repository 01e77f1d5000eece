"""The stoic demo: a real plan runs on a fresh workspace, and every failure is handled honestly.

Run by `make demo`. The release plan in `examples/release/` has shell and Python tasks in a
dependency graph. One task hangs and is retried once (R1); one hits a tool error and waits for
a person's approval (R2); one is blocked by policy before it starts (R3); the docs branch fails,
so two tasks are reported stuck with their root cause. The demo approves the suggestion, shows
both timeline views, the log, a clean audit, `plan check` on a plan file written by another
orchestrator, and what the audit says when someone edits a record by hand (on a copy).
Then an agent works in an iterate loop and stalls, so stoic escalates with a briefing, while
fail-open verifiers warn without stopping the work; the demo ends with a night's maintenance
waiting in the review queue, and an agent whose risky tool call (`rm -rf build`) becomes a
proposal, is approved, and the agent goes on; then how to open the review console as a user
made for it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

STOIC = str(Path(sys.executable).with_name("stoic"))
SETTINGS = """[recovery]
timeout_retry_delay_seconds = 0.5

[policy]
forbidden_commands = ["git push --force"]

[agents]
# A stand-in agent CLI; for Claude Code the default is
# ["claude", "-p", "{prompt}", "--allowedTools", "{tools}", "--permission-mode", "{approval}"]
agent_cli = ["sh", "agent.sh", "{role}", "{prompt}"]

[[notifiers]]
kind = "console"
events = ["paused", "resumed", "escalation_raised", "audit_failed"]

[[notifiers]]
kind = "file"
path = "notices.ndjson"
"""
EXAMPLES = Path(__file__).resolve().parent


def show(*args: str) -> int:
    print(f"\n$ stoic {' '.join(args)}", flush=True)
    return subprocess.run([STOIC, *args], check=False).returncode


GATED_SETTINGS = """[agents]
# A stand-in for Claude Code that speaks its hook protocol (examples/gated/stand_in_claude.py)
agent_cli = ["{python}", "stand_in_claude.py", "-p", "{{prompt}}"]

[gate]
wait_seconds = 0    # no one is watching the queue: the call is deferred at once
"""


def gated_agent(root: Path) -> tuple[int, int, int]:
    """An agent's tool calls gated: `ls` goes through, `rm -rf build` waits for a person and
    suspends the task; approved, the session resumes, the call is made and the agent goes on."""
    print("\n# An agent whose every tool call is asked of stoic's gate first (gate: true).")
    workspace = root / ".stoic-gated"
    folder = root / "gated"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(EXAMPLES / "gated", folder)
    (folder / "build").mkdir()
    (folder / "build" / "stale.o").write_text("old output\n")
    ws = ["--workspace", str(workspace)]
    show("init", str(workspace))
    (workspace / "stoic.toml").write_text(GATED_SETTINGS.format(python=sys.executable))
    print(f"\n$ cat {folder / 'calls.json'}\n{(folder / 'calls.json').read_text()}", flush=True)
    suspended = show(*ws, "run", str(folder / "plan.yaml"))
    print(f"\n# exit code {suspended}: `rm -rf build` is a proposal; the task is suspended on it")
    show(*ws, "queue", "--status", "pending")
    (proposal,) = [p.stem for p in sorted((workspace / "queue" / "pending").glob("PROP-*.json"))]
    (run_id,) = [path.name for path in (workspace / "runs").iterdir()]
    approved = show(*ws, "approve", proposal, "--reason", "stale output", "--as", "demo")
    print("\n# Approved: continue resumes the agent's session, the call is made, it goes on.")
    went_on = show(*ws, "continue", run_id)
    print(f"\n$ cat {folder / 'agent-state' / 'actions.log'}", flush=True)
    print((folder / "agent-state" / "actions.log").read_text(), end="")
    print(f"# build/ is {'gone' if not (folder / 'build').exists() else 'still there'}")
    show(*ws, "log", "--type", "gate")
    return suspended, approved, went_on


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "demo-workspace").absolute()
    root.mkdir(parents=True, exist_ok=True)
    workspace = root / ".stoic"
    plan_folder = root / "release"
    shutil.copytree(EXAMPLES / "release", plan_folder, dirs_exist_ok=True)
    ws = ["--workspace", str(workspace)]

    show("init", str(workspace))
    (workspace / "stoic.toml").write_text(SETTINGS)
    print(f"\n$ cat {workspace / 'stoic.toml'}\n{SETTINGS}", flush=True)
    show("plan", "check", str(plan_folder / "plan.yaml"))
    ran = show(*ws, "run", str(plan_folder / "plan.yaml"), "--workers", "2")
    print(f"\n# exit code {ran}: a suggestion waits for a person; the rest is settled")
    (run_id,) = [path.name for path in (workspace / "runs").iterdir()]
    show(*ws, "timeline", run_id)
    print("\n# A person reads the suggestion for lint-docs, fixes the linter and approves:")
    resumed = show(*ws, "continue", run_id, "--approve-suggestion", "lint-docs", "--as", "demo")
    print(f"\n# exit code {resumed}: no task can run again; each stuck task names its root cause")
    show(*ws, "timeline", run_id, "--customer")
    show(*ws, "log", "--failures")
    clean = show(*ws, "audit")
    print(f"\n$ tail -12 {workspace / 'logs' / 'execution_log.md'}", flush=True)
    print("".join((workspace / "logs" / "execution_log.md").read_text().splitlines(True)[-12:]))

    print("# A plan file another orchestrator wrote, with its own statuses:", flush=True)
    checked = show(*ws, "plan", "check", str(EXAMPLES / "foreign-plan.yaml"))

    tampered = root / "tampered"
    shutil.rmtree(tampered, ignore_errors=True)
    shutil.copytree(workspace, tampered)
    log = tampered / "logs" / "decision_log.ndjson"
    log.write_text(log.read_text().replace("broken link", "fixed link", 1))
    print(f"\n# In a copy ({tampered}) a record was edited by hand; the audit names it:")
    caught = show("--workspace", str(tampered), "audit")
    shutil.rmtree(tampered)

    print("\n# An agent fixes lint errors in a loop and stalls on the last one; verifiers check")
    print("# the release notes (one is not installed, one crashes, one files a report).")
    agents = root / "agents"
    shutil.copytree(EXAMPLES / "agents", agents, dirs_exist_ok=True)
    show("--workspace", str(workspace), "plan", "check", str(agents / "plan.yaml"), "--json")
    escalated = show(*ws, "run", str(agents / "plan.yaml"))
    print(f"\n# exit code {escalated}: the loop did not converge; a person gets one question:")
    show(*ws, "escalations", "--open")
    show(*ws, "escalations", "show", "ESC-001")
    print(f"\n$ tail -3 {workspace / 'notices.ndjson'} | jq -c '{{event, text}}'", flush=True)
    for line in (workspace / "notices.ndjson").read_text().splitlines()[-3:]:
        notice = json.loads(line)
        print(json.dumps({"event": notice["event"], "text": notice["text"]}))
    agents_run = sorted(p.name for p in (workspace / "runs").iterdir() if p.name != run_id)[0]
    print("\n# To answer it (the task runs again with the note in $STOIC_GUIDANCE):")
    print(
        f"stoic --workspace {workspace} escalations answer ESC-001 --decision routed"
        f" --note 'split the long line into a helper' && stoic --workspace {workspace}"
        f" continue {agents_run}"
    )

    print("\n# Night-time maintenance: two things wait for a person in the morning.")
    ops = root / "ops"
    shutil.copytree(EXAMPLES / "ops", ops, dirs_exist_ok=True)
    waiting = show(*ws, "run", str(ops / "plan.yaml"))
    show(*ws, "queue", "--status", "pending")
    ops_run = sorted(p.name for p in (workspace / "runs").iterdir() if p.name != run_id)[-1]
    pending = [path.stem for path in sorted((workspace / "queue" / "pending").glob("PROP-*.json"))]
    print("\n# To review them:")
    for proposal_id in pending:
        print(f"stoic --workspace {workspace} queue show {proposal_id}")
    for proposal_id in pending:
        print(
            f"stoic --workspace {workspace} approve {proposal_id}   # or: reject"
            f" {proposal_id} --reason '…'"
        )
    print(f"stoic --workspace {workspace} continue {ops_run}")

    gated = gated_agent(root)

    print("\n# Or review them in the console: a user for it, with a one-time secret.")
    print("$ stoic --workspace … users add demo --role admin --json", flush=True)
    added = subprocess.run(
        [STOIC, *ws, "users", "add", "demo", "--role", "admin", "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    if added.returncode != 0:  # the demo ran here before: issue a new secret instead
        added = subprocess.run(
            [STOIC, *ws, "users", "reset", "demo", "--json"],
            capture_output=True,
            text=True,
            check=False,
        )
    user = json.loads(added.stdout)
    print(f"\nstoic -w {workspace} serve")
    print(
        f"# then open http://127.0.0.1:8765/login and log in as {user['name']} with the"
        f" one-time secret {user['secret']}"
    )
    expected = (3, 1, 0, 1, 1, 3, 3, (3, 0, 0))
    outcomes = (ran, resumed, clean, checked, caught, escalated, waiting, gated)
    return 0 if outcomes == expected else 1


if __name__ == "__main__":
    sys.exit(main())
