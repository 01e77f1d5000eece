"""The queue's files: each proposal's file in its status folder, and the manifest.

Both are projections of the log's fold of the queue (DESIGN §8): written after each record,
caught up after a writer was killed between a record and its files, rebuilt by a repair.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import orjson

from stoic.core.proposals import FOLDERS, QueueState
from stoic.store.atomic import atomic_write
from stoic.store.manifest import update_manifest, write_manifest
from stoic.store.quarantine import Quarantine
from stoic.store.queue_audit import check_queue_files

__all__ = ["rebuild_files", "write_lagging", "write_proposal", "write_proposal_file"]


def write_proposal(root: Path, state: QueueState, proposal_id: str, reflected_seq: int) -> None:
    """After one record: the proposal's file moves to its status folder, its manifest row
    changes in place."""
    write_proposal_file(root, state, proposal_id)
    update_manifest(root, state, proposal_id, reflected_seq)


def write_proposal_file(root: Path, state: QueueState, proposal_id: str) -> None:
    proposal = state.proposals[proposal_id]
    target = root / "queue" / proposal.status.value / f"{proposal_id}.json"
    atomic_write(target, orjson.dumps(proposal.to_json(), option=orjson.OPT_INDENT_2), root=root)
    for folder in FOLDERS:
        if folder != proposal.status.value:
            with contextlib.suppress(FileNotFoundError):
                (root / "queue" / folder / f"{proposal_id}.json").unlink()


def write_lagging(root: Path, state: QueueState, since: int) -> list[str]:
    """Rewrite the files of every proposal with a record after `since`, and the manifest;
    returns those proposals."""
    behind = [
        proposal.id
        for proposal in state.proposals.values()
        if proposal.history and int(proposal.history[-1]["seq"]) > since
    ]
    for proposal_id in behind:
        write_proposal_file(root, state, proposal_id)
    write_manifest(root, state)
    return behind


def rebuild_files(root: Path, state: QueueState, quarantine: Quarantine) -> list[str]:
    """Rewrite every proposal file and the manifest from `state`; returns what changed.

    A file that does not belong where it is, or says other than the log, is moved into
    `quarantine` first: a repair never deletes evidence.
    """
    problems = check_queue_files(root, state, state.last_seq)
    for violation in problems:
        if violation.path is not None:
            quarantine.move(violation.path)
    for folder in FOLDERS:
        for path in (root / "queue" / folder).glob("*.json"):
            owner = state.proposals.get(path.stem)
            if owner is None or owner.status.value != folder:
                quarantine.move(f"queue/{folder}/{path.name}")
    for proposal_id in state.proposals:
        write_proposal_file(root, state, proposal_id)
    write_manifest(root, state)
    return [violation.message for violation in problems]
