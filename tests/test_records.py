"""The record codec: canonical JSON, the sha256 chain, and the decision vocabulary."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stoic.core.records import (
    GENESIS_HASH,
    Decision,
    Record,
    canonical_json,
    canonical_line_hash,
    hash_of_line,
    record_hash,
    seal,
)
from stoic.core.vocabulary import OUTCOMES, DecisionType, is_failure
from stoic.exceptions import InvalidDecision


def _seal(decision: Decision, seq: int = 1, prev: str = GENESIS_HASH) -> tuple[Record, bytes]:
    return seal(
        decision,
        seq=seq,
        prev_hash=prev,
        decision_id=f"id-{seq}",
        decided_at="2026-11-23T10:00:00.000000Z",
    )


def test_hash_covers_canonical_json_without_hash_as_the_design_says() -> None:
    record, line = _seal(Decision("execution", "started", "Task a started.", run_id="r"))
    stored = json.loads(line)
    assert stored["prev_hash"] == "0" * 64
    without = {k: v for k, v in stored.items() if k != "hash"}
    # Independent of our codec: the stdlib with the documented canonical settings.
    body = json.dumps(without, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert hashlib.sha256(body.encode("utf-8")).hexdigest() == record.hash == stored["hash"]
    # The stored line is itself canonical.
    assert line == canonical_json(stored) + b"\n"


def test_link_fields_are_stored_only_when_set() -> None:
    _, line = _seal(Decision("audit", "passed", "Clean."))
    stored = json.loads(line)
    assert "run_id" not in stored and "task_id" not in stored
    assert stored["causal_role"] is None and stored["details"] == {}


def test_defaults_follow_the_source() -> None:
    system = Decision("execution", "started", "x")
    human = Decision("proposal", "approved", "Looks right.", decision_source="human")
    assert (system.actor, system.decision_trigger) == ("system:stoic", "autonomous")
    assert (human.actor, human.decision_trigger) == ("human:stoic", "explicit")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"decision_type": "exec", "decision_outcome": "started"}, "did you mean 'execution'"),
        (
            {"decision_type": "execution", "decision_outcome": "succeded"},
            "did you mean 'succeeded'",
        ),
        ({"decision_type": "execution", "decision_outcome": "approved"}, "has no outcome"),
        ({"decision_source": "robot"}, "unknown decision source 'robot'"),
        ({"decision_trigger": "reactve"}, "did you mean 'reactive'"),
        ({"causal_role": "during"}, "unknown causal role"),
        ({"decision_reason": "   "}, "needs a reason"),
        ({"attempt": 0}, "attempt must be a whole number"),
    ],
)
def test_invalid_decisions_are_refused_with_a_hint(kwargs: dict[str, Any], message: str) -> None:
    values: dict[str, Any] = {
        "decision_type": "execution",
        "decision_outcome": "started",
        "decision_reason": "Task a started.",
    }
    values.update(kwargs)
    with pytest.raises(InvalidDecision, match=message):
        Decision(**values)


def test_unknown_mapping_key_is_refused() -> None:
    with pytest.raises(InvalidDecision, match="did you mean 'run_id'"):
        Decision.from_mapping({"type": "audit", "outcome": "passed", "reason": "x", "runid": "r"})


def test_details_must_be_json() -> None:
    with pytest.raises(InvalidDecision, match="not JSON-serialisable"):
        _seal(Decision("audit", "passed", "x", details={"when": object()}))


def test_every_type_has_outcomes_and_failures_are_in_the_vocabulary() -> None:
    assert set(OUTCOMES) == set(DecisionType)
    assert is_failure("execution", "failed") and not is_failure("execution", "succeeded")


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | _text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_text, children, max_size=4),
    max_leaves=12,
)
_decisions = st.builds(
    Decision,
    decision_type=st.just("execution"),
    decision_outcome=st.sampled_from(sorted(OUTCOMES[DecisionType.EXECUTION])),
    decision_reason=_text.filter(lambda s: bool(s.strip())),
    decision_inputs=st.dictionaries(_text, _json, max_size=4),
    details=st.dictionaries(_text, _json, max_size=4),
    run_id=st.none() | _text,
    task_id=st.none() | _text,
    attempt=st.none() | st.integers(1, 9),
)


@settings(max_examples=200)
@given(_decisions, st.integers(1, 10**9))
def test_sealed_records_round_trip_and_verify(decision: Decision, seq: int) -> None:
    record, line = _seal(decision, seq=seq)
    parsed = orjson.loads(line)
    assert Record.from_dict(parsed) == record
    assert hash_of_line(line, parsed) == record.hash
    # Stored lines are canonical, so the audit's fast path applies to every one of them.
    assert canonical_line_hash(line, record.hash) == record.hash
    assert record_hash({k: v for k, v in parsed.items() if k != "hash"}) == record.hash


@settings(max_examples=200)
@given(_decisions, st.data())
def test_any_change_to_a_record_is_detected(decision: Decision, data: st.DataObject) -> None:
    record, line = _seal(decision)
    parsed = orjson.loads(line)
    field = data.draw(st.sampled_from(["decision_reason", "decided_at", "actor", "seq"]))
    parsed[field] = parsed[field] + 1 if field == "seq" else parsed[field] + "!"
    tampered = canonical_json(parsed) + b"\n"
    assert hash_of_line(tampered, parsed) != record.hash


@settings(max_examples=100)
@given(_decisions)
def test_reformatted_line_still_verifies_by_its_content(decision: Decision) -> None:
    record, line = _seal(decision)
    parsed = orjson.loads(line)
    pretty = json.dumps(parsed, indent=1, ensure_ascii=True).encode()
    assert hash_of_line(pretty, json.loads(pretty)) == record.hash
