"""The gate's quick path: a call the rules alone allow or deny, answered and recorded without
opening the workspace (DESIGN §15).

The hook runs at every tool call of an agent, so the answers that need nothing but the rules —
most of them — must cost little more than the interpreter's start: this path reads `[gate]`
with `stoic.core.gate_table` (no pydantic), weighs the call by the same `judge` as the whole
gate, and appends its `gate` record to the log directly, leaving the projections to catch up at
the next open (as after any crash). Anything else — a verdict that sends the call to a person,
a settings file that cannot be read or checked — is the whole gate's (`stoic.services.gate`),
which reads everything again and denies saying what is wrong. Only `[gate]` decides here: the
other tables of `stoic.toml` are not the gate's input, and are not read on this path — but a
`[store] url` sends every call to the whole gate, which records in that database.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from pathlib import Path

from stoic.core.gate import GateRule
from stoic.core.gate_table import gate_table
from stoic.core.limits import MAX_SETTINGS_BYTES
from stoic.plan.reading import read_bounded
from stoic.services.gate_call import (
    OUTCOME,
    GateAnswer,
    HookCall,
    gate_decision,
    judge,
    rules_answer,
)
from stoic.store.layout import DECISION_LOG, LOCK_FILE, SETTINGS_FILE
from stoic.store.log import FileDecisionLog

__all__ = ["quick_answer"]


def quick_answer(
    workspace_root: Path,
    call: HookCall,
    *,
    agent: str,
    repository: Path | None = None,
    narrowing: Sequence[GateRule] = (),
    run_id: str | None = None,
    task_id: str | None = None,
) -> GateAnswer | None:
    """The allow or deny the rules give `call`, on record; None where the whole gate decides."""
    root = workspace_root.absolute()
    if not agent.startswith("agent:"):
        return None
    try:
        data = tomllib.loads(read_bounded(root / SETTINGS_FILE, MAX_SETTINGS_BYTES).decode())
    except Exception:  # the whole gate reads it again, and says what is wrong
        return None
    store = data.get("store")
    if isinstance(store, dict) and store.get("url"):
        return None  # the gate's records and proposals are the database's: the whole gate's
    table = gate_table(data.get("gate", {}))
    if isinstance(table, str):
        return None
    judged = judge(
        root,
        table,
        call,
        repository=repository,
        narrowing=narrowing,
        run_id=run_id,
        task_id=task_id,
    )
    answered = rules_answer(judged)
    if answered is None:
        return None
    said, reason = answered
    log = FileDecisionLog(root / DECISION_LOG, root / LOCK_FILE, root=root)
    try:
        decision = gate_decision(OUTCOME[said], reason, judged.inputs | {"agent": agent})
        record = log.append([decision])[0]
    finally:
        log.close()
    return GateAnswer(said, reason, None, record.seq)
