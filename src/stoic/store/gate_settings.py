"""The `[gate]` section of `stoic.toml` (DESIGN §15): the agent gate's default verdict, how long
it waits for a person, and its rules, each checked where it is read (a regex that does not
compile is an error naming the rule, never a rule that silently matches nothing)."""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from stoic.core import next_steps
from stoic.core.gate import GateRule, Verdict, Where, rule_problem
from stoic.core.gate_table import (
    DEFAULT_GATE_RULES,
    DEFAULT_VERDICT,
    DEFAULT_WAIT_SECONDS,
    MAX_GATE_WAIT_SECONDS,
    GateTable,
    settings_rule_name,
)

__all__ = ["MAX_GATE_WAIT_SECONDS", "GateRuleSettings", "GateSettings", "gate_rules_example"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    """Strict, as `stoic.core.gate_table` is: the hook's quick path reads the same table
    without pydantic, and the two must accept the same tables."""


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


DEFAULT_RULES = [GateRuleSettings.model_validate(entry) for entry in DEFAULT_GATE_RULES]


class GateSettings(_Section):
    default: Literal["allow", "propose", "deny"] = Field(
        DEFAULT_VERDICT.value, description="The verdict for a tool call no rule matches."
    )
    wait_seconds: float = Field(
        DEFAULT_WAIT_SECONDS,
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
        return tuple(rule.rule(settings_rule_name(n)) for n, rule in enumerate(self.rules))

    def table(self) -> GateTable:
        return GateTable(Verdict(self.default), self.wait_seconds, self.gate_rules())


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
