"""Where a workspace stands (`stoic status`), and the quick way to read it.

`stoic status` is what a person types, or a `watch` loop runs, to see where things stand, so
its common case must cost little more than the interpreter's start. `quick_standing` reads what
that answer is made of and nothing else: the status projection file, checked against the log's
last record as every open checks it, and `[queue] batch_size` (no pydantic: one plain integer is
read as the settings model reads it). Anything else — a projection that lags the log (it is
caught up and written by the whole command), a torn or damaged tail, a settings file that cannot
be read, a `[queue]` table holding more than one plain integer, a `[store]` table that is not
empty, a top-level name that is no table of the settings — is answered by the whole command
(`stoic.services.trust.standing` on an opened workspace), which says what is wrong. Only the log
and `[queue] batch_size` are status's input: what the other tables hold is checked by the
commands that use them.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stoic.core.limits import MAX_INT_BITS, MAX_SETTINGS_BYTES
from stoic.core.pause import DEFAULT_BATCH_SIZE
from stoic.core.projection import WorkspaceStatus, WorkspaceStatusProjection
from stoic.plan.reading import read_bounded
from stoic.store.layout import DECISION_LOG, LOCK_FILE, SETTINGS_FILE, STATUS_PROJECTION
from stoic.store.log import FileDecisionLog
from stoic.store.projections import ProjectionFile

__all__ = ["SETTINGS_TABLES", "Standing", "quick_standing"]


@dataclass(frozen=True, slots=True)
class Standing:
    """Where the workspace stands: what the log holds, the pause in force, the batch size."""

    status: WorkspaceStatus
    batch_size: int
    """The review batch size in force: the last resume's smaller batch, else the setting."""
    batch_size_from_resume: bool
    """The batch size is the one the last resume named (after a trust issue)."""


def quick_standing(workspace_root: Path) -> Standing | None:
    """Where the workspace at `workspace_root` stands, read without opening it; None where the
    whole command must answer (see the module's docstring)."""
    root = workspace_root.absolute()
    try:
        data = tomllib.loads(read_bounded(root / SETTINGS_FILE, MAX_SETTINGS_BYTES).decode())
        setting = _plain_batch_size(data)
        if setting is None or not (root / DECISION_LOG).is_file():
            return None
        status_file = ProjectionFile(
            WorkspaceStatusProjection(), root / STATUS_PROJECTION, root=root
        )
        stamp = status_file.read()
        log = FileDecisionLog(root / DECISION_LOG, root / LOCK_FILE, root=root)
        try:
            tail = log.tail_state()
            if (
                stamp is None
                or tail.torn is not None
                or tail.corrupt is not None
                or stamp.log_offset != tail.good_end
                or status_file.misalignment(stamp, log) is not None
            ):
                return None
        finally:
            log.close()
    except Exception:  # the whole command reads it all again, and says what is wrong
        return None
    named = stamp.state.batch_size
    return Standing(stamp.state, named or setting, bool(named))


SETTINGS_TABLES = frozenset(
    {
        "queue", "review", "runner", "recovery", "policy", "agents", "schedules", "serve",
        "gate", "store", "notifiers", "secrets",
    }
)  # fmt: skip
"""The top-level names `stoic.toml` may hold (`stoic.store.config.Settings`' fields; a test
checks that the two agree)."""


def _plain_batch_size(data: dict[str, Any]) -> int | None:
    """`[queue] batch_size` when it is absent or one plain integer the settings model takes as
    it is; None for anything the model must judge: a name that is no table of the settings (a
    `[stor]` meant as `[store]`), a `[store]` table that is not plainly empty (it may name a
    database, whose log is not this folder's)."""
    if set(data) - SETTINGS_TABLES:
        return None
    if data.get("store", {}) not in ({}, {"url": ""}):
        return None
    queue = data.get("queue", {})
    if not isinstance(queue, dict) or set(queue) - {"batch_size"}:
        return None
    value = queue.get("batch_size", DEFAULT_BATCH_SIZE)
    if type(value) is not int or not 1 <= value < 2**MAX_INT_BITS:
        return None
    return value
