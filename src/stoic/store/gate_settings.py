"""The `[gate]` section of `stoic.toml` (DESIGN §15): the agent gate's default verdict, how long
it waits for a person, and its rules, each checked where it is read (a regex that does not
compile is an error naming the rule, never a rule that silently matches nothing)."""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from stoic.core import next_steps
from stoic.core.gate import GateRule, Verdict, Where, rule_problem

__all__ = ["MAX_GATE_WAIT_SECONDS", "GateRuleSettings", "GateSettings", "gate_rules_example"]

MAX_GATE_WAIT_SECONDS = 540.0
"""Claude Code stops a hook after its own timeout (600 s by default) and then lets the call
through to its normal permission flow: the gate must answer well before that."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GateRuleSettings(_Section):
    """One `[[gate.rules]]` entry."""

    verdict: Literal["allow", "propose", "deny"]
    tool: str | list[str] = "*"
    command: str | None = None
    paths: list[str] = Field(default_factory=list)
    where: Literal["inside", "outside"] | None = None

    def rule(self, name: str) -> GateRule:
        tools = (self.tool,) if isinstance(self.tool, str) else tuple(self.tool)
        where = Where(self.where) if self.where is not None else None
        return GateRule(Verdict(self.verdict), name, tools, self.command, tuple(self.paths), where)

    @model_validator(mode="after")
    def _applies(self) -> GateRuleSettings:
        problem = rule_problem(self.rule("this rule"))
        if problem is not None:
            raise ValueError(problem.removeprefix("this rule: "))
        return self


_READ_ONLY = ["Read", "Grep", "Glob", "LS", "NotebookRead", "TodoWrite"]
_FILE_TOOLS = ["Edit", "MultiEdit", "Write", "NotebookEdit"]

DEFAULT_RULES = [
    GateRuleSettings(verdict="allow", tool=_READ_ONLY, where="inside"),
    GateRuleSettings(verdict="allow", tool=_FILE_TOOLS, where="inside"),
    GateRuleSettings(verdict="propose", tool=_FILE_TOOLS, where="outside"),
    GateRuleSettings(
        verdict="propose", tool=_FILE_TOOLS, paths=[".claude/*", "*/.claude/*", ".mcp.json"]
    ),
    GateRuleSettings(
        verdict="deny", tool=[*_READ_ONLY, *_FILE_TOOLS], paths=[".env*", "*/.env*", "*.pem"]
    ),
    GateRuleSettings(verdict="deny", tool=_FILE_TOOLS, paths=[".git/*", "*/.git/*"]),
    # Arguments that are relative paths or words, never an option, `..` or a `.env` file.
    GateRuleSettings(
        verdict="allow",
        tool="Bash",
        command=r"(?!.*(\.\.|\.env))(git (status|diff|log)|ls|pwd)( [A-Za-z0-9_][A-Za-z0-9_./]*)*",
    ),
    GateRuleSettings(verdict="propose", tool="Bash", command=r"\bgit\s+push\b"),
    # A person's decisions are a person's: an agent asking to make one is denied outright.
    GateRuleSettings(
        verdict="deny",
        tool="Bash",
        command=r"(?s)\bstoic\b.*\b(approve|reject|defer|execute|rollback|resume|retry|users|review)\b",
    ),
    GateRuleSettings(verdict="propose", tool="Bash", command=r"\brm\s+-[a-zA-Z]*[rf]"),
]


class GateSettings(_Section):
    default: Literal["allow", "propose", "deny"] = Field(
        "propose", description="The verdict for a tool call no rule matches."
    )
    wait_seconds: float = Field(
        20.0,
        ge=0,
        le=MAX_GATE_WAIT_SECONDS,
        description="Seconds the gate waits for a person to decide a proposed call; then it"
        " defers the call (print mode) or denies it naming the proposal.",
    )
    rules: list[GateRuleSettings] = Field(
        default_factory=lambda: list(DEFAULT_RULES),
        description="The rules; `[[gate.rules]]` entries replace these defaults.",
    )

    def gate_rules(self) -> tuple[GateRule, ...]:
        return tuple(rule.rule(f"stoic.toml gate.rules[{n}]") for n, rule in enumerate(self.rules))


def gate_rules_example() -> list[str]:
    """The commented `[[gate.rules]]` entries `stoic init` writes: the defaults, spelled out."""
    lines = [
        f"# Rules of the agent gate ({next_steps.gate_hook()}): each matches tools (globs:",
        '# "Bash", "mcp__*"), a regex over a Bash command, or path globs and whether the path',
        "# is inside or outside the repository; the strictest verdict of those that match",
        "# wins (deny over propose over allow). An allow over commands must match the whole",
        "# command and never matches one with more than plain words and spaces (no ; && | $(",
        "# quotes, backslashes, braces, globs, ~, tabs, newlines). Any [[gate.rules]] replace",
        "# all of these defaults:",
    ]
    for rule in DEFAULT_RULES:
        lines.append("# [[gate.rules]]")
        for key, value in rule.model_dump(exclude_defaults=True).items():
            lines.append(f"# {key} = {json.dumps(value)}")
    return lines
