"""The policy every process stoic starts obeys (DESIGN §7), outside a run: the actions
`stoic execute` and `stoic rollback` start, and command notifiers. A proposal a run made is
held to that run's plan policy as well, as its tasks were.

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
from stoic.core.records import Decision
from stoic.core.run_state import RunFolder
from stoic.exceptions import PolicyRefused

if TYPE_CHECKING:
    from stoic.plan.models import PolicySpec
    from stoic.store.config import Settings
    from stoic.store.handle import WorkspaceHandle

__all__ = [
    "ProcessPolicy",
    "allowed_environment",
    "run_plan_policy",
    "run_policy",
    "secrets_given",
    "workspace_policy",
]


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


def run_policy(workspace: Policy, spec: PolicySpec | None) -> Policy:
    """The workspace's policy, narrowed by the plan's own (never widened)."""
    if spec is None:
        return workspace
    return workspace.tighten(
        Policy.build(
            spec.allowed_executors,
            spec.forbidden_commands,
            spec.env_passthrough,
            spec.require_approval,
            spec.allowed_modules,
            (),
        )
    )


def run_plan_policy(workspace: WorkspaceHandle, run_id: str) -> PolicySpec | None:
    """The `meta.policy` of the plan a run ran (as amended), read from the copy the log names
    and checked against its sha256; refused when that copy is gone or changed, since a policy
    that cannot be read must not be taken as no policy."""
    from stoic.plan.loader import PlanInvalid, read_plan  # plans are read for runs' proposals

    folder = RunFolder(run_id)
    for record in workspace.records(run_id=run_id):
        folder.feed(record._asdict())
    source = folder.amendment if folder.amendment is not None else folder.started
    if source is None:
        return None  # not a run this log holds: nothing narrows the workspace's policy
    copy = workspace.root / str(source.get("plan_copy", f"runs/{run_id}/plan.yaml"))
    try:
        plan = read_plan(copy)
    except (PlanInvalid, OSError) as exc:
        raise PolicyRefused(
            f"the policy of run {run_id} cannot be read from {copy}: {exc} (hint: restore the"
            " plan copy the run started with)"
        ) from None
    if plan.sha256 != source.get("plan_sha256"):
        raise PolicyRefused(
            f"{copy} no longer matches the plan run {run_id} started with (sha256"
            f" {source.get('plan_sha256')}), so its policy is unknown (hint: restore it)"
        )
    return plan.document.meta.policy


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


def secrets_given(
    policy: Policy, env: Mapping[bytes, bytes], extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The values of the named secrets in the environment a process is given (`env`, then
    what it declares), for masking what it gives back."""
    given = {
        name.decode(errors="replace"): value.decode(errors="replace") for name, value in env.items()
    }
    return secret_values(policy, {**given, **(extra or {})})


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
        narrowed_by: PolicySpec | None = None,
    ) -> ProcessPolicy:
        policy = run_policy(workspace_policy(settings), narrowed_by)
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
        return mask_secrets(text, secrets_given(self.policy, self.env))

    def refuse_on_record(self, workspace: WorkspaceHandle, *, proposal_id: str, what: str) -> None:
        """Refused by policy: the refusal goes on record, then PolicyRefused is raised."""
        refused = self.refused(proposal_id=proposal_id, what=what)
        if refused is None:
            return
        workspace.record_many([refused[0]])
        raise refused[1]

    def refused(self, *, proposal_id: str, what: str) -> tuple[Decision, PolicyRefused] | None:
        """The policy's refusal of starting it, as the record to keep and the error to raise
        after it is kept; None when the policy allows it."""
        rule = self.refusal
        if rule is None:
            return None
        record = Decision(
            decision_type="policy_check",
            decision_outcome="blocked",
            decision_reason=f"The {what} of {proposal_id} may not start: {rule}.",
            actor="system:policy",
            decision_trigger="autonomous",
            proposal_id=proposal_id,
            decision_inputs={"rule": rule, "executor": self.executor, "command": self.command},
        )
        return record, PolicyRefused(
            f"{proposal_id}: its {what} `{self.command}` is refused by policy: {rule}"
            " (hint: change [policy] in stoic.toml, or propose another action)"
        )
