"""Decision records and their codec: canonical JSON and the sha256 chain (DESIGN §4).

A record is stored as one line of canonical JSON: keys sorted, compact separators, UTF-8, no
ASCII escaping. Its `hash` is the sha256 of the canonical JSON of the record without `hash`;
its `prev_hash` is the `hash` of the record before it (64 zeros for the first). Because the line
itself is canonical, the hashed bytes are the line with its `,"hash":"…"` member cut out, which
lets a verifier check a record without re-serialising it.

Everything here is pure: time and ids are passed in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson

from stoic.core.vocabulary import (
    OUTCOMES,
    CausalRole,
    DecisionSource,
    DecisionTrigger,
    DecisionType,
    closest,
    is_failure,
)
from stoic.exceptions import InvalidDecision

__all__ = [
    "GENESIS_HASH",
    "LINK_FIELDS",
    "REQUIRED_FIELDS",
    "Decision",
    "Record",
    "canonical_json",
    "hash_of_line",
    "record_hash",
    "seal",
]

GENESIS_HASH = "0" * 64
"""The `prev_hash` of the first record."""

LINK_FIELDS: tuple[str, ...] = (
    "run_id",
    "request_id",
    "task_id",
    "attempt_id",
    "attempt",
    "proposal_id",
    "escalation_id",
)
"""Fields that tie a record to a run, task, proposal or escalation; stored only when set."""

REQUIRED_FIELDS: frozenset[str] = frozenset(
    {
        "seq",
        "prev_hash",
        "hash",
        "decision_id",
        "decided_at",
        "decision_type",
        "decision_outcome",
        "decision_source",
        "actor",
        "decision_trigger",
        "decision_reason",
        "decision_inputs",
        "causal_role",
        "details",
    }
)
"""Fields every stored record carries (links come on top, where they apply)."""


def canonical_json(value: Mapping[str, Any]) -> bytes:
    """Sorted keys, compact separators, UTF-8: the bytes a record's hash covers."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError as exc:
        raise InvalidDecision(f"record is not JSON-serialisable: {exc}") from exc


def record_hash(fields_without_hash: Mapping[str, Any]) -> str:
    """The sha256 (hex) of the canonical JSON of a record without its `hash` field."""
    return hashlib.sha256(canonical_json(fields_without_hash)).hexdigest()


def hash_of_line(line: bytes, parsed: Mapping[str, Any]) -> str:
    """Recompute the hash of a stored line whose parsed form is `parsed`.

    Fast path: a canonical line hashes to the sha256 of itself without the `hash` member. A line
    that is not canonical (reformatted by hand) is re-serialised; its content still decides.
    """
    body = line.rstrip(b"\n")
    stored = parsed.get("hash")
    if isinstance(stored, str) and len(stored) == 64:
        member = b',"hash":"' + stored.encode("ascii", "replace") + b'"'
        cut = body.rfind(member)
        if cut > 0:
            fast = hashlib.sha256(body[:cut] + body[cut + len(member) :]).hexdigest()
            if fast == stored:
                return fast
    without = {key: value for key, value in parsed.items() if key != "hash"}
    return hashlib.sha256(orjson.dumps(without, option=orjson.OPT_SORT_KEYS)).hexdigest()


_E = TypeVar("_E", DecisionType, DecisionSource, DecisionTrigger, CausalRole)


def _choice(enum: type[_E], value: str, what: str) -> _E:
    try:
        return enum(value)
    except ValueError:
        allowed = [member.value for member in enum]
        hint = closest(str(value), allowed)
        suggestion = f"; did you mean {hint!r}?" if hint else ""
        raise InvalidDecision(
            f"unknown {what} {value!r}{suggestion} (allowed: {', '.join(allowed)})"
        ) from None


