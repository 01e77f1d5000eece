"""The stoic demo: a fresh workspace, a few recorded decisions, the log, and an audit.

Run by `make demo`. It also shows what the audit says when someone edits a record by hand, on a
copy of the workspace.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import stoic

STOIC = str(Path(sys.executable).with_name("stoic"))


def show(*args: str) -> int:
    print(f"\n$ stoic {' '.join(args)}", flush=True)
    return subprocess.run([STOIC, *args], check=False).returncode


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "demo-workspace")
    show("init", str(root))

    with stoic.Workspace.open(root) as ws:
        run = "run-demo-1"
        ws.record(
            "run_lifecycle",
            "started",
            "Run of plan release.yaml started.",
            run_id=run,
            actor="system:runner",
            causal_role="pre_run",
        )
        ws.record(
            "execution",
            "started",
            "Task build started (attempt 1).",
            run_id=run,
            task_id="build",
            attempt=1,
            actor="system:runner",
            causal_role="in_run",
        )
        ws.record(
            "execution",
            "succeeded",
            "Task build exited 0 after 1.2 s.",
            run_id=run,
            task_id="build",
            attempt=1,
            actor="system:runner",
            causal_role="in_run",
            inputs={"exit_code": 0, "duration_s": 1.2},
        )
        # Two decisions that belong together are written with one fsync.
        ws.record_many(
            [
                {
                    "decision_type": "execution",
                    "decision_outcome": "started",
                    "reason": "Task deploy started (attempt 1).",
                    "run_id": run,
                    "task_id": "deploy",
                    "attempt": 1,
                    "actor": "system:runner",
                    "causal_role": "in_run",
                },
                {
                    "decision_type": "execution",
                    "decision_outcome": "failed",
                    "reason": "Task deploy exited 2: connection refused by the target host.",
                    "run_id": run,
                    "task_id": "deploy",
                    "attempt": 1,
                    "actor": "system:runner",
                    "causal_role": "in_run",
                    "inputs": {"exit_code": 2},
                },
            ]
        )
        ws.record(
            "run_lifecycle",
            "failed",
            "No task can run again: deploy failed.",
            run_id=run,
            actor="system:runner",
            causal_role="post_run",
            inputs={"blocked": [], "failed": ["deploy"]},
        )

    show("--workspace", str(root), "log")
    show("--workspace", str(root), "log", "--failures")
    show("--workspace", str(root), "status")
    clean = show("--workspace", str(root), "audit")

    tampered = root.with_name(root.name + "-tampered")
    shutil.rmtree(tampered, ignore_errors=True)
    shutil.copytree(root, tampered)
    log = tampered / "logs" / "decision_log.ndjson"
    log.write_text(log.read_text().replace("exited 2", "exited 0"))
    print(f"\n# In a copy ({tampered}) a record was edited by hand; the audit names it:")
    caught = show("--workspace", str(tampered), "audit")
    shutil.rmtree(tampered)
    return 0 if clean == 0 and caught == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
