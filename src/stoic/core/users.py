"""People who may use the console, folded from the log's `user` records (DESIGN §14).

Who exists and with which role is what the log says: a secret file in the workspace only
proves a person holds the secret last issued to a user the log backs. Pure: records in, a
directory out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "AGENT_ROLE",
    "LONGEST_NAME",
    "NAME_PATTERN",
    "ROLES",
    "User",
    "UserDirectory",
    "name_problem",
    "role_change_problem",
    "role_problem",
]

LONGEST_NAME = 64
NAME_PATTERN = re.compile(rf"[a-z0-9][a-z0-9._-]{{0,{LONGEST_NAME - 1}}}")
"""A user's name: also the stem of their secret file, so it can never be a path."""

ROLES = ("reviewer", "operator", "admin")
"""The roles a person can hold, each allowed what the ones before it are."""

AGENT_ROLE = "agent"
"""Not a person: an agent whose secret is a token for the gate's HTTP hook. It never logs in
to the console and never decides; it is on record as `agent:<name>`."""


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a user's name, or None."""
    if NAME_PATTERN.fullmatch(name) is None:
        shown = name.encode("unicode_escape").decode("ascii")[:80]
        return (
            f"{shown!r} is not a user name: 1 to 64 of a-z, 0-9, '.', '_', '-', starting with a"
            " letter or digit"
        )
    return None


def role_problem(role: str) -> str | None:
    """Why `role` cannot be given to a user, or None."""
    if role not in ROLES and role != AGENT_ROLE:
        return f"unknown role {role!r} (allowed: {', '.join((*ROLES, AGENT_ROLE))})"
    return None


def role_change_problem(name: str, role: str, new_role: str) -> str | None:
    """Why `name` cannot go from `role` to `new_role`, or None: an agent's token must never
    become a person's login, nor a person's secret an agent's token."""
    if (role == AGENT_ROLE) != (new_role == AGENT_ROLE):
        was, becomes = ("an agent", "a person") if role == AGENT_ROLE else ("a person", "an agent")
        return (
            f"{name} is {was} and cannot become {becomes}: remove them and add the other"
            " (a new secret is issued)"
        )
    return None


@dataclass(frozen=True, slots=True)
class User:
    """A user the log backs."""

    name: str
    role: str
    added_at: str
    issued_seq: int
    """The seq of the record that issued their current secret (added or secret_reset): only
    a secret file naming this seq logs in."""


@dataclass
class UserDirectory:
    """The fold of `user` records: the users in force, by name."""

    users: dict[str, User] = field(default_factory=dict)

    def feed(self, records: Iterable[Mapping[str, Any]]) -> None:
        for record in records:
            if record["decision_type"] != "user":
                continue
            inputs = record["decision_inputs"]
            name, outcome = inputs.get("name"), record["decision_outcome"]
            if not isinstance(name, str):
                continue
            known = self.users.get(name)
            if outcome == "added":
                self.users[name] = User(
                    name, str(inputs.get("role")), record["decided_at"], record["seq"]
                )
            elif known is None:
                continue
            elif outcome == "removed":
                del self.users[name]
            elif outcome == "role_changed":
                role = str(inputs.get("role"))
                self.users[name] = User(name, role, known.added_at, known.issued_seq)
            elif outcome == "secret_reset":
                self.users[name] = User(name, known.role, known.added_at, record["seq"])

    def get(self, name: str) -> User | None:
        return self.users.get(name)
