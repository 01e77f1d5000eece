"""The agent executor's setup (DESIGN §11): roles and profiles from stoic.toml, the command line
from its `agent_cli` template, and the checks that refuse a plan before anything runs.

An agent task runs its agent CLI as a command (through the shell executor), so its output is
captured, its time limited and its failures classified like any command's — including the
configured output patterns that recognise "rate limit" text.
"""

from __future__ import annotations

import shutil
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from stoic.core.agents import (
    BUILTIN_PROFILES,
    BUILTIN_ROLES,
    Approval,
    Profile,
    RoleChoice,
    choose_role,
)
from stoic.core.gate_wire import AGENT_VARIABLE
from stoic.plan.loader import Plan, PlanError
from stoic.plan.models import TaskSpec, Verifier
from stoic.run.agent_gate import RESUME_VARIABLE, gate_arguments, resume_prompt
from stoic.run.attempt import Attempt
from stoic.store.config import AgentSettings

__all__ = ["REPORT_INSTRUCTIONS", "AgentSetup", "agent_text", "agents_of", "default_setup"]

REPORT_INSTRUCTIONS = (
    'Write your findings as JSON to the file named by $STOIC_REPORT: {"verification_report":'
    ' {"findings": [{"id": "…", "severity": "critical|high|warning|info", "category": "…",'
    ' "description": "…", "recommendation": "…"}]}} (an empty list when all is well).'
)


def agent_text(spec: TaskSpec) -> str:
    """What role inference reads: the task's name (or id) and description."""
    return f"{spec.name or spec.id} {spec.description or ''}".strip()