@dataclass(frozen=True, slots=True)
class Decision:
    """A decision about to be recorded: everything but its place in the log."""

    decision_type: str
    decision_outcome: str
    decision_reason: str
    decision_source: str = DecisionSource.SYSTEM
    actor: str = ""
    decision_trigger: str = ""
    decision_inputs: Mapping[str, Any] = field(default_factory=dict)
    causal_role: str | None = None
    run_id: str | None = None
    request_id: str | None = None
    task_id: str | None = None
    attempt_id: str | None = None
    attempt: int | None = None
    proposal_id: str | None = None
    escalation_id: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        kind = _choice(DecisionType, self.decision_type, "decision type")
        if self.decision_outcome not in OUTCOMES[kind]:
            allowed = sorted(OUTCOMES[kind])
            hint = closest(self.decision_outcome, allowed)
            suggestion = f"; did you mean {hint!r}?" if hint else ""
            raise InvalidDecision(
                f"{kind.value} has no outcome {self.decision_outcome!r}{suggestion}"
                f" (allowed: {', '.join(allowed)})"
            )
        source = _choice(DecisionSource, self.decision_source, "decision source")
        if self.decision_trigger:
            _choice(DecisionTrigger, self.decision_trigger, "decision trigger")
        if self.causal_role is not None:
            _choice(CausalRole, self.causal_role, "causal role")
        if not self.decision_reason.strip():
            raise InvalidDecision("a decision needs a reason: one human-readable sentence")
        if self.attempt is not None and (
            isinstance(self.attempt, bool) or not isinstance(self.attempt, int) or self.attempt < 1
        ):
            raise InvalidDecision(f"attempt must be a whole number ≥ 1, not {self.attempt!r}")
        # Normalise enum members to their plain string values, and fill derived defaults.
        object.__setattr__(self, "decision_type", kind.value)
        object.__setattr__(self, "decision_source", source.value)
        if not self.actor:
            object.__setattr__(self, "actor", f"{source.value}:stoic")
        if not self.decision_trigger:
            default = (
                DecisionTrigger.EXPLICIT
                if source is DecisionSource.HUMAN
                else DecisionTrigger.AUTONOMOUS
            )
            object.__setattr__(self, "decision_trigger", default.value)
        else:
            object.__setattr__(
                self, "decision_trigger", str(DecisionTrigger(self.decision_trigger))
            )
        if self.causal_role is not None:
            object.__setattr__(self, "causal_role", str(CausalRole(self.causal_role)))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Decision:
        """Build a decision from keyword-style values; unknown keys are an error."""
        known = set(cls.__dataclass_fields__)
        aliases = {
            "source": "decision_source",
            "trigger": "decision_trigger",
            "inputs": "decision_inputs",
            "reason": "decision_reason",
            "outcome": "decision_outcome",
            "type": "decision_type",
        }
        normalised: dict[str, Any] = {}
        for key, value in values.items():
            name = aliases.get(key, key)
            if name not in known:
                hint = closest(key, sorted(known | set(aliases)))
                suggestion = f"; did you mean {hint!r}?" if hint else ""
                raise InvalidDecision(f"unknown decision field {key!r}{suggestion}")
            normalised[name] = value
        try:
            return cls(**normalised)
        except TypeError as exc:
            raise InvalidDecision(f"incomplete decision: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Record:
    """A decision as stored in the log: sequenced, timestamped and chained."""

    seq: int
    prev_hash: str
    hash: str
    decision_id: str
    decided_at: str
    decision_type: str
    decision_outcome: str
    decision_source: str
    actor: str
    decision_trigger: str
    decision_reason: str
    decision_inputs: Mapping[str, Any]
    causal_role: str | None
    details: Mapping[str, Any]
    run_id: str | None = None
    request_id: str | None = None
    task_id: str | None = None
    attempt_id: str | None = None
    attempt: int | None = None
    proposal_id: str | None = None
    escalation_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The stored form: every required field, link fields only where set."""
        data: dict[str, Any] = {
            "seq": self.seq,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
            "decision_id": self.decision_id,
            "decided_at": self.decided_at,
            "decision_type": self.decision_type,
            "decision_outcome": self.decision_outcome,
            "decision_source": self.decision_source,
            "actor": self.actor,
            "decision_trigger": self.decision_trigger,
            "decision_reason": self.decision_reason,
            "decision_inputs": dict(self.decision_inputs),
            "causal_role": self.causal_role,
            "details": dict(self.details),
        }
        for name in LINK_FIELDS:
            value = getattr(self, name)
            if value is not None:
                data[name] = value
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Record:
        """Read a stored record; raises ValueError naming what is missing or unexpected."""
        missing = REQUIRED_FIELDS - data.keys()
        if missing:
            raise ValueError(f"record lacks {', '.join(sorted(missing))}")
        unknown = data.keys() - REQUIRED_FIELDS - set(LINK_FIELDS)
        if unknown:
            raise ValueError(f"record has unknown fields {', '.join(sorted(unknown))}")
        return cls(**data)

    @property
    def is_failure(self) -> bool:
        """Whether this record reports that something did not go as intended."""
        return is_failure(self.decision_type, self.decision_outcome)


def seal(
    decision: Decision, *, seq: int, prev_hash: str, decision_id: str, decided_at: str
) -> tuple[Record, bytes]:
    """Give a decision its place in the chain; returns the record and its stored line."""
    fields: dict[str, Any] = {
        "seq": seq,
        "prev_hash": prev_hash,
        "decision_id": decision_id,
        "decided_at": decided_at,
        "decision_type": decision.decision_type,
        "decision_outcome": decision.decision_outcome,
        "decision_source": decision.decision_source,
        "actor": decision.actor,
        "decision_trigger": decision.decision_trigger,
        "decision_reason": decision.decision_reason,
        "decision_inputs": dict(decision.decision_inputs),
        "causal_role": decision.causal_role,
        "details": dict(decision.details),
    }
    for name in LINK_FIELDS:
        value = getattr(decision, name)
        if value is not None:
            fields[name] = value
    body = canonical_json(fields)
    digest = hashlib.sha256(body).hexdigest()
    fields["hash"] = digest
    line = canonical_json(fields) + b"\n"
    # Round-trip the JSON so the returned record holds exactly what a reader will see.
    stored = orjson.loads(line)
    return Record(**stored), line
