"""What crosses the wire between Claude Code and the gate, whichever way it is reached (a
command hook or the HTTP endpoint of `stoic serve`): the hook's answer, and a plan's rules as
they reach the gate from outside the agent's reach.

The formats: https://code.claude.com/docs/en/hooks (PreToolUse decision control).
"""

from __future__ import annotations

import math
import re

import orjson

from stoic.core.gate import GateRule
from stoic.core.gate_table import MAX_GATE_WAIT_SECONDS, gate_rule

__all__ = [
    "AGENT_VARIABLE",
    "DEFAULT_AGENT",
    "NARROWING_VARIABLE",
    "agent_name_problem",
    "hook_output",
    "narrowing_rules",
    "wait_seconds_of",
]

AGENT_VARIABLE = "STOIC_AGENT_ROLE"
"""The agent's name when none is given: the role stoic starts an agent task with."""
DEFAULT_AGENT = "claude-code"

_AGENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

NARROWING_VARIABLE = "STOIC_GATE_RULES"
"""The plan's `meta.gate` rules, as JSON, in the environment stoic starts a gated agent with:
the agent's own tools cannot change its parent's environment, as they could a file."""


def hook_output(decision: str, reason: str) -> bytes:
    """The hook's answer as Claude Code reads it."""
    return orjson.dumps(
        {
            "hookSpecificOutput": {
                "hookEventName": "PreToolUse",
                "permissionDecision": decision,
                "permissionDecisionReason": reason,
            }
        }
    )


def narrowing_rules(
    text: str | None, given_as: str = NARROWING_VARIABLE
) -> tuple[GateRule, ...] | str:
    """A plan's rules as JSON (none when unset or empty), or what is wrong with them."""
    if not text:
        return ()
    try:
        entries = orjson.loads(text)
    except orjson.JSONDecodeError:
        return f"{given_as} is not JSON"
    if not isinstance(entries, list):
        return f"{given_as} is not a list of rules"
    rules = [gate_rule(entry, f"the plan's meta.gate[{n}]") for n, entry in enumerate(entries)]
    problem = next((rule for rule in rules if isinstance(rule, str)), None)
    return problem if problem is not None else tuple(r for r in rules if not isinstance(r, str))


def agent_name_problem(name: str) -> str | None:
    """Why `name` cannot be an agent's (`agent:<name>` on record), or None: a plain word, so
    that none reads as another actor (`human:alice`) or hides text."""
    if _AGENT_NAME.fullmatch(name) is None:
        shown = name.encode("unicode_escape").decode("ascii")[:40]
        return (
            f"the agent's name {shown!r} is not a plain name (letters, digits, '.', '_', '-';"
            " at most 64)"
        )
    return None


def wait_seconds_of(text: str, option: str) -> float | str:
    """The seconds a gate waits for a person, as `option` gave them, or what is wrong."""
    try:
        seconds = float(text)
    except ValueError:
        return f"{option} takes seconds, not {text[:20]!r}"
    if not (math.isfinite(seconds) and 0 <= seconds <= MAX_GATE_WAIT_SECONDS):
        return f"{option} takes 0 to {MAX_GATE_WAIT_SECONDS:g} seconds"
    return seconds