class AgentSetup:
    """Roles, profiles and the command template of one workspace."""

    def __init__(self, settings: AgentSettings, path: str | None = None) -> None:
        self.settings = settings
        self.path = path
        self.profiles: dict[str, Profile] = dict(BUILTIN_PROFILES)
        for name, profile in settings.profiles.items():
            self.profiles[name] = Profile(name, tuple(profile.tools), Approval(profile.approval))
        self.roles: dict[str, str] = {**BUILTIN_ROLES, **settings.roles}
        self.gated_profiles = {name for name, p in settings.profiles.items() if p.gate}

    # -- resolving ---------------------------------------------------------------------------

    def choose(self, role: str, text: str) -> RoleChoice:
        return choose_role(role, text, self.roles, self.profiles)

    def role_of(self, spec: TaskSpec) -> str | None:
        """The role an agent task runs as (`auto` resolved); None for other tasks."""
        if spec.agent is None:
            return None
        try:
            return self.choose(spec.agent, agent_text(spec)).role
        except ValueError:
            return spec.agent  # refused before the run; kept as written for the records

    def cli_path(self) -> str | None:
        program = self.settings.agent_cli[0] if self.settings.agent_cli else ""
        return shutil.which(program, path=self.path) if program else None

    def argv(
        self, choice: RoleChoice, prompt: str, task_id: str, agent_file: str = ""
    ) -> list[str]:
        profile = choice.profile
        values = {
            "agent_file": agent_file,
            "prompt": prompt,
            "tools": self.settings.tools_separator.join(profile.tools),
            "approval": self.settings.approval_values.get(
                profile.approval.value, profile.approval.value
            ),
            "role": choice.role,
            "profile": profile.name,
            "task": task_id,
        }
        return [part.format_map(values) for part in self.settings.agent_cli]

    def gated(self, spec: TaskSpec, choice: RoleChoice | None = None) -> bool:
        """Whether the task's agent has its tool calls gated: as the task says, else as its
        profile (`choice`, where the caller has made it) does."""
        if spec.agent is None or spec.gate is not None:
            return bool(spec.gate)
        try:
            choice = choice or self.choose(spec.agent, agent_text(spec))
        except ValueError:
            return False  # an unknown role is refused before the run
        return choice.profile.name in self.gated_profiles

    def command_for(
        self, spec: TaskSpec, attempt: Attempt, narrowing: Sequence[Mapping[str, Any]] = ()
    ) -> tuple[list[str], dict[str, str]]:
        """The agent CLI's command line for an attempt, and what its environment adds; for a
        gated agent, its hook's settings, and the session a resumed attempt goes on with."""
        assert spec.agent is not None
        choice = self.choose(spec.agent, agent_text(spec))
        prompt = spec.prompt or spec.description or spec.name or spec.id
        resumed = attempt.env.get(RESUME_VARIABLE)
        if resumed:
            prompt = resume_prompt(resumed)
        extra = []
        if attempt.env.get("STOIC_GUIDANCE"):
            extra.append(f"Guidance from a person: {attempt.env['STOIC_GUIDANCE']}")
        if attempt.env.get("STOIC_CHECK_RESULT"):
            extra.append(
                "The check still reports failures; its result is in"
                f" {attempt.env['STOIC_CHECK_RESULT']}. Fix them."
            )
        if attempt.env.get("STOIC_HINT") == "reduce_input":
            extra.append("The last attempt overflowed the context: work on a smaller input.")
        if extra:
            prompt = "\n\n".join([prompt, *extra])
        env = {
            AGENT_VARIABLE: choice.role,
            "STOIC_AGENT_PROFILE": choice.profile.name,
            "STOIC_AGENT_APPROVAL": choice.profile.approval.value,
            "STOIC_AGENT_TOOLS": ",".join(choice.profile.tools),
        }
        argv = self.argv(choice, prompt, spec.id)
        if self.gated(spec, choice):
            added, gate_env = gate_arguments(attempt, narrowing)
            argv += added
            env |= gate_env
        if resumed:
            argv += ["--resume", resumed]
        return argv, env

    def verifier_command(
        self, verifier: Verifier, task_id: str
    ) -> tuple[Sequence[str], bool] | None:
        """An agent verifier's command line; None when the agent CLI is not there (tier 1)."""
        assert verifier.agent is not None
        if self.cli_path() is None:
            return None
        choice = self.choose(verifier.agent, verifier.id)
        prompt = verifier.prompt or f"Verify the work of task {task_id}."
        text = f"{prompt}\n\n{REPORT_INSTRUCTIONS}"
        return self.argv(choice, text, task_id, verifier.agent_file or ""), False

    # -- validation --------------------------------------------------------------------------

    def plan_errors(
        self,
        plan: Plan,
        *,
        headless: bool = True,
        check_cli: bool = True,
        done: Collection[str] = (),
    ) -> list[PlanError]:
        """Every agent task's problems, before anything runs: unknown role, an interactive
        profile in a headless run, no prompt, the agent CLI not on PATH (when an agent task
        not in `done` would run)."""
        errors: list[PlanError] = []
        first_agent: tuple[int, int] | None = None
        for spec in plan.tasks:
            line, column = plan.task_positions.get(spec.id, (1, 1))
            checks: list[tuple[str, str]] = []
            if spec.gate and spec.agent is None:
                errors.append(
                    PlanError(
                        line,
                        column,
                        f"task {spec.id!r} has gate: true but runs no agent",
                        "gate: is for agent: tasks (their tool calls are gated)",
                    )
                )
            if spec.agent is not None:
                if spec.id not in done:
                    first_agent = first_agent or (line, column)
                checks.append((spec.agent, agent_text(spec)))
                if not (spec.prompt or spec.description or spec.name):
                    errors.append(
                        PlanError(
                            line,
                            column,
                            f"agent task {spec.id!r} has nothing to ask the agent",
                            "add prompt: or description:",
                        )
                    )
            checks += [(v.agent, v.id) for v in self._verifiers(plan, spec) if v.agent]
            for role, text in checks:
                errors += self._role_errors(spec.id, role, text, line, column, headless)
        if check_cli and first_agent is not None and self.cli_path() is None:
            program = self.settings.agent_cli[0] if self.settings.agent_cli else "(none)"
            errors.append(
                PlanError(
                    *first_agent,
                    f"the agent CLI {program!r} (for agent tasks) is not on PATH",
                    "install it, or set [agents] agent_cli in stoic.toml",
                )
            )
        return errors

    def _verifiers(self, plan: Plan, spec: TaskSpec) -> list[Verifier]:
        return [*(plan.document.meta.verify or ()), *(spec.verify or ())]

    def _role_errors(
        self, task_id: str, role: str, text: str, line: int, column: int, headless: bool
    ) -> list[PlanError]:
        try:
            choice = self.choose(role, text)
        except ValueError as exc:
            return [PlanError(line, column, f"task {task_id!r}: {exc}", "use a known role or auto")]
        if headless and choice.profile.approval is Approval.INTERACTIVE:
            return [
                PlanError(
                    line,
                    column,
                    f"task {task_id!r}: role {choice.role!r} uses profile"
                    f" {choice.profile.name!r}, whose approval is interactive; in a headless"
                    " run it would wait forever for a prompt nobody answers",
                    "give the role a profile with accept-edits, plan-only or bypass",
                )
            ]
        return []


def agents_of(plan: Plan, setup: AgentSetup) -> list[dict[str, object]]:
    """`plan check --json`'s `agents`: every agent task's role, profile and whether inferred."""
    rows: list[dict[str, object]] = []
    for spec in plan.tasks:
        if spec.agent is None:
            continue
        try:
            choice = setup.choose(spec.agent, agent_text(spec))
        except ValueError:
            rows.append({"id": spec.id, "role": spec.agent, "profile": None, "inferred": False})
            continue
        rows.append(
            {
                "id": spec.id,
                "role": choice.role,
                "profile": choice.profile.name,
                "inferred": choice.inferred,
            }
        )
    return rows


def default_setup() -> AgentSetup:
    """The built-in roles and profiles, for reading a plan outside a workspace."""
    return AgentSetup(AgentSettings())
