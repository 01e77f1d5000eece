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
from typing import Any, NamedTuple, TypeVar

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
    "canonical_line_hash",
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


_MEMBER_LENGTH = len(b',"hash":"') + 64 + len(b'"')


def canonical_json(value: Mapping[str, Any]) -> bytes:
    """Sorted keys, compact separators, UTF-8: the bytes a record's hash covers."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError as exc:
        raise InvalidDecision(f"record is not JSON-serialisable: {exc}") from exc


def record_hash(fields_without_hash: Mapping[str, Any]) -> str:
    """The sha256 (hex) of the canonical JSON of a record without its `hash` field."""
    return hashlib.sha256(canonical_json(fields_without_hash)).hexdigest()


def canonical_line_hash(line: bytes, stored_hash: str) -> str | None:
    """The sha256 of a canonical line without its `,"hash":"<stored_hash>"` member.

    None when the line has no such member where a canonical line has it.
    """
    body = line[:-1] if line[-1:] == b"\n" else line
    # A short needle: CPython finds it much faster than the whole 74-byte member.
    cut = body.rfind(b',"hash":"')
    end = cut + _MEMBER_LENGTH
    if cut <= 0 or body[cut + 9 : end] != b'%s"' % stored_hash.encode("ascii", "replace"):
        return None
    digest = hashlib.sha256(body[:cut])
    digest.update(body[end:])
    return digest.hexdigest()


def hash_of_line(line: bytes, parsed: Mapping[str, Any]) -> str:
    """Recompute the hash of a stored line whose parsed form is `parsed`.

    Fast path: a canonical line hashes to the sha256 of itself without the `hash` member. A line
    that is not canonical (reformatted by hand) is re-serialised; its content still decides.
    """
    stored = parsed.get("hash")
    if type(stored) is str and len(stored) == 64 and canonical_line_hash(line, stored) == stored:
        return stored
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
        # Runs for every record written, so plain-string lookups come first; the enums are
        # consulted only to explain a refusal.
        outcomes = _OUTCOMES_BY_TYPE.get(self.decision_type)
        if outcomes is None:
            _choice(DecisionType, self.decision_type, "decision type")
            raise AssertionError("unreachable")  # pragma: no cover
        if self.decision_outcome not in outcomes:
            allowed = sorted(outcomes)
            hint = closest(self.decision_outcome, allowed)
            suggestion = f"; did you mean {hint!r}?" if hint else ""
            raise InvalidDecision(
                f"{self.decision_type} has no outcome {self.decision_outcome!r}{suggestion}"
                f" (allowed: {', '.join(allowed)})"
            )
        if self.decision_source not in _SOURCES:
            _choice(DecisionSource, self.decision_source, "decision source")
        if self.decision_trigger and self.decision_trigger not in _TRIGGERS:
            _choice(DecisionTrigger, self.decision_trigger, "decision trigger")
        if self.causal_role is not None and self.causal_role not in _ROLES:
            _choice(CausalRole, self.causal_role, "causal role")
        if not self.decision_reason.strip():
            raise InvalidDecision("a decision needs a reason: one human-readable sentence")
        if self.attempt is not None and (type(self.attempt) is not int or self.attempt < 1):
            raise InvalidDecision(f"attempt must be a whole number ≥ 1, not {self.attempt!r}")
        # Enum members become their plain values; derived defaults are filled in.
        for name in ("decision_type", "decision_source", "decision_trigger", "causal_role"):
            value = getattr(self, name)
            if value is not None and type(value) is not str:
                object.__setattr__(self, name, str(value))
        if not self.actor:
            object.__setattr__(self, "actor", f"{self.decision_source}:stoic")
        if not self.decision_trigger:
            human = self.decision_source == DecisionSource.HUMAN
            default = DecisionTrigger.EXPLICIT if human else DecisionTrigger.AUTONOMOUS
            object.__setattr__(self, "decision_trigger", default.value)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Decision:
        """Build a decision from keyword-style values; unknown keys are an error."""
        normalised: dict[str, Any] = {}
        for key, value in values.items():
            name = _ALIASES.get(key, key)
            if name not in _DECISION_FIELDS:
                hint = closest(key, sorted(_DECISION_FIELDS | set(_ALIASES)))
                suggestion = f"; did you mean {hint!r}?" if hint else ""
                raise InvalidDecision(f"unknown decision field {key!r}{suggestion}")
            normalised[name] = value
        try:
            return cls(**normalised)
        except TypeError as exc:
            raise InvalidDecision(f"incomplete decision: {exc}") from exc


_DECISION_FIELDS = frozenset(Decision.__dataclass_fields__)
_ALIASES = {
    "type": "decision_type",
    "outcome": "decision_outcome",
    "reason": "decision_reason",
    "source": "decision_source",
    "trigger": "decision_trigger",
    "inputs": "decision_inputs",
}
"""Short names `record()` uses for its arguments, accepted by `record_many` mappings too."""
_OUTCOMES_BY_TYPE: dict[str, frozenset[str]] = {kind.value: o for kind, o in OUTCOMES.items()}
_SOURCES = frozenset(member.value for member in DecisionSource)
_TRIGGERS = frozenset(member.value for member in DecisionTrigger)
_ROLES = frozenset(member.value for member in CausalRole)


class Record(NamedTuple):
    """A decision as stored in the log: sequenced, timestamped and chained.

    A named tuple rather than a frozen dataclass: a reader builds one per record, and a tuple
    is built several times faster.
    """

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
