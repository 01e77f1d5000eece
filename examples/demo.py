"""The stoic demo: a real plan runs on a fresh workspace, one branch fails, and the run says so.

Run by `make demo`. The release plan in `examples/release/` has shell and Python tasks in a
dependency graph; its docs branch fails, so two tasks are reported stuck with their root cause
while the package branch succeeds. Then the demo shows the log, the run's status, a clean audit,
`plan check` on a plan file written by another orchestrator, and what the audit says when
someone edits a record by hand (on a copy).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

STOIC = str(Path(sys.executable).with_name("stoic"))
EXAMPLES = Path(__file__).resolve().parent


def show(*args: str) -> int:
    print(f"\n$ stoic {' '.join(args)}", flush=True)
    return subprocess.run([STOIC, *args], check=False).returncode


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "demo-workspace").absolute()
    root.mkdir(parents=True, exist_ok=True)
    workspace = root / ".stoic"
    plan_folder = root / "release"
    shutil.copytree(EXAMPLES / "release", plan_folder, dirs_exist_ok=True)
    ws = ["--workspace", str(workspace)]

    show("init", str(workspace))
    show("plan", "check", str(plan_folder / "plan.yaml"))
    ran = show(*ws, "run", str(plan_folder / "plan.yaml"), "--workers", "2")
    print(f"\n# exit code {ran}: the run failed, and every stuck task names its root cause")
    (run_id,) = [path.name for path in (workspace / "runs").iterdir()]
    show(*ws, "status", run_id)
    show(*ws, "log", "--tail", "8")
    show(*ws, "log", "--failures")
    clean = show(*ws, "audit")
    print(f"\n$ tail -12 {workspace / 'logs' / 'execution_log.md'}", flush=True)
    print("".join((workspace / "logs" / "execution_log.md").read_text().splitlines(True)[-12:]))

    print("# A plan file another orchestrator wrote, with its own statuses:", flush=True)
    checked = show("plan", "check", str(EXAMPLES / "foreign-plan.yaml"))

    tampered = root / "tampered"
    shutil.rmtree(tampered, ignore_errors=True)
    shutil.copytree(workspace, tampered)
    log = tampered / "logs" / "decision_log.ndjson"
    log.write_text(log.read_text().replace("exit status 1", "exit status 0", 1))
    print(f"\n# In a copy ({tampered}) a record was edited by hand; the audit names it:")
    caught = show("--workspace", str(tampered), "audit")
    shutil.rmtree(tampered)
    return 0 if (ran, clean, checked, caught) == (1, 0, 1, 1) else 1


if __name__ == "__main__":
    sys.exit(main())
