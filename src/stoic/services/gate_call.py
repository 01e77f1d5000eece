"""One tool call as the gate reads it: the hook's payload checked, the call the rules see,
what no rule may allow, and the `gate` record of an answer — shared by the gate's quick path
(`stoic.services.gate_quick`) and its whole one (`stoic.services.gate`)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson

from stoic.core.gate import (
    CONTENT_SEARCH_TOOLS,
    FILE_PATH_KEYS,
    MAX_COMMAND_CHARS,
    MAX_SEARCHED_FILES,
    GateRule,
    GateVerdict,
    ToolCall,
    Verdict,
    call_sha256,
    decide,
    file_path_of,
    is_inside,
    searched_by,
)
from stoic.core.gate_table import GateTable
from stoic.core.records import Decision

__all__ = [
    "MAX_HOOK_BYTES",
    "OUTCOME",
    "Answer",
    "GateAnswer",
    "HookCall",
    "Judged",
    "gate_decision",
    "judge",
    "read_hook_call",
    "rules_answer",
]

MAX_HOOK_BYTES = 1024 * 1024
"""The most a hook payload may hold: a tool input past it is denied unread."""

_FIELDS = ("session_id", "hook_event_name", "tool_name", "tool_input", "cwd")


class Answer(StrEnum):
    """What the agent is told (Claude Code's `permissionDecision` words)."""

    ALLOW = "allow"
    DENY = "deny"
    DEFER = "defer"


OUTCOME = {Answer.ALLOW: "allowed", Answer.DENY: "denied", Answer.DEFER: "deferred"}


@dataclass(frozen=True, slots=True)
class HookCall:
    """A `PreToolUse` hook's payload, checked."""

    tool_name: str
    tool_input: Mapping[str, Any]
    cwd: str
    session_id: str
    tool_use_id: str | None
    permission_mode: str | None
    transcript_path: str | None


@dataclass(frozen=True, slots=True)
class GateAnswer:
    answer: Answer
    reason: str
    proposal_id: str | None = None
    seq: int | None = None
    """The seq of the `gate` record that says so."""


def read_hook_call(raw: bytes) -> HookCall | str:
    """The payload's call, or what is wrong with it (one line, for the denial)."""
    if len(raw) > MAX_HOOK_BYTES:
        return (
            f"the hook payload is over {MAX_HOOK_BYTES // 1024} KiB: a call that large is not read"
        )
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return f"the hook payload is not JSON ({exc})"
    if not isinstance(data, dict):
        return "the hook payload is not a JSON object"
    missing = [name for name in _FIELDS if name not in data]
    if missing:
        return f"the hook payload lacks {', '.join(missing)}"
    if data["hook_event_name"] != "PreToolUse":
        return f"the gate answers PreToolUse hooks, not {str(data['hook_event_name'])[:40]!r}"
    strings = ("tool_name", "cwd", "session_id")
    wrong = [name for name in strings if not isinstance(data[name], str) or not data[name]]
    if wrong or not isinstance(data["tool_input"], dict):
        return f"the hook payload's {(wrong or ['tool_input'])[0]} is not what Claude Code sends"
    if not Path(data["cwd"]).is_absolute():
        return "the hook payload's cwd is not an absolute path"
    paths = [data["tool_input"].get(key) for key in FILE_PATH_KEYS]
    if any(isinstance(path, str) and "\0" in path for path in [data["cwd"], *paths]):
        return "the hook payload names a path with a NUL character: no file has such a name"

    def optional(name: str) -> str | None:
        value = data.get(name)
        return value if isinstance(value, str) else None

    return HookCall(
        tool_name=data["tool_name"],
        tool_input=data["tool_input"],
        cwd=data["cwd"],
        session_id=data["session_id"],
        tool_use_id=optional("tool_use_id"),
        permission_mode=optional("permission_mode"),
        transcript_path=optional("transcript_path"),
    )


def _tool_call(call: HookCall, repository: Path | None) -> ToolCall:
    """The call as the rules see it: the repository — the one the hook was given, else the
    session's `cwd` — and the file path (relative to the `cwd`, as the agent means it) with
    links resolved, so a link inside the repository to a file outside it is outside; for a
    content search, the files under its folder, links resolved likewise."""
    cwd = Path(call.cwd)
    given = file_path_of(call.tool_input, call.tool_name)
    resolved = (cwd / given).resolve() if given else None
    root = (repository or cwd).resolve()
    searched: tuple[str, ...] | None = ()
    if call.tool_name in CONTENT_SEARCH_TOOLS and resolved is not None:
        listed = _files_under(resolved)
        searched = None if listed is None else searched_by(call.tool_input, listed)
    named = os.path.normpath(cwd.resolve() / given) if given else None
    return ToolCall(
        call.tool_name,
        call.tool_input,
        str(root),
        str(resolved) if resolved is not None else None,
        searched,
        named,
    )


def _files_under(folder: Path) -> list[str] | None:
    """The files a search of `folder` could read (a file: itself), each link resolved; None
    past `MAX_SEARCHED_FILES`. A folder it cannot list is listed as far as it can be: what
    the search cannot read either."""
    if not folder.is_dir():
        return [str(folder)]
    found: list[str] = []
    for top, folders, files in os.walk(folder):
        base = Path(top)
        for name in files + [f for f in folders if (base / f).is_symlink()]:
            path = base / name
            found.append(str(path.resolve() if path.is_symlink() else path))
            if len(found) > MAX_SEARCHED_FILES:
                return None
    return found


def _refusal(workspace_root: Path, call: ToolCall) -> str | None:
    """What no rule can allow: a command too long to read, and a file tool's path inside the
    workspace — its settings, log and queue are stoic's record, not an agent's to edit."""
    named = {repr(call.tool_input[key]) for key in FILE_PATH_KEYS if key in call.tool_input}
    if len(named) > 1:
        keys = ", ".join(key for key in FILE_PATH_KEYS if key in call.tool_input)
        return f"{call.tool_name} names more than one path ({keys}): which one it uses is unclear"
    command = call.tool_input.get("command")
    if isinstance(command, str) and len(command) > MAX_COMMAND_CHARS:
        return f"a command over {MAX_COMMAND_CHARS // 1024} KiB is not read"
    workspace = str(workspace_root.resolve())
    if call.resolved_path is not None and is_inside(call.resolved_path, workspace):
        return f"{call.tool_name} on {call.resolved_path}: the workspace is stoic's record"
    return None


@dataclass(frozen=True, slots=True)
class Judged:
    """A call weighed by the rules: its verdict, or the refusal no rule can lift."""

    call: ToolCall
    verdict: GateVerdict | None
    refusal: str | None
    inputs: dict[str, Any]
    """The gate record's inputs (the agent is added where it is recorded)."""


def judge(
    workspace_root: Path,
    table: GateTable,
    call: HookCall,
    *,
    repository: Path | None,
    narrowing: Sequence[GateRule] = (),
    run_id: str | None = None,
    task_id: str | None = None,
) -> Judged:
    tool_call = _tool_call(call, repository)
    refusal = _refusal(workspace_root, tool_call)  # before any rule's regex reads the call
    verdict = (
        None if refusal else decide(table.rules, tool_call, table.default, narrowing=narrowing)
    )
    inputs: dict[str, Any] = {
        "tool_name": call.tool_name,
        "sha256": call_sha256(call.tool_name, call.tool_input),
        "tool_use_id": call.tool_use_id,
        "session_id": call.session_id,
        "cwd": call.cwd,
        "rules": list(verdict.rules) if verdict is not None else [],
        "run_id": run_id,
        "task_id": task_id,
    }
    return Judged(tool_call, verdict, refusal, inputs)


def rules_answer(judged: Judged) -> tuple[Answer, str] | None:
    """What the rules alone answer a judged call — a refusal or a deny is a denial, an allow an
    allowance — or None where they send it to a person."""
    if judged.verdict is None:
        return Answer.DENY, str(judged.refusal)
    if judged.verdict.verdict is Verdict.PROPOSE:
        return None
    allowed = judged.verdict.verdict is Verdict.ALLOW
    return (Answer.ALLOW if allowed else Answer.DENY), judged.verdict.reason


def gate_decision(
    outcome: str, reason: str, inputs: Mapping[str, Any], proposal_id: str | None = None
) -> Decision:
    """The `gate` record of one answer — in its run and task when the agent runs in one."""
    run_id, task_id = inputs.get("run_id"), inputs.get("task_id")
    return Decision(
        decision_type="gate",
        decision_outcome=outcome,
        decision_reason=reason,
        decision_source="system",
        actor="system:gate",
        decision_trigger="reactive",
        decision_inputs=dict(inputs),
        proposal_id=proposal_id,
        run_id=run_id if isinstance(run_id, str) and run_id else None,
        task_id=task_id if isinstance(task_id, str) and task_id else None,
    )
