"""`stoic gate claude-code`: a Claude Code `PreToolUse` command hook (DESIGN §15).

It reads the hook's JSON on stdin and writes the hook's JSON answer on stdout, always with exit
code 0 and always a decision: Claude Code lets a call through when a hook crashes, prints
nothing it can read, or exits with another code, so every failure here — a payload that is not
JSON, a workspace that cannot be opened, an error inside the gate — is answered `deny`, saying
why. Only if even that answer cannot be written does it exit 2, which Claude Code reads as a
block. Answered before typer and the command line are imported: it runs at every tool call.

The hook's formats: https://code.claude.com/docs/en/hooks (PreToolUse input and decision
control).
"""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

from stoic.core.gate_wire import (
    AGENT_VARIABLE,
    DEFAULT_AGENT,
    NARROWING_VARIABLE,
    agent_name_problem,
    hook_output,
    narrowing_rules,
    wait_seconds_of,
)

__all__ = ["answer_hook", "main"]

USAGE = (
    "usage: stoic [-w WORKSPACE] gate claude-code [--agent NAME] [--repo DIR] [--defer]"
    " [--wait SECONDS]"
)


def answer_hook(
    workspace_path: Path,
    raw: bytes,
    *,
    agent: str | None = None,
    defer: bool = False,
    wait_seconds: float | None = None,
    repository: Path | None = None,
) -> tuple[str, str]:
    """The decision and its reason for one payload; every failure is a denial. An allow or a
    deny by the rules alone takes the quick path; the rest opens the workspace."""
    from stoic.services.gate_call import read_hook_call
    from stoic.services.gate_quick import quick_answer

    name = agent or os.environ.get(AGENT_VARIABLE) or DEFAULT_AGENT
    unnamed = agent_name_problem(name)
    if unnamed is not None:
        return "deny", f"stoic's gate: {unnamed}"
    who = f"agent:{name}"
    call = read_hook_call(raw)
    run_id, task_id = os.environ.get("STOIC_RUN_ID"), os.environ.get("STOIC_TASK_ID")
    try:
        narrowing = narrowing_rules(os.environ.get(NARROWING_VARIABLE))
        if not isinstance(call, str) and not isinstance(narrowing, str):
            quick = quick_answer(
                workspace_path,
                call,
                agent=who,
                repository=repository,
                narrowing=narrowing,
                run_id=run_id,
                task_id=task_id,
            )
            if quick is not None:
                return quick.answer.value, f"stoic's gate: {quick.reason}"
        from stoic.services import gate
        from stoic.services.workspace import Workspace

        with Workspace.open(workspace_path) as workspace:
            problem = call if isinstance(call, str) else narrowing
            if isinstance(problem, str):
                gate.deny_unread(workspace, problem, agent=who, size=len(raw))
                return "deny", f"stoic's gate: {problem}"
            assert not isinstance(call, str) and not isinstance(narrowing, str)
            answered = gate.check_call(
                workspace,
                call,
                agent=who,
                run_id=run_id,
                task_id=task_id,
                defer=defer,
                wait_seconds=wait_seconds,
                repository=repository,
                narrowing=narrowing,
            )
            result_file = os.environ.get("STOIC_RESULT")
            if answered.answer is gate.Answer.DEFER and answered.proposal_id and result_file:
                gate.note_deferral(Path(result_file), answered.proposal_id, call.session_id)
            return answered.answer.value, f"stoic's gate: {answered.reason}"
    except Exception as exc:  # a confused gate denies: never an allow by accident
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return "deny", f"stoic's gate could not decide, so it denies: {first}"


@dataclass(frozen=True, slots=True)
class _Options:
    agent: str | None = None
    defer: bool = False
    wait: float | None = None
    repository: Path | None = None


def _options(args: list[str]) -> _Options | str:
    found = _Options()
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--defer":
            found, index = replace(found, defer=True), index + 1
        elif arg in ("--agent", "--wait", "--repo") and index + 1 < len(args):
            value = args[index + 1]
            if arg == "--agent":
                found = replace(found, agent=value)
            elif arg == "--repo":
                found = replace(found, repository=Path(value))
            else:
                wait = wait_seconds_of(value, "--wait")
                if isinstance(wait, str):
                    return wait
                found = replace(found, wait=wait)
            index += 2
        else:
            return f"unknown option {arg!r}"
    return found


WATCHDOG_SECONDS = 570
"""After this long the hook answers `deny` whatever it is doing: past Claude Code's own timeout
(600 s) an unanswered hook lets the call through. Above the longest wait for a person."""


def _watchdog() -> None:
    def expired(signum: int, frame: object) -> None:
        said = "stoic's gate took too long to decide, so it denies"
        os.write(1, hook_output("deny", said) + b"\n")
        os._exit(0)

    signal.signal(signal.SIGALRM, expired)
    signal.alarm(WATCHDOG_SECONDS)


def main(
    workspace_path: Path, args: list[str], stdin: BinaryIO | None = None, *, watchdog: bool = False
) -> int:
    """Answer one hook call; the exit code is 0 whatever the decision (2 only when no answer
    could be written, or for a command line that is not the gate's)."""
    if args in (["--help"], ["-h"]):
        print(USAGE)
        return 0
    options = _options(args)
    if isinstance(options, str):
        print(f"Error: {options}\n{USAGE}", file=sys.stderr)
        return 2
    if watchdog:  # the console script's own process, never a caller's
        _watchdog()
    try:
        source = stdin if stdin is not None else sys.stdin.buffer
        from stoic.services.gate_call import MAX_HOOK_BYTES

        raw = source.read(MAX_HOOK_BYTES + 1)
        decision, reason = answer_hook(
            workspace_path,
            raw,
            agent=options.agent,
            defer=options.defer,
            wait_seconds=options.wait,
            repository=options.repository,
        )
    except Exception as exc:
        decision, reason = "deny", f"stoic's gate could not decide, so it denies: {exc}"
    try:
        sys.stdout.buffer.write(hook_output(decision, reason) + b"\n")
        sys.stdout.buffer.flush()
    except Exception:
        print("stoic's gate: no answer could be written; blocking the call", file=sys.stderr)
        return 2
    return 0
