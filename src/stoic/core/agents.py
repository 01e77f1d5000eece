"""Agent roles, profiles and role inference (DESIGN §11), as pure data and rules.

A profile has two independent axes: the tools an agent may use, and how each tool call is
approved. A role names what an agent is for and maps to a profile. A task says its role, or
`agent: auto` infers it from the task's name and description by multi-word phrases matched on
word boundaries — never by single words like "check", "review" or "form", which mean too many
things.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "BUILTIN_PROFILES",
    "BUILTIN_ROLES",
    "DEFAULT_ROLE",
    "ROLE_PHRASES",
    "Approval",
    "Profile",
    "RoleChoice",
    "choose_role",
    "infer_role",
]


class Approval(StrEnum):
    """How the agent's tool calls are approved."""

    INTERACTIVE = "interactive"  # a person answers each prompt: never in a headless run
    ACCEPT_EDITS = "accept-edits"  # file edits go through; other risky calls are refused
    PLAN_ONLY = "plan-only"  # reads and plans; changes nothing
    BYPASS = "bypass"  # every call goes through: only in a sandbox


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    tools: tuple[str, ...]
    approval: Approval


_READ = ("Read", "Grep", "Glob")
BUILTIN_PROFILES: Mapping[str, Profile] = {
    "read-only": Profile("read-only", _READ, Approval.PLAN_ONLY),
    "write": Profile("write", (*_READ, "Edit", "Write", "Bash"), Approval.ACCEPT_EDITS),
    "verification": Profile("verification", (*_READ, "Bash"), Approval.ACCEPT_EDITS),
    "design": Profile("design", (*_READ, "Write"), Approval.ACCEPT_EDITS),
}

BUILTIN_ROLES: Mapping[str, str] = {
    "coder": "write",
    "frontend-coder": "write",
    "code-reviewer": "read-only",
    "qa-auditor": "verification",
    "spec-verifier": "verification",
    "ux-reviewer": "read-only",
    "planner": "design",
    "systems-designer": "design",
    # The validator agents of another orchestrator's `validation:` block (plan/foreign.py).
    "validator": "verification",
    "issue-verifier": "verification",
}
"""Role → profile; `[agents.roles]` in stoic.toml adds roles or remaps these."""

DEFAULT_ROLE = "coder"
"""What `agent: auto` infers when no phrase matches: most agent tasks change code."""

ROLE_PHRASES: Sequence[tuple[str, tuple[str, ...]]] = (
    (
        "code-reviewer",
        (
            "code review",
            "review the code",
            "review code",
            "run verification",
            "verification suite",
            "review the pull request",
            "review the diff",
        ),
    ),
    (
        "qa-auditor",
        ("test plan", "qa audit", "quality audit", "test coverage", "acceptance tests"),
    ),
    (
        "spec-verifier",
        ("spec compliance", "verify spec", "verify the spec", "against the spec"),
    ),
    (
        "ux-reviewer",
        ("accessibility review", "accessibility audit", "ux review", "usability review"),
    ),
    (
        "systems-designer",
        ("system architecture", "systems design", "architecture design", "design document"),
    ),
    ("planner", ("implementation plan", "break down the", "work breakdown", "project plan")),
    (
        "frontend-coder",
        (
            "form component",
            "ui component",
            "react component",
            "vue component",
            "login form",
            "landing page",
            "front end",
            "page layout",
        ),
    ),
)
"""The inference table, tried in order; the first role with a matching phrase wins."""

_COMPILED = tuple(
    (role, tuple(re.compile(rf"\b{re.escape(phrase)}\b") for phrase in phrases))
    for role, phrases in ROLE_PHRASES
)


def infer_role(text: str) -> tuple[str, str | None]:
    """The role for a task's name and description, and the phrase that decided (None: default)."""
    words = " ".join(re.sub(r"[-_]+", " ", text.lower()).split())
    for role, patterns in _COMPILED:
        for pattern in patterns:
            if pattern.search(words):
                return role, pattern.pattern[2:-2].replace("\\", "")
    return DEFAULT_ROLE, None


@dataclass(frozen=True, slots=True)
class RoleChoice:
    """An agent task's role and profile, and whether the role was inferred."""

    role: str
    profile: Profile
    inferred: bool
    phrase: str | None = None


def choose_role(
    role: str,
    text: str,
    roles: Mapping[str, str],
    profiles: Mapping[str, Profile],
) -> RoleChoice:
    """Resolve `agent: ROLE` (or `auto`); ValueError for an unknown role or profile."""
    inferred = role == "auto"
    phrase = None
    if inferred:
        role, phrase = infer_role(text)
    if role not in roles:
        raise ValueError(f"unknown agent role {role!r} (known: {', '.join(sorted(roles))})")
    profile_name = roles[role]
    if profile_name not in profiles:
        raise ValueError(
            f"role {role!r} maps to unknown profile {profile_name!r}"
            f" (known: {', '.join(sorted(profiles))})"
        )
    return RoleChoice(role, profiles[profile_name], inferred, phrase)
