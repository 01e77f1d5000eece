"""The agent gate's rules (DESIGN §15): which of an agent's tool calls go through, which are
denied and which wait for a person — decided from the call alone, with no I/O.

A rule names a verdict and what it matches: tool names (globs: `Bash`, `mcp__*`), a regex over
a Bash command, path globs over a file tool's path, and whether that path is inside or outside
the repository. A rule matches when every condition it gives holds. Of all the rules that
match, the strictest verdict wins (deny over propose over allow), so rules added later — a
plan's, given as `narrowing` — can only make the answer stricter; a call no rule matches gets
the default.

An allow rule over Bash commands must match the whole command, and never matches one with a
character past plain words and spaces (see `_PLAIN_COMMAND`): `git status` allowing `git
status; curl … | sh`, or `git log "--output=.git/config"`, would be an allow the rule's author
never wrote.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from fnmatch import fnmatchcase
from typing import Any

import orjson

__all__ = [
    "FILE_PATH_KEYS",
    "MAX_COMMAND_CHARS",
    "TOOL_CALL_TYPE",
    "GateChecker",
    "GateRule",
    "GateVerdict",
    "ToolCall",
    "Verdict",
    "Where",
    "call_sha256",
    "decide",
    "file_path_of",
    "is_inside",
    "matches",
    "rule_problem",
]


class Verdict(StrEnum):
    """What the gate answers a tool call."""

    ALLOW = "allow"
    PROPOSE = "propose"
    DENY = "deny"


_STRICTNESS = {Verdict.ALLOW: 0, Verdict.PROPOSE: 1, Verdict.DENY: 2}


class Where(StrEnum):
    """Where a file tool's path lies, against the repository (the session's `cwd`)."""

    INSIDE = "inside"
    OUTSIDE = "outside"


TOOL_CALL_TYPE = "tool_call"
"""The type of a proposal that is an agent's tool call: approving it lets that agent make the
call; stoic itself runs nothing (`stoic execute` refuses it)."""

FILE_PATH_KEYS = ("file_path", "notebook_path", "path")
"""The keys of a tool's input that name the file it reads or writes, in the order asked."""

_PLAIN_COMMAND = re.compile(r"[A-Za-z0-9 ._/:=@%+,-]*")
"""A command line an allow rule may match: words of plain characters separated by spaces.
Anything else — chaining (`;`, `&&`, `|`), substitution (`$(`, a backtick, `${IFS}`),
redirection, quotes and backslashes (which the shell removes, so `"--output=x"` reaches the
program as an option), braces, globs, `~`, a tab or a newline — is for a person to read."""

MAX_COMMAND_CHARS = 16 * 1024
"""A Bash command longer than this is denied before any rule's regex reads it: a regex over a
megabyte-long command could run for minutes, and a hook that has not answered when Claude
Code's timeout comes lets the call through."""


@dataclass(frozen=True, slots=True)
class GateRule:
    """One rule: its verdict and the conditions a call must all meet for it to apply."""

    verdict: Verdict
    name: str
    """Where the rule comes from (`stoic.toml gate.rules[2]`), for the reasoning on record."""
    tools: tuple[str, ...] = ("*",)
    command: str | None = None
    """A regex over a Bash command (searched; an allow rule must match all of it)."""
    paths: tuple[str, ...] = ()
    """Globs over a file tool's path, relative to the repository where inside it."""
    where: Where | None = None


@dataclass(frozen=True, slots=True)
class ToolCall:
    """What an agent asks to do: the tool, its input, and the repository it works in."""

    tool_name: str
    tool_input: Mapping[str, Any]
    cwd: str
    resolved_path: str | None = None
    """The file path with every link resolved (the service reads the file system for it);
    None for a tool with no path, or where it could not be resolved (then taken as given)."""


@dataclass(frozen=True, slots=True)
class GateVerdict:
    """The gate's answer by the rules, and why."""

    verdict: Verdict
    rules: tuple[str, ...]
    """The names of the rules that gave it; empty when it is the default's."""
    reason: str


def rule_problem(rule: GateRule) -> str | None:
    """What is wrong with a rule, in one line; None when it can be applied."""
    if not rule.tools or any(not tool for tool in rule.tools):
        return f"{rule.name}: `tool` names no tool"
    if rule.command is not None:
        try:
            re.compile(rule.command)
        except re.error as exc:
            return f"{rule.name}: `command` is not a regex ({exc})"
    if (rule.paths or rule.where is not None) and rule.command is not None:
        return f"{rule.name}: a rule matches a Bash command or a file path, not both"
    return None


