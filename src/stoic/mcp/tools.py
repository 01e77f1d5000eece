"""The tools `stoic mcp` offers an agent, and the checks of what an agent sends them.

An agent's arguments are untrusted: each is read once, its type and size checked here, and a
refusal is one line naming the argument — never a traceback, never a half-read call. The JSON
Schemas say the same bounds to the client, but nothing relies on a client having honoured
them. The annotations are honest hints: only the two reading tools are read-only, nothing is
destructive (proposing asks, it does not act), and every tool stays inside the workspace.
No tool decides a proposal: deciding is a person's, through the CLI or the console.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from mcp_types import Tool, ToolAnnotations

from stoic.core.escalations import EscalationMode
from stoic.core.proposals import is_proposal_id
from stoic.exceptions import UsageError

__all__ = [
    "AGENT_MODES",
    "MAX_ARGUMENT_BYTES",
    "MAX_WAIT_SECONDS",
    "TOOLS",
    "Arguments",
    "tool_named",
]

MAX_ARGUMENT_BYTES = 1024 * 1024
"""The most one call's arguments may hold, as JSON (the gate's bound on a hook payload)."""

MAX_WAIT_SECONDS = 300.0
"""The longest `wait_for_decision` blocks: below the tool-call timeouts of MCP clients, so
the answer comes back as an answer; an agent that needs longer asks again."""

DEFAULT_WAIT_SECONDS = 60.0

AGENT_MODES = tuple(
    mode.value for mode in EscalationMode if mode is not EscalationMode.PROCESS_ISSUE
)
"""The escalation modes an agent may raise: a process issue is stoic's own, at the third
escalation of one mode."""

_TITLE, _LINE, _TEXT = 200, 4000, 20_000
_ITEMS, _ARGV_ITEMS, _ARGV_CHARS = 50, 256, 16 * 1024


def _string(description: str, limit: int) -> dict[str, Any]:
    return {"type": "string", "maxLength": limit, "description": description}


def _strings(description: str, items: int, limit: int, *, least: int = 0) -> dict[str, Any]:
    return {
        "type": "array",
        "items": {"type": "string", "maxLength": limit},
        "minItems": least,
        "maxItems": items,
        "description": description,
    }


def _object(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


_PROPOSAL_ID = {
    "type": "string",
    "pattern": r"^PROP-\d{8}-\d{3,}$",
    "maxLength": 40,
    "description": "A proposal id: PROP-YYYYMMDD-NNN.",
}


def _hints(*, read_only: bool, idempotent: bool) -> ToolAnnotations:
    return ToolAnnotations(
        read_only_hint=read_only,
        destructive_hint=False,
        idempotent_hint=idempotent,
        open_world_hint=False,
    )


TOOLS: tuple[Tool, ...] = (
    Tool(
        name="propose_action",
        description=(
            "Propose an action instead of taking it: it waits in stoic's review queue until a"
            " person approves or rejects it (read the decision with wait_for_decision). Needs"
            " at least one reasoning step; every source must exist in the workspace (a run,"
            " task or decision id, or a workspace file). Refused while the workspace is paused."
        ),
        input_schema=_object(
            {
                "title": _string("What the action is, in one line.", _TITLE),
                "summary": _string("What it does and why, for the reviewer.", _TEXT),
                "action": _strings(
                    "The command that runs if it is approved, as argv.",
                    _ARGV_ITEMS,
                    _ARGV_CHARS,
                    least=1,
                ),
                "reasoning": _strings(
                    "The rule and inputs that led here, one step per item.",
                    _ITEMS,
                    _LINE,
                    least=1,
                ),
                "sources": _strings("What it is based on: ids or workspace files.", _ITEMS, 500),
                "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                "trade_off": _string("What is given up by doing it.", _LINE),
            },
            ["title", "reasoning"],
        ),
        annotations=_hints(read_only=False, idempotent=False),
    ),
    Tool(
        name="get_proposal",
        description="One proposal as the decision log tells it: status, action, decision.",
        input_schema=_object({"proposal_id": _PROPOSAL_ID}, ["proposal_id"]),
        annotations=_hints(read_only=True, idempotent=True),
    ),
    Tool(
        name="wait_for_decision",
        description=(
            "Wait until a person has approved or rejected a proposal (or it was executed), at"
            f" most `seconds` (default {DEFAULT_WAIT_SECONDS:g}, at most"
            f" {MAX_WAIT_SECONDS:g}); returns its status and the reviewer's reason. Still"
            " pending or deferred after the wait: ask again later."
        ),
        input_schema=_object(
            {
                "proposal_id": _PROPOSAL_ID,
                "seconds": {"type": "number", "minimum": 0, "maximum": MAX_WAIT_SECONDS},
            },
            ["proposal_id"],
        ),
        annotations=_hints(read_only=True, idempotent=True),
    ),
    Tool(
        name="escalate",
        description=(
            "Hand one decision to a person: exactly one question, a sentence ending with '?'"
            " (a text that asks none, or more than one, is refused: ask the rest once it is"
            " answered). `context` says what led here; `mode` is the kind of problem."
        ),
        input_schema=_object(
            {
                "question": _string("The one question, ending with '?'.", _LINE),
                "context": _string("What led here, including what was already tried.", _TEXT),
                "mode": {
                    "type": "string",
                    "enum": list(AGENT_MODES),
                    "default": "ambiguity",
                    "maxLength": 40,
                },
            },
            ["question"],
        ),
        annotations=_hints(read_only=False, idempotent=False),
    ),
    Tool(
        name="request_permission",
        description=(
            "Claude Code's --permission-prompt-tool: decides one tool call by the workspace's"
            " [gate] rules (and by a person, where they say so). Answers the JSON text"
            ' {"behavior": "allow", "updatedInput": …} or {"behavior": "deny", "message": …};'
            " every failure is a denial."
        ),
        input_schema=_object(
            {
                "tool_name": _string("The tool the agent wants to call.", _TITLE),
                "input": {"type": "object", "description": "The call's input."},
                "tool_use_id": _string("The call's id.", _TITLE),
            },
            ["tool_name", "input"],
        ),
        annotations=_hints(read_only=False, idempotent=False),
    ),
)


def tool_named(name: str) -> Tool | None:
    return next((tool for tool in TOOLS if tool.name == name), None)


@dataclass(frozen=True, slots=True)
class Arguments:
    """One call's arguments, read through checks that refuse with one line each."""

    tool: Tool
    given: Mapping[str, Any]

    @classmethod
    def of(cls, tool: Tool, given: object) -> Arguments:
        """The arguments, refused when too large, not an object, or naming an unknown one."""
        if given is None:
            given = {}
        if not isinstance(given, Mapping):
            raise UsageError(f"{tool.name}: the arguments are not a JSON object")
        try:
            size = len(orjson.dumps(given))
        except (TypeError, orjson.JSONEncodeError):
            raise UsageError(f"{tool.name}: the arguments are not JSON text (UTF-8)") from None
        if size > MAX_ARGUMENT_BYTES:
            raise UsageError(
                f"{tool.name}: the arguments are over {MAX_ARGUMENT_BYTES // 1024} KiB"
            )
        if _not_finite(given):  # JSON would write it null: the call would not be the one sent
            raise UsageError(f"{tool.name}: the arguments hold a number that is not finite")
        known = tool.input_schema["properties"]
        unknown = sorted(str(name) for name in given if name not in known)
        if unknown:
            raise UsageError(
                f"{tool.name}: unknown argument {unknown[0][:40]!r} (it takes {', '.join(known)})"
            )
        missing = [name for name in tool.input_schema["required"] if name not in given]
        if missing:
            raise UsageError(f"{tool.name}: {missing[0]} is required")
        return cls(tool, given)

    def _refuse(self, name: str, problem: str) -> UsageError:
        return UsageError(f"{self.tool.name}: {name} {problem}")

    def _limit(self, name: str) -> int:
        schema = self.tool.input_schema["properties"][name]
        return int(schema.get("maxLength") or schema["items"]["maxLength"])

    def text(self, name: str, *, default: str = "") -> str:
        value = self.given.get(name, default)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self._refuse(name, f"must be a string, not {_json_type(value)}")
        if len(value) > self._limit(name):
            raise self._refuse(name, f"is over {self._limit(name)} characters")
        if "\0" in value:
            raise self._refuse(name, "holds a NUL character, which no text may hold")
        return value

    def optional_text(self, name: str) -> str | None:
        return self.text(name) if self.given.get(name) is not None else None

    def texts(self, name: str) -> list[str] | None:
        """A list of strings, None when not given; bounded in count and in each length."""
        value = self.given.get(name)
        if value is None:
            return None
        schema = self.tool.input_schema["properties"][name]
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self._refuse(name, "must be a list of strings")
        if not schema["minItems"] <= len(value) <= schema["maxItems"]:
            raise self._refuse(
                name, f"must hold {schema['minItems']} to {schema['maxItems']} items"
            )
        limit = self._limit(name)
        long = next((n for n, item in enumerate(value) if len(item) > limit), None)
        if long is not None:
            raise self._refuse(f"{name}[{long}]", f"is over {limit} characters")
        nul = next((n for n, item in enumerate(value) if "\0" in item), None)
        if nul is not None:
            raise self._refuse(f"{name}[{nul}]", "holds a NUL character, which no text may hold")
        return list(value)

    def number(self, name: str, *, low: float, high: float) -> float | None:
        value = self.given.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._refuse(name, f"must be a number, not {_json_type(value)}")
        if not math.isfinite(value) or not low <= value <= high:
            raise self._refuse(name, f"must be between {low:g} and {high:g}")
        return float(value)

    def proposal_id(self) -> str:
        value = self.text("proposal_id") if isinstance(self.given.get("proposal_id"), str) else None
        if value is None or not is_proposal_id(value) or value != value.strip():
            shown = str(self.given.get("proposal_id"))[:40]
            said = f"must be an id like PROP-20260101-001, not {shown!r}"
            raise self._refuse("proposal_id", said)
        return value

    def mapping(self, name: str) -> dict[str, Any]:
        value = self.given.get(name)
        if not isinstance(value, dict):
            raise self._refuse(name, f"must be a JSON object, not {_json_type(value)}")
        return value


def _not_finite(value: object) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, Mapping):
        return any(_not_finite(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(_not_finite(item) for item in value)
    return False


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"
