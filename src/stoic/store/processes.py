"""The policy every process stoic starts obeys (DESIGN §7), outside a run: the actions
`stoic execute` and `stoic rollback` start, and command notifiers.

Executors allowed, forbidden command patterns and the environment allowlist apply to them as to
tasks; what such a process prints is recorded only with the named secrets it was given masked.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from stoic.core.policy import Policy, mask_secrets, policy_violation, secret_values
from stoic.exceptions import PolicyRefused

if TYPE_CHECKING:
    from stoic.store.config import Settings
    from stoic.store.workspace import Workspace

__all__ = ["ProcessPolicy", "allowed_environment", "workspace_policy"]


def workspace_policy(settings: Settings) -> Policy:
    """The workspace's policy as `stoic.toml` sets it (a plan may narrow it further)."""
    policy = settings.policy
    return Policy.build(
        policy.allowed_executors,
        policy.forbidden_commands,
        policy.env_passthrough,
        policy.require_approval,
        policy.allowed_modules,
        policy.secret_names,
    )


def allowed_environment(
    policy: Policy, extra: Mapping[str, str] | None = None
) -> dict[bytes, bytes]:
    """What a process stoic starts sees of stoic's environment, plus what it is given."""
    env = {
        name: value
        for name, value in os.environb.items()
        if policy.passes_env(name.decode(errors="replace"))
    }
    for name, value in (extra or {}).items():
        env[name.encode()] = value.encode()
    return env


@dataclass(frozen=True, slots=True)
class ProcessPolicy:
    """One process about to start outside a run: may it, with what environment, and what of
    its output may be recorded."""

    policy: Policy
    executor: str
    argv: tuple[str, ...]
    env: dict[bytes, bytes] = field(default_factory=dict)

    @classmethod
    def for_command(
        cls,
        settings: Settings,
        argv: Sequence[str],
        *,
        executor: str = "shell",
        extra_env: Mapping[str, str] | None = None,
    ) -> ProcessPolicy:
        policy = workspace_policy(settings)
        return cls(policy, executor, tuple(argv), allowed_environment(policy, extra_env))

    @property
    def command(self) -> str:
        return shlex.join(self.argv)

    @property
    def refusal(self) -> str | None:
        """The rule starting it would break, or None."""
        return policy_violation(self.policy, self.executor, self.command)

    def mask(self, text: str) -> str:
        """`text` without the values of the named secrets this process was given."""
        given = {
            name.decode(errors="replace"): value.decode(errors="replace")
            for name, value in self.env.items()
        }
        return mask_secrets(text, secret_values(self.policy, given))

    def refuse_on_record(self, workspace: Workspace, *, proposal_id: str, what: str) -> None:
        """Refused by policy: the refusal goes on record, then PolicyRefused is raised."""
        rule = self.refusal
        if rule is None:
            return
        workspace.record(
            "policy_check",
            "blocked",
            f"The {what} of {proposal_id} may not start: {rule}.",
            actor="system:policy",
            trigger="autonomous",
            proposal_id=proposal_id,
            inputs={"rule": rule, "executor": self.executor, "command": self.command},
        )
        raise PolicyRefused(
            f"{proposal_id}: its {what} `{self.command}` is refused by policy: {rule}"
            " (hint: change [policy] in stoic.toml, or propose another action)"
        )
