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

from stoic.core.proposals import decided_by_a_person

__all__ = [
    "CONTENT_SEARCH_TOOLS",
    "FILE_PATH_KEYS",
    "MAX_COMMAND_CHARS",
    "MAX_SEARCHED_FILES",
    "SEARCH_TOOLS",
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
    "searched_by",
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

SEARCH_TOOLS = frozenset({"Grep", "Glob"})
"""Tools whose `path` is a folder to search, the session's `cwd` when they name none."""
CONTENT_SEARCH_TOOLS = frozenset({"Grep"})
"""Tools that read the contents of the files under their `path`: a rule over paths judges each
file such a search would read, not only the folder it names — else a search of the repository
would read the `.env` a read of it is denied."""
MAX_SEARCHED_FILES = 5000
"""A content search over a larger tree is not listed file by file: it is never allowed by the
rules alone (a person decides)."""

_PLAIN_GLOB = re.compile(r"[A-Za-z0-9*?._-]+")
"""A search's file filter the gate reads as the search does: a glob over file names, with no
folder, brace, class or negation. Any other filter is not applied when judging what the
search reads (it may read more than the filter lets through, never less)."""

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
    searched: tuple[str, ...] | None = ()
    """For a content search: the files (absolute, links resolved) under its path, listed by
    the service; None when there were more than `MAX_SEARCHED_FILES`."""
    named_path: str | None = None
    """The file path as the agent named it (absolute, `..` folded, its own links kept): a link
    `.claude` → `cfg` makes `.claude/settings.json` name one place and resolve to another, and
    a deny or propose rule holds for either."""


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


def file_path_of(tool_input: Mapping[str, Any], tool_name: str = "") -> str | None:
    """The path a file tool names, if its input names one; a search's folder is the `cwd`
    (".") when it names none."""
    for key in FILE_PATH_KEYS:
        value = tool_input.get(key)
        if isinstance(value, str) and value:
            return value
    return "." if tool_name in SEARCH_TOOLS else None


def searched_by(tool_input: Mapping[str, Any], files: Sequence[str]) -> tuple[str, ...]:
    """Of the `files` under a search's folder, those it may read: the ones its `glob` filter
    lets through, where the gate can read that filter as the search does; else all."""
    glob = tool_input.get("glob")
    if not isinstance(glob, str) or _PLAIN_GLOB.fullmatch(glob) is None:
        return tuple(files)
    return tuple(path for path in files if fnmatchcase(posixpath.basename(path), glob))


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
    # What the shell runs once it removes quotes, backslashes and `${…}`: `stoic app''rove`
    # is `stoic approve` to a deny or a propose rule too.
    return pattern.search(command) is not None or pattern.search(_unquoted(command)) is not None


def _unquoted(command: str) -> str:
    return _EXPANSION.sub("", command).translate(_QUOTING)


_EXPANSION = re.compile(r"\$\{[^}]*\}")
"""`${IFS:0:0}` and its kind, which expand to nothing the rule could see."""


_QUOTING = str.maketrans("", "", "'\"\\")


def _path_matches(rule: GateRule, call: ToolCall) -> bool:
    """An allow holds for where the path really leads (links resolved); a deny or a propose
    for that place or for the one the path names."""
    if not rule.paths and rule.where is None:
        return True
    given = file_path_of(call.tool_input, call.tool_name)
    if given is None:
        return False
    path = call.resolved_path or _absolute(given, call.cwd)
    if _path_meets(rule, path, call.cwd):
        return True
    named = call.named_path
    if rule.verdict is Verdict.ALLOW or named is None:
        return False
    return _path_meets(rule, named, call.cwd)


def _path_meets(rule: GateRule, path: str, cwd: str) -> bool:
    inside = is_inside(path, cwd)
    if rule.where is Where.INSIDE and not inside:
        return False
    if rule.where is Where.OUTSIDE and inside:
        return False
    if not rule.paths:
        return True
    shown = posixpath.relpath(path, cwd) if inside else path
    if rule.verdict is not Verdict.ALLOW:  # `.ENV` is `.env` where the disk ignores case
        shown, path = shown.casefold(), path.casefold()
        return any(
            fnmatchcase(shown, glob.casefold()) or fnmatchcase(path, glob.casefold())
            for glob in rule.paths
        )
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
    if call.tool_name in CONTENT_SEARCH_TOOLS and verdict is not Verdict.DENY:
        stricter = _search_verdict([*rules, *narrowing], call, verdict)
        if stricter is not None:
            return stricter
    if not giving:
        return GateVerdict(
            verdict, (), f"no rule matches {call.tool_name}: the default is {verdict}"
        )
    return GateVerdict(verdict, giving, f"{call.tool_name}: {verdict} by {', '.join(giving)}")


def _search_verdict(
    rules: Sequence[GateRule], call: ToolCall, verdict: Verdict
) -> GateVerdict | None:
    """A stricter verdict than `verdict` for a content search, by what it would read: the
    strictest rule over paths that any file under its folder meets."""
    folder = file_path_of(call.tool_input, call.tool_name)
    if call.searched is None:
        if verdict is not Verdict.ALLOW:
            return None
        said = f"{call.tool_name} over {folder}: more than {MAX_SEARCHED_FILES} files to search"
        return GateVerdict(Verdict.PROPOSE, (), f"{said}, for a person to read")
    stricter = [
        rule
        for rule in rules
        if rule.paths
        and _STRICTNESS[rule.verdict] > _STRICTNESS[verdict]
        and any(fnmatchcase(call.tool_name, tool) for tool in rule.tools)
    ]
    found: tuple[GateRule, str] | None = None
    for path in call.searched:
        probe = ToolCall(call.tool_name, {"path": path}, call.cwd, path)
        for rule in stricter:
            if (found is None or _STRICTNESS[rule.verdict] > _STRICTNESS[found[0].verdict]) and (
                _path_matches(rule, probe)
            ):
                found = (rule, path)
        if found is not None and found[0].verdict is Verdict.DENY:
            break
    if found is None:
        return None
    rule, path = found
    shown = posixpath.relpath(path, call.cwd) if is_inside(path, call.cwd) else path
    return GateVerdict(
        rule.verdict,
        (rule.name,),
        f"{call.tool_name} over {folder} would read {shown}: {rule.verdict} by {rule.name}"
        " (search a path or a glob that leaves it out)",
    )


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
            elif outcome == "approved" and decided_by_a_person(record):
                self._approved.add(proposal_id)
            elif outcome == "rejected" and decided_by_a_person(record):
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
