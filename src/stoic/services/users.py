"""People and access (DESIGN §14): who may use the console, with which role, and the check
of a login's secret.

Adding or removing a user, changing a role and issuing a new secret are decisions on record
(`user` records: name, role, by whom — never a hash or a secret). Each record is durable
before its secret file is written, both under the writer lock; the role a login gets is the
fold of those records, so a secret file alone never lets anyone in.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from stoic.core import next_steps
from stoic.core.records import GENESIS_HASH
from stoic.core.users import (
    AGENT_ROLE,
    User,
    UserDirectory,
    name_problem,
    role_change_problem,
    role_problem,
)
from stoic.exceptions import UsageError, WorkspaceNotWritable
from stoic.services.log_head import holds
from stoic.store import user_files
from stoic.store.interface import Head
from stoic.store.workspace import Workspace

__all__ = [
    "Issued",
    "Roster",
    "UserEntry",
    "add",
    "authenticate",
    "backed",
    "directory",
    "list_users",
    "remove",
    "reset",
    "secret_is_current",
    "set_role",
]


@dataclass(frozen=True, slots=True)
class Issued:
    """A user given a new one-time secret: shown to the person who asked, once."""

    name: str
    role: str
    secret: str
    seq: int

    @property
    def token(self) -> str | None:
        """An agent's token for the gate's HTTP hook (`NAME:SECRET`); None for a person."""
        return f"{self.name}:{self.secret}" if self.role == AGENT_ROLE else None


@dataclass(frozen=True, slots=True)
class UserEntry:
    """A user as `stoic users list` shows them."""

    name: str
    role: str
    added_at: str
    can_log_in: bool
    """False while their secret file is missing or stale (`stoic users reset` issues one)."""


def directory(workspace: Workspace) -> UserDirectory:
    """The users the log backs now."""
    folded = UserDirectory()
    folded.feed(record._asdict() for record in workspace.records(decision_type="user"))
    return folded


def backed(workspace: Workspace, name: str) -> User | None:
    """The user `name` as the log has them now, or None (never added, or removed)."""
    return directory(workspace).get(name)


class Roster:
    """The users the log backs, for a server that asks on every request: folded once, then
    caught up from where it stopped at each look, so every answer is the log up to its end
    at that moment — a cursor over the log, never a copy that could disagree with it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._root: Path | None = None
        self._folded = UserDirectory()
        self._head = Head(0, GENESIS_HASH)

    def backed(self, workspace: Workspace, name: str) -> User | None:
        """As `backed(workspace, name)`, without reading the log again from its start."""
        with self._lock:
            head = workspace.head()
            seen = self._head
            if workspace.root != self._root or not holds(workspace, seen):
                # Another log, or this one rewritten (cut, or restored and appended past where
                # the fold had got to): fold it from the start.
                self._root, self._folded, seen = workspace.root, UserDirectory(), Head(0, "")
            if head.seq > seen.seq:
                since = seen.seq or None
                self._folded.feed(
                    record._asdict()
                    for record in workspace.records(since_seq=since, decision_type="user")
                    if record.seq <= head.seq  # any later one is folded at the next look
                )
            self._head = head
            return self._folded.get(name)


def _checked_name(name: str) -> str:
    problem = name_problem(name)
    if problem is not None:
        raise UsageError(problem)
    return name


def _checked_role(role: str) -> str:
    problem = role_problem(role)
    if problem is not None:
        raise UsageError(problem)
    return role


def _existing(workspace: Workspace, name: str) -> User:
    user = backed(workspace, _checked_name(name))
    if user is None:
        raise UsageError(f"no user {name!r} (see {next_steps.users_list()})")
    return user


def _issue(workspace: Workspace, name: str, seq: int) -> str:
    """Write the secret file the record at `seq` announces; the record is durable already."""
    secret = user_files.new_secret()
    try:
        user_files.write_secret_file(workspace.root, name, seq, user_files.hash_secret(secret))
    except WorkspaceNotWritable as exc:
        raise WorkspaceNotWritable(
            f"{exc}; {name} is on record (seq {seq}) but has no secret and cannot log in"
            f" (hint: once the workspace can be written, {next_steps.users_reset(name)})"
        ) from exc
    return secret


