"""What crosses the wire between Claude Code and the gate, whichever way it is reached (a
command hook or the HTTP endpoint of `stoic serve`): the hook's answer, and a plan's rules as
they reach the gate from outside the agent's reach.

The formats: https://code.claude.com/docs/en/hooks (PreToolUse decision control).
"""

from __future__ import annotations

import orjson

from stoic.core.gate import GateRule
from stoic.core.gate_table import gate_rule

__all__ = ["NARROWING_VARIABLE", "hook_output", "narrowing_rules"]

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
