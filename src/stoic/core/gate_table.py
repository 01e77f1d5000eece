"""The `[gate]` table of `stoic.toml` and a plan's `meta.gate` rules, checked without pydantic.

The gate's hook runs at every tool call, so its quick path (an allow or a deny by the rules
alone) reads its settings here: the pydantic models of `stoic.store.gate_settings` cost more
to import than the whole answer may take. The two are held to the same verdicts — every table
one accepts the other accepts, with the same rules (a property test) — and the defaults live
here, once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stoic.core.gate import GateRule, Verdict, Where, rule_problem

__all__ = [
    "DEFAULT_GATE_RULES",
    "DEFAULT_VERDICT",
    "DEFAULT_WAIT_SECONDS",
    "MAX_GATE_WAIT_SECONDS",
    "GateTable",
    "gate_rule",
    "gate_table",
    "settings_rule_name",
]

MAX_GATE_WAIT_SECONDS = 540.0
"""Claude Code stops a hook after its own timeout (600 s by default) and then lets the call
through to its normal permission flow: the gate must answer well before that."""

DEFAULT_VERDICT = Verdict.PROPOSE
DEFAULT_WAIT_SECONDS = 20.0

_READ_ONLY = ["Read", "Grep", "Glob", "LS", "NotebookRead", "TodoWrite"]
_FILE_TOOLS = ["Edit", "MultiEdit", "Write", "NotebookEdit"]

DEFAULT_GATE_RULES: tuple[Mapping[str, Any], ...] = (
    {"verdict": "allow", "tool": _READ_ONLY, "where": "inside"},
    {"verdict": "allow", "tool": _FILE_TOOLS, "where": "inside"},
    {"verdict": "propose", "tool": _FILE_TOOLS, "where": "outside"},
    {"verdict": "propose", "tool": _FILE_TOOLS, "paths": [".claude/*", "*/.claude/*", ".mcp.json"]},
    {
        "verdict": "deny",
        "tool": [*_READ_ONLY, *_FILE_TOOLS],
        "paths": [".env*", "*/.env*", "*.pem"],
    },
    # A `.git` file names the folder git reads its config (and so its hooks) from.
    {"verdict": "deny", "tool": _FILE_TOOLS, "paths": [".git", "*/.git", ".git/*", "*/.git/*"]},
    # Arguments that are relative paths or words, never an option, `..` or a `.env` file; a
    # `git diff` with none: given a revision or two paths it prints any file's contents.
    {
        "verdict": "allow",
        "tool": "Bash",
        "command": r"(?!.*(\.\.|\.env))(git (status|log)|ls|pwd)( [A-Za-z0-9_][A-Za-z0-9_./]*)*|git diff",  # noqa: E501
    },
    {"verdict": "propose", "tool": "Bash", "command": r"\bgit\s+push\b"},
    # A person's decisions are a person's: an agent asking to make one is denied outright.
    {
        "verdict": "deny",
        "tool": "Bash",
        "command": r"(?s)\bstoic\b.*\b(approve|reject|defer|execute|rollback|resume|retry|users|review)\b",  # noqa: E501
    },
    {"verdict": "propose", "tool": "Bash", "command": r"\brm\s+-[a-zA-Z]*[rf]"},
)
"""The rules a workspace has until its `[[gate.rules]]` replace them, in their TOML form."""

_RULE_KEYS = frozenset({"verdict", "tool", "command", "paths", "where"})
_TABLE_KEYS = frozenset({"default", "wait_seconds", "rules"})


@dataclass(frozen=True, slots=True)
class GateTable:
    """The gate's settings, checked."""

    default: Verdict
    wait_seconds: float
    rules: tuple[GateRule, ...]


def settings_rule_name(index: int) -> str:
    return f"stoic.toml gate.rules[{index}]"


def _string_list(value: Any) -> list[str] | None:
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    return None


def gate_rule(entry: Any, name: str) -> GateRule | str:
    """One rule from its TOML form, or what is wrong with it (one line, naming it)."""
    if not isinstance(entry, Mapping):
        return f"{name}: a rule is a table"
    unknown = sorted(str(key) for key in entry if key not in _RULE_KEYS)
    if unknown:
        return f"{name}: unknown key {unknown[0]!r} (known: {', '.join(sorted(_RULE_KEYS))})"
    verdict = entry.get("verdict")
    if verdict not in ("allow", "propose", "deny"):
        return f"{name}: `verdict` is allow, propose or deny"
    tool = entry.get("tool", "*")
    tools = [tool] if isinstance(tool, str) else _string_list(tool)
    if tools is None:
        return f"{name}: `tool` is a tool name or a list of them"
    command = entry.get("command")
    if command is not None and not isinstance(command, str):
        return f"{name}: `command` is a regex"
    paths = _string_list(entry.get("paths", []))
    if paths is None:
        return f"{name}: `paths` is a list of globs"
    where = entry.get("where")
    if where is not None and where not in ("inside", "outside"):
        return f"{name}: `where` is inside or outside"
    rule = GateRule(
        Verdict(verdict),
        name,
        tuple(tools),
        command,
        tuple(paths),
        Where(where) if where is not None else None,
    )
    return rule_problem(rule) or rule


def gate_table(table: Any) -> GateTable | str:
    """`stoic.toml`'s `[gate]` (absent: {}), or what is wrong with it (one line)."""
    if not isinstance(table, Mapping):
        return "gate: is a table"
    unknown = sorted(str(key) for key in table if key not in _TABLE_KEYS)
    if unknown:
        return f"gate: unknown setting {unknown[0]!r} (known: {', '.join(sorted(_TABLE_KEYS))})"
    default = table.get("default", DEFAULT_VERDICT.value)
    if default not in ("allow", "propose", "deny"):
        return "gate.default: is allow, propose or deny"
    wait = table.get("wait_seconds", DEFAULT_WAIT_SECONDS)
    if isinstance(wait, bool) or not isinstance(wait, int | float) or math.isnan(wait):
        return "gate.wait_seconds: is a number of seconds"
    if not 0 <= wait <= MAX_GATE_WAIT_SECONDS:
        return f"gate.wait_seconds: is 0 to {MAX_GATE_WAIT_SECONDS:g} seconds"
    entries = table.get("rules", DEFAULT_GATE_RULES)
    if not isinstance(entries, Sequence) or isinstance(entries, str):
        return "gate.rules: is a list of rules"
    rules: list[GateRule] = []
    for index, entry in enumerate(entries):
        rule = gate_rule(entry, settings_rule_name(index))
        if isinstance(rule, str):
            return rule
        rules.append(rule)
    return GateTable(Verdict(default), float(wait), tuple(rules))