def call_sha256(tool_name: str, tool_input: Mapping[str, Any]) -> str:
    """The sha256 of a call as canonical JSON: an approval allows exactly the input it hashes."""
    canonical = orjson.dumps([tool_name, tool_input], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def file_path_of(tool_input: Mapping[str, Any]) -> str | None:
    """The path a file tool names, if its input names one."""
    for key in FILE_PATH_KEYS:
        value = tool_input.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _absolute(path: str, cwd: str) -> str:
    return posixpath.normpath(posixpath.join(cwd, path))


def is_inside(path: str, root: str) -> bool:
    """True when `path` (absolute, normalised) lies in `root` or is it."""
    root = posixpath.normpath(root)
    return path == root or path.startswith(root.rstrip("/") + "/")


def _command_matches(rule: GateRule, command: str | None) -> bool:
    if rule.command is None:
        return True
    if command is None:
        return False
    pattern = re.compile(rule.command)
    if rule.verdict is Verdict.ALLOW:
        return _PLAIN_COMMAND.fullmatch(command) is not None and (
            pattern.fullmatch(command) is not None
        )
    return pattern.search(command) is not None


def _path_matches(rule: GateRule, call: ToolCall) -> bool:
    if not rule.paths and rule.where is None:
        return True
    given = file_path_of(call.tool_input)
    if given is None:
        return False
    path = call.resolved_path or _absolute(given, call.cwd)
    inside = is_inside(path, call.cwd)
    if rule.where is Where.INSIDE and not inside:
        return False
    if rule.where is Where.OUTSIDE and inside:
        return False
    if not rule.paths:
        return True
    shown = posixpath.relpath(path, call.cwd) if inside else path
    return any(fnmatchcase(shown, glob) or fnmatchcase(path, glob) for glob in rule.paths)


def matches(rule: GateRule, call: ToolCall) -> bool:
    """True when the call meets every condition the rule gives."""
    if not any(fnmatchcase(call.tool_name, tool) for tool in rule.tools):
        return False
    command = call.tool_input.get("command")
    return _command_matches(rule, command if isinstance(command, str) else None) and (
        _path_matches(rule, call)
    )


def decide(
    rules: Sequence[GateRule],
    call: ToolCall,
    default: Verdict,
    narrowing: Sequence[GateRule] = (),
) -> GateVerdict:
    """The strictest verdict of the `rules` that match the call, or `default` when none does;
    then made stricter by any `narrowing` rule (a plan's) that matches — never looser."""
    matched = [rule for rule in rules if matches(rule, call)]
    verdict = max((rule.verdict for rule in matched), key=_STRICTNESS.__getitem__, default=default)
    narrowed = [rule for rule in narrowing if matches(rule, call)]
    if narrowed:
        strictest = max((rule.verdict for rule in narrowed), key=_STRICTNESS.__getitem__)
        if _STRICTNESS[strictest] > _STRICTNESS[verdict]:
            verdict, matched = strictest, narrowed
    giving = tuple(rule.name for rule in matched if rule.verdict is verdict)
    if not giving:
        return GateVerdict(
            verdict, (), f"no rule matches {call.tool_name}: the default is {verdict}"
        )
    return GateVerdict(verdict, giving, f"{call.tool_name}: {verdict} by {', '.join(giving)}")


class GateChecker:
    """The audit's check of the gate's allows (DESIGN §12, §15): an allow that cites a proposal
    follows an approval of that proposal, and the proposal's action is the very call allowed
    (the sha256 on the allow's record is the one of the action's tool and input)."""

    def __init__(self) -> None:
        self._calls: dict[str, str | None] = {}
        """Each tool-call proposal's call sha256 (None where its action cannot be read)."""
        self._approved: set[str] = set()
        self._rejected: set[str] = set()

    def decided(self, proposal_id: str) -> bool:
        """Whether a person approved or rejected the proposal before the records fed so far."""
        return proposal_id in self._approved or proposal_id in self._rejected

    def feed(self, record: Mapping[str, Any]) -> str | None:
        """What is wrong with this record, if anything."""
        kind, outcome = record["decision_type"], record["decision_outcome"]
        proposal_id = record.get("proposal_id")
        if kind == "proposal" and isinstance(proposal_id, str):
            if outcome == "created":
                action = (record.get("details") or {}).get("action")
                if isinstance(action, list) and action[:1] == ["claude-code"]:
                    self._calls[proposal_id] = _action_sha256(action)
            elif outcome == "approved":
                self._approved.add(proposal_id)
            elif outcome == "rejected":
                self._rejected.add(proposal_id)
            return None
        if kind != "gate" or outcome != "allowed" or not isinstance(proposal_id, str):
            return None
        if proposal_id not in self._approved:
            return f"the gate allowed a call citing {proposal_id}, which no one approved before"
        sha256 = (record.get("decision_inputs") or {}).get("sha256")
        if proposal_id not in self._calls or self._calls[proposal_id] != sha256:
            return f"the gate allowed a call other than the one {proposal_id} was approved for"
        return None


def _action_sha256(action: list[Any]) -> str | None:
    if len(action) not in (3, 4) or not all(isinstance(part, str) for part in action):
        return None
    try:
        tool_input = orjson.loads(action[2])
    except orjson.JSONDecodeError:
        return None
    return call_sha256(action[1], tool_input) if isinstance(tool_input, dict) else None
