"""What the console showed a person, signed so that the form they send back cannot forge it.

A proposal page carries the sha256 of the action it showed and the time it showed it, with an
HMAC under a key this server process drew at start and keeps in memory, over the session, the
proposal id, the sha256 and the time. A decision whose signature does not check is refused
before anything is read; one whose sha256 no longer matches the proposal is the service's to
refuse. A restarted server draws a new key, so a page shown before it must be opened again.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

__all__ = ["Shown", "ShownSigner"]


@dataclass(frozen=True, slots=True)
class Shown:
    """A proposal as it was shown: the action's sha256, when, and the signature of both."""

    proposal_id: str
    sha256: str
    shown_at: float
    signature: str


class ShownSigner:
    """Signs and checks what was shown, with one server's key."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key if key is not None else secrets.token_bytes(32)

    def _mac(self, session_token: str, proposal_id: str, sha256: str, shown_at: float) -> str:
        message = f"{session_token}\n{proposal_id}\n{sha256}\n{shown_at!r}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def sign(self, session_token: str, proposal_id: str, sha256: str, shown_at: float) -> Shown:
        mac = self._mac(session_token, proposal_id, sha256, shown_at)
        return Shown(proposal_id, sha256, shown_at, mac)

    def checks(self, session_token: str, shown: Shown) -> bool:
        """The signature is this server's, for this session, over exactly these values."""
        expected = self._mac(session_token, shown.proposal_id, shown.sha256, shown.shown_at)
        return hmac.compare_digest(expected, shown.signature)