def add(workspace: Workspace, name: str, *, role: str, actor: str) -> Issued:
    """Put a new user on record with `role` and issue their one-time secret."""
    _checked_name(name)
    _checked_role(role)
    with workspace.transaction():
        if backed(workspace, name) is not None:
            raise UsageError(
                f"user {name!r} exists (hint: {next_steps.users_role(name, role)} changes"
                f" the role, {next_steps.users_reset(name)} issues a new secret)"
            )
        record = workspace.record(
            "user",
            "added",
            f"{actor} added {name} as {role}.",
            source="human",
            actor=actor,
            trigger="explicit",
            inputs={"name": name, "role": role},
        )
        secret = _issue(workspace, name, record.seq)
    return Issued(name, role, secret, record.seq)


def reset(workspace: Workspace, name: str, *, actor: str) -> Issued:
    """Issue a new one-time secret: the old one no longer logs in."""
    with workspace.transaction():
        user = _existing(workspace, name)
        record = workspace.record(
            "user",
            "secret_reset",
            f"{actor} issued a new secret to {name}.",
            source="human",
            actor=actor,
            trigger="explicit",
            inputs={"name": name, "role": user.role},
        )
        secret = _issue(workspace, name, record.seq)
    return Issued(name, user.role, secret, record.seq)


def set_role(workspace: Workspace, name: str, *, role: str, actor: str) -> bool:
    """Give `name` another role; False when they hold it already (nothing recorded)."""
    _checked_role(role)
    with workspace.transaction():
        user = _existing(workspace, name)
        if user.role == role:
            return False
        problem = role_change_problem(name, user.role, role)
        if problem is not None:
            raise UsageError(problem)
        workspace.record(
            "user",
            "role_changed",
            f"{actor} made {name} {role} (was {user.role}).",
            source="human",
            actor=actor,
            trigger="explicit",
            inputs={"name": name, "role": role, "previous_role": user.role},
        )
    return True


def remove(workspace: Workspace, name: str, *, actor: str) -> None:
    """Take `name` off record; their secret file is deleted after the record is durable."""
    with workspace.transaction():
        user = _existing(workspace, name)
        workspace.record(
            "user",
            "removed",
            f"{actor} removed {name} ({user.role}).",
            source="human",
            actor=actor,
            trigger="explicit",
            inputs={"name": name, "role": user.role},
        )
        user_files.remove_secret_file(workspace.root, name)


def list_users(workspace: Workspace) -> list[UserEntry]:
    """The users the log backs, by name, and whether each can log in now."""
    entries = []
    for name, user in sorted(directory(workspace).users.items()):
        held = user_files.read_secret_file(workspace.root, name)
        can = held is not None and held.seq == user.issued_seq
        entries.append(UserEntry(name, user.role, user.added_at, can))
    return entries


LONGEST_SECRET = 1024
"""A longer one is refused (after the same one scrypt): no issued secret is near that long."""


def authenticate(workspace: Workspace, name: str, secret: str) -> User | None:
    """The user `name` when `secret` is theirs; None otherwise, in the same time whether the
    name is known or not (one scrypt either way)."""
    if len(secret) > LONGEST_SECRET:
        name, secret = "", ""  # checked against the dummy: never a match
    user = backed(workspace, name) if name_problem(name) is None else None
    return user if secret_is_current(workspace.root, user, secret) else None


def secret_is_current(root: Path, user: User | None, secret: str) -> bool:
    """Whether `secret` is the one last issued to `user` (as the log has them now): one
    scrypt, against a dummy when there is no such user or no current secret file."""
    if len(secret) > LONGEST_SECRET:
        user, secret = None, ""
    held = user_files.read_secret_file(root, user.name) if user is not None else None
    if user is not None and held is not None and held.seq != user.issued_seq:
        held = None  # a secret replaced since, or a file restored from before
    matches = user_files.secret_matches(held.hashed if held is not None else None, secret)
    return matches and user is not None
