"""A gated agent task's Claude Code (DESIGN §15): the hook stoic configures for it, and the
session it resumes.

The hook is given through a settings file stoic writes for each attempt and passes with
`--settings` — the user's own settings are never edited. Its command runs `stoic gate
claude-code` against this workspace with `--defer` (print mode stops the session on a call
that waits for a person) and `--repo` pinned to the task's folder, whatever `cd` the agent
makes. The plan's `meta.gate` rules travel in the agent's environment, which its own tools
cannot change. A resumed attempt continues the session its deferral named (`--resume`).
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from stoic.core.gate_wire import NARROWING_VARIABLE
from stoic.run.attempt import Attempt
from stoic.store.atomic import atomic_write

__all__ = [
    "HOOK_TIMEOUT_SECONDS",
    "NARROWING_VARIABLE",
    "RESUME_VARIABLE",
    "gate_arguments",
    "hook_command",
    "resume_prompt",
]

RESUME_VARIABLE = "STOIC_RESUME_SESSION"
HOOK_TIMEOUT_SECONDS = 600
"""Claude Code's own bound on a command hook; the gate answers well before it (570 s)."""


def hook_command(workspace_root: Path, repository: Path) -> str:
    """The hook's command line, as Claude Code runs it (through a shell)."""
    return shlex.join(
        [
            sys.executable,
            "-P",  # Claude Code runs it in the agent's folder: never a `stoic` package there
            "-m",
            "stoic",
            "-w",
            str(workspace_root),
            "gate",
            "claude-code",
            "--defer",
            "--repo",
            str(repository),
        ]
    )


def settings_document(workspace_root: Path, repository: Path) -> dict[str, Any]:
    """The `--settings` file: one PreToolUse hook over every tool
    (https://code.claude.com/docs/en/hooks)."""
    hook = {
        "type": "command",
        "command": hook_command(workspace_root, repository),
        "timeout": HOOK_TIMEOUT_SECONDS,
    }
    return {"hooks": {"PreToolUse": [{"matcher": "*", "hooks": [hook]}]}}


def gate_arguments(
    attempt: Attempt, narrowing: Sequence[Mapping[str, Any]] | None
) -> tuple[list[str], dict[str, str]]:
    """What a gated attempt's command line and environment add: the settings file (written
    afresh for the attempt, beside its result file) and the plan's rules."""
    settings = attempt.result_path.with_name(f"{attempt.task_id}-{attempt.attempt}.gate.json")
    document = settings_document(attempt.workspace_root, attempt.plan_dir)
    atomic_write(settings, orjson.dumps(document), root=attempt.workspace_root)
    env = {NARROWING_VARIABLE: orjson.dumps(list(narrowing)).decode()} if narrowing else {}
    return ["--settings", str(settings)], env


def resume_prompt(session: str) -> str:
    return (
        f"Go on with the task where session {session} stopped: the tool call it waited on has"
        " been decided, and the gate gives you that decision when you make the call again."
    )
