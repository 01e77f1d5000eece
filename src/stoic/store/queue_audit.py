"""The queue's files against the log: folders, proposal files, the manifest and sources.

What `stoic audit` checks of the review queue (DESIGN §8, §12): a proposal file in no folder,
in two, or in the wrong one; a file the log does not know (an orphan) or one edited by hand;
a manifest that is missing, unreadable or disagrees with the log; a source that is gone.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import orjson

from stoic.core import next_steps
from stoic.core.audit import Violation, ViolationCode
from stoic.core.manifest import manifest_document
from stoic.core.proposals import FOLDERS, Proposal, ProposalStatus, QueueState, is_proposal_id
from stoic.store.manifest import MANIFEST

__all__ = ["check_queue_files"]


def check_queue_files(
    root: Path, state: QueueState, last_seq: int, newest: Callable[[], int] | None = None
) -> list[Violation]:
    """Folders and manifest against the log: orphans, duplicates, wrong folder, edited files.

    A file that reflects a proposal record the log does not hold (a seq in its history that
    is not the log's, a manifest stamped past the log's end) means records were lost. The
    files are read after the log up to seq `last_seq`: `newest` says where the log ends now,
    and a file that reflects only records a live writer appended since is newer than the
    audit, not wrong (asked after the file was read, so it covers what the file shows).
    """
    newest = newest or (lambda: last_seq)
    violations: list[Violation] = []
    seen: dict[str, list[str]] = {}
    newer: set[str] = set()
    for folder in FOLDERS:
        folder_path = f"{root}/queue/{folder}/"  # plain strings: 20,000 Path joins cost 0.3 s
        for name in _json_names(folder_path):
            stem = name[: -len(".json")]
            seen.setdefault(stem, []).append(folder)
            relative = f"queue/{folder}/{name}"
            proposal = state.proposals.get(stem)
            if proposal is None or not _file_holds(folder_path + name, proposal):
                found = _file_violation(folder_path + name, relative, proposal, last_seq, newest)
                if found is None:
                    newer.add(stem)
                else:
                    violations.append(found)
                continue
            if folder != proposal.status.value:
                violations.append(
                    Violation(
                        ViolationCode.QUEUE_MISMATCH,
                        f"{relative} is {proposal.status.value} in the log, not {folder}",
                        seq=proposal.created_seq,
                        path=relative,
                    )
                )
    for proposal_id, proposal in state.proposals.items():
        folders = seen.get(proposal_id, [])
        if folders != [proposal.status.value] and proposal_id not in newer:
            if newest() > last_seq:
                continue  # a live writer may be moving it: the next audit sees where it lands
            where = ", ".join(f"queue/{f}" for f in folders) or "no folder"
            violations.append(
                Violation(
                    ViolationCode.QUEUE_MISMATCH,
                    f"{proposal_id} is {proposal.status.value} in the log but sits in {where}",
                    seq=proposal.created_seq,
                    expected=f"queue/{proposal.status.value}",
                    found=where,
                )
            )
    violations.extend(_missing_sources(root, state))
    manifest_path = root / MANIFEST
    if not state.proposals and not manifest_path.exists():
        return violations
    try:
        manifest = orjson.loads(manifest_path.read_bytes())
        stamped = manifest.get("last_seq") if isinstance(manifest, dict) else None
    except FileNotFoundError:
        violations.append(
            Violation(
                ViolationCode.PROJECTION_MISSING,
                f"{MANIFEST} is missing; {next_steps.audit(repair=True)} rebuilds it",
                path=str(MANIFEST),
            )
        )
        return violations
    except (OSError, orjson.JSONDecodeError) as exc:
        violations.append(
            Violation(
                ViolationCode.PROJECTION_UNREADABLE,
                f"{MANIFEST} is unreadable: {exc}",
                path=str(MANIFEST),
            )
        )
        return violations
    if isinstance(stamped, int) and last_seq < stamped <= newest():
        return violations  # a live writer's: newer than the log this audit read
    if isinstance(stamped, int) and stamped > last_seq:
        violations.append(Violation.reflects_lost(str(MANIFEST), stamped, last_seq))
    expected = manifest_document(state, "")
    for key in ("summary", "proposals", "pending_by_type", "pending_by_confidence"):
        if manifest.get(key) != expected[key]:
            violations.append(
                Violation(
                    ViolationCode.QUEUE_MISMATCH,
                    f"{MANIFEST} disagrees with the log at {key}",
                    expected=str(expected[key])[:200],
                    found=repr(manifest.get(key))[:200],
                    path=str(MANIFEST),
                )
            )
    return violations


def _json_names(folder: str) -> list[str]:
    try:
        with os.scandir(folder) as entries:
            return sorted(e.name for e in entries if e.name.endswith(".json"))
    except FileNotFoundError:
        return []


def _file_violation(
    path: str,
    relative: str,
    proposal: Proposal | None,
    last_seq: int,
    newest: Callable[[], int],
) -> Violation | None:
    """A proposal file that is not what the log says: lost records, an orphan, or an edit;
    None when all it shows beyond the log was appended after the audit read the log."""
    known = {int(step["seq"]) for step in proposal.history} if proposal is not None else set()
    beyond = sorted(_history_seqs(path) - known)
    if beyond and last_seq < beyond[0] and beyond[-1] <= newest():
        return None
    if beyond:
        what = "a proposal the log does not hold" if proposal is None else "records"
        return Violation(
            ViolationCode.RECORDS_LOST,
            f"{relative} reflects {what} (seq {', '.join(map(str, beyond[:5]))}) that the log"
            " does not contain: records were lost",
            seq=beyond[0],
            path=relative,
        )
    if proposal is None:
        return Violation(
            ViolationCode.QUEUE_MISMATCH,
            f"{relative} is not a proposal the log knows (orphan)",
            path=relative,
        )
    return Violation(
        ViolationCode.QUEUE_MISMATCH,
        f"{relative} differs from the log's proposal (edited by hand?)",
        seq=proposal.created_seq,
        path=relative,
    )


def _history_seqs(path: str) -> set[int]:
    """The seqs a proposal file says its records have (none when it cannot be read)."""
    try:
        with open(path, "rb") as file:  # noqa: PTH123 (a str path: see check_queue_files)
            history = orjson.loads(file.read()).get("history")
        return {step["seq"] for step in history if type(step.get("seq")) is int}
    except (OSError, orjson.JSONDecodeError, AttributeError, TypeError):
        return set()


def _file_holds(path: str, proposal: Proposal) -> bool:
    """Whether a proposal file says what the log says: byte for byte as stoic writes it, or
    (reformatted by a tool) equal as JSON."""
    try:
        with open(path, "rb") as file:  # noqa: PTH123 (a str path: see check_queue_files)
            stored = file.read()
    except OSError:
        return False
    document = proposal.to_json()
    if stored == orjson.dumps(document, option=orjson.OPT_INDENT_2):
        return True
    try:
        return bool(orjson.loads(stored) == orjson.loads(orjson.dumps(document)))
    except orjson.JSONDecodeError:
        return False


def _missing_sources(root: Path, state: QueueState) -> list[Violation]:
    """Sources of undecided proposals that are gone: proposals, runs and workspace files.

    Decision and task ids are checked when the proposal is made; they live in the log, which
    never loses a record without the audit saying so.
    """
    found = []
    for proposal in state.proposals.values():
        if proposal.status not in (ProposalStatus.PENDING, ProposalStatus.APPROVED):
            continue
        for source in proposal.sources:
            if is_proposal_id(source):
                exists = source in state.proposals
            elif source.startswith("run-"):
                exists = (root / "runs" / source).is_dir()
            elif "/" in source or "." in source:
                exists = (root / source).exists()
            else:
                continue
            if not exists:
                found.append(
                    Violation(
                        ViolationCode.SOURCE_MISSING,
                        f"{proposal.id} cites {source!r}, which no longer exists",
                        seq=proposal.created_seq,
                    )
                )
    return found
