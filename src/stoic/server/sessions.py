"""Who is logged in to the console: sessions held in the server's memory.

A session is a random token in an HttpOnly, SameSite=Strict cookie and a CSRF token every form
carries. They live only in this process: a restarted server asks everyone to log in again,
and nothing about them is ever written to the workspace or the log.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Person", "Role", "Session", "Sessions"]

SESSION_SECONDS = 8 * 3600
"""A session ends this long after its login, used or not."""


class Role(StrEnum):
    """What a person may do in the console; each role may do what the ones before it may."""

    REVIEWER = "reviewer"
    """Decide proposals and raise flags."""
    OPERATOR = "operator"
    """Also answer escalations, retry, continue, stop and resume."""
    ADMIN = "admin"
    """Also manage users."""

    def may(self, needed: Role) -> bool:
        order = list(Role)
        return order.index(self) >= order.index(needed)


@dataclass(frozen=True, slots=True)
class Person:
    """A logged-in person, as their session knows them."""

    name: str
    role: Role

    @property
    def actor(self) -> str:
        """Who a decision made in this session is on record as: never a form field."""
        return f"human:{self.name}"


@dataclass(frozen=True, slots=True)
class Session:
    token: str
    csrf: str
    person: Person
    expires_at: float
    """`time.monotonic()` past which the session is gone."""
    issued_seq: int = 0
    """The seq of the record that issued the secret this session logged in with (0: none):
    once the log names a newer secret, the session is over."""


class Sessions:
    """The sessions of one server, by token; safe to use from any request thread."""

    def __init__(self, lifetime_seconds: float = SESSION_SECONDS) -> None:
        self._lifetime = lifetime_seconds
        self._by_token: dict[str, Session] = {}
        self._lock = threading.Lock()

    def open(self, person: Person, *, issued_seq: int = 0) -> Session:
        session = Session(
            token=secrets.token_urlsafe(32),
            csrf=secrets.token_urlsafe(32),
            person=person,
            expires_at=time.monotonic() + self._lifetime,
            issued_seq=issued_seq,
        )
        with self._lock:
            self._by_token[session.token] = session
        return session

    def get(self, token: str | None) -> Session | None:
        """The live session of `token`, or None (unknown, ended or expired)."""
        if not token:
            return None
        with self._lock:
            session = self._by_token.get(token)
            if session is not None and session.expires_at <= time.monotonic():
                del self._by_token[token]
                return None
        return session

    def close(self, token: str) -> None:
        with self._lock:
            self._by_token.pop(token, None)

    def close_person(self, name: str) -> None:
        """End every session of `name` (a user removed or given a new secret)."""
        with self._lock:
            for token in [t for t, s in self._by_token.items() if s.person.name == name]:
                del self._by_token[token]

    @staticmethod
    def csrf_matches(session: Session, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(session.csrf, given)
