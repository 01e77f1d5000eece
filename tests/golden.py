"""The decisions behind `tests/fixtures/golden_decision_log.ndjson`, sealed with fixed time and ids.

Regenerate the fixture only for a deliberate format change:
`python -m tests.golden > tests/fixtures/golden_decision_log.ndjson`.
"""

from __future__ import annotations

import sys

from stoic.core.records import GENESIS_HASH, Decision, seal

DECISIONS = [
    Decision(
        "run_lifecycle",
        "started",
        "Run of plan release.yaml started.",
        run_id="run-1",
        actor="system:runner",
        causal_role="pre_run",
    ),
    Decision(
        "execution",
        "started",
        "Task build started.",
        run_id="run-1",
        task_id="build",
        attempt=1,
        actor="system:runner",
        causal_role="in_run",
    ),
    Decision(
        "execution",
        "failed",
        "Task build timed out after 600 s.",
        run_id="run-1",
        task_id="build",
        attempt=1,
        actor="system:runner",
        causal_role="in_run",
        decision_inputs={"failure_kind": "timeout", "partial": False},
    ),
    Decision(
        "recovery_evaluation",
        "recovery_applied",
        "R1: timeout on an idempotent task.",
        run_id="run-1",
        task_id="build",
        attempt=1,
        decision_trigger="reactive",
        causal_role="post_run",
        decision_inputs={"recovery_class": "R1"},
    ),
    Decision(
        "proposal",
        "approved",
        "Reviewed: the change is what was asked — ünïcödé ✓.",
        decision_source="human",
        actor="human:ana",
        proposal_id="PROP-20261123-001",
        details={"note": 'line\nbreak and "quotes"'},
    ),
]


def lines() -> list[bytes]:
    out, prev = [], GENESIS_HASH
    for seq, decision in enumerate(DECISIONS, start=1):
        record, line = seal(
            decision,
            seq=seq,
            prev_hash=prev,
            decision_id=f"{seq:032x}",
            decided_at=f"2026-11-23T10:00:0{seq}.000000Z",
        )
        out.append(line)
        prev = record.hash
    return out


if __name__ == "__main__":
    sys.stdout.buffer.write(b"".join(lines()))
