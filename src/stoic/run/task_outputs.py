"""Outputs between tasks, on disk: the big ones in the run folder, and each dependent's inputs.

A task's outputs are kept by its end record: inline when small, else in
`runs/<run_id>/tasks/<task_id>/outputs-<attempt>.json`, named there by path and sha256. A
dependent's inputs are rebuilt from those records, never from a cache, so a continued run gives
the same inputs; a file that no longer matches its sha256 fails the dependent, never silently
hands it nothing.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from stoic.core.failure import Failure, FailureKind, Partial
from stoic.core.policy import mask_json
from stoic.core.run_state import RunFolder
from stoic.core.task_outputs import OUTPUTS_INLINE_LIMIT, OutputsInvalid, canonical, digest
from stoic.exceptions import WorkspaceError
from stoic.plan.models import TaskSpec
from stoic.run.attempt import Attempt, AttemptResult
from stoic.store.atomic import atomic_write, write_all
from stoic.store.confined import confined_dir, open_at, read_confined, relative_inside

__all__ = [
    "InputsUnreadable",
    "given_inputs",
    "inputs_path",
    "load_outputs",
    "produced_outputs",
    "retire_inputs",
    "seal_outputs",
    "sealed_result",
    "write_inputs",
]


class InputsUnreadable(ValueError):
    """A dependency's outputs cannot be read back as recorded."""


def produced_outputs(result: AttemptResult) -> Any:
    """What the attempt hands its dependents: a result file's `outputs`, else what the
    executor gave (a Python task's return value, an HTTP task's body); None for nothing."""
    file = result.result
    if file is not None and file.error is None and file.data is not None and "outputs" in file.data:
        return file.data["outputs"]
    return result.outputs


def seal_outputs(root: Path, run_id: str, task_id: str, attempt: int, value: Any) -> dict[str, Any]:
    """The end record's entry for `value` (checked: raises OutputsInvalid); a big value is
    written to its own file first, atomically and through no link."""
    data = canonical(value)
    if len(data) <= OUTPUTS_INLINE_LIMIT:
        return {"outputs": value}
    relative = f"runs/{run_id}/tasks/{task_id}/outputs-{attempt}.json"
    path = root / relative
    _make_folder(root, path)
    atomic_write(path, data, root=root)
    return {"outputs_file": {"path": relative, "sha256": digest(data), "bytes": len(data)}}


def load_outputs(root: Path, task_id: str, ref: Mapping[str, Any]) -> Any:
    """A dependency's outputs as its end record names them (see `outputs_ref`)."""
    if "outputs" in ref:
        return ref["outputs"]
    file = ref["outputs_file"]
    path = root / str(file.get("path", ""))
    try:
        data = read_confined(root, path)
    except OSError as exc:
        raise InputsUnreadable(
            f"the outputs of {task_id} cannot be read from {path}: {exc.strerror or exc}"
            " (hint: restore the file, or retry that task)"
        ) from None
    if digest(data) != file.get("sha256"):
        raise InputsUnreadable(
            f"the outputs of {task_id} in {path} no longer match the sha256 its end record"
            f" names ({file.get('sha256')}): the file was changed (hint: restore it, or retry"
            " that task)"
        )
    return orjson.loads(data)


def inputs_path(root: Path, run_id: str, task_id: str, attempt: int) -> Path:
    """Beside the attempt's result file, in the folder its task may write (and read, as the
    task user)."""
    return root / f"runs/{run_id}/results/{task_id}.inputs-{attempt}.json"  # one join: cheaper


def write_inputs(
    root: Path, path: Path, inputs: Mapping[str, Any], folder_fd: int | None = None
) -> None:
    """`$STOIC_INPUTS`: `{dependency_id: outputs}`. Not synced: it is rebuilt from the records
    for every attempt, so a crash can lose nothing a later attempt needs. Whatever stands at
    its place is unlinked first (never written through: it could be a link to another file).
    `folder_fd`: the results folder the runner holds, checked once (else walked from `root`)."""
    data = orjson.dumps(dict(inputs), option=orjson.OPT_SORT_KEYS)
    if folder_fd is not None:
        _write_new(folder_fd, path, data)
        return
    relative = relative_inside(root, path)
    with confined_dir(root, relative.parent, create=True) as folder:
        _write_new(folder, path, data)


_SPARE = ".inputs.spare"
"""An ended attempt's inputs file, kept for the next one to be written into: a new file costs an
inode, which on some disks is dearer than all the rest of a shell task's bookkeeping."""


def retire_inputs(folder: int, path: Path) -> None:
    """The attempt that was given `path` has ended (it and its process group are gone): the
    file becomes the spare the next inputs file is written into."""
    with contextlib.suppress(OSError):
        os.rename(path.name, _SPARE, src_dir_fd=folder, dst_dir_fd=folder)


def _write_new(folder: int, path: Path, data: bytes) -> None:
    reused = _reused_spare(folder, path)
    if reused is None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path.name, dir_fd=folder)
        fd, size = open_at(folder, path, os.O_WRONLY | os.O_CREAT | os.O_EXCL), 0
    else:
        fd, size = reused
    try:
        write_all(fd, data)
        if size > len(data):  # cut only what is left over: freeing blocks is dear too
            os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


def _reused_spare(folder: int, path: Path) -> tuple[int, int] | None:
    """The spare, renamed to `path`, and its size; None when there is none, or when what stands
    there now is not stoic's own file with that one name (the task user may write this folder):
    then `path` is unlinked and made anew, as if there had been no spare."""
    try:
        os.rename(_SPARE, path.name, src_dir_fd=folder, dst_dir_fd=folder)
        fd = open_at(folder, path, os.O_WRONLY)
    except OSError:
        return None
    try:
        found = os.fstat(fd)
    except OSError:
        found = None
    if found is not None and found.st_nlink == 1 and found.st_uid == os.geteuid():
        return fd, found.st_size
    os.close(fd)
    return None


def _make_folder(root: Path, path: Path) -> None:
    """The file's folder, made as `mkdir -p` would but never through a link."""
    with confined_dir(root, relative_inside(root, path).parent, create=True):
        pass


def given_inputs(root: Path, folder: RunFolder, spec: TaskSpec, attempt: Attempt) -> Attempt:
    """The attempt with its direct dependencies' outputs, read back from what their end
    records name (so a continued run gives the same): a Python task's `inputs`, else the file
    `$STOIC_INPUTS`. Raises InputsUnreadable, with why, when they cannot be handed over."""
    depends = spec.dependency_ids
    if not depends and spec.call is None:
        return attempt
    inputs: dict[str, Any] = {}
    for task_id in depends:
        task = folder.tasks.get(task_id)
        ref = task.outputs if task is not None else None
        inputs[task_id] = load_outputs(root, task_id, ref) if ref is not None else None
    if spec.call is not None:
        return replace(attempt, inputs=inputs)
    path = inputs_path(root, attempt.run_id, attempt.task_id, attempt.attempt)
    try:
        write_inputs(root, path, inputs, attempt.results_fd)
    except OSError as exc:  # a link or a file in the way, a full or read-only disk
        raise InputsUnreadable(
            f"cannot write its inputs file {path}: {exc.strerror or exc}"
        ) from None
    return attempt.with_env({"STOIC_INPUTS": str(path)})


def sealed_result(
    root: Path, attempt: Attempt, finished: AttemptResult, masks: Mapping[str, str]
) -> AttemptResult:
    """A success's outputs as its end record keeps them (masked; a big one in its own file);
    outputs that cannot be handed on fail the attempt, never vanish."""
    if finished.outputs is None and finished.result is None:
        return finished  # nothing to seal: no copy made for each silent task
    if finished.failure is not None:
        return replace(finished, outputs=None)
    file = finished.result
    if file is not None and file.error is not None and "outputs" in (file.data or {}):
        failure = Failure(
            FailureKind.ERROR,
            f"its result file's outputs cannot be handed on: {file.error}",
            partial=Partial.TRUE,
        )
        return replace(finished, failure=failure, outputs=None)
    produced = produced_outputs(finished)
    if produced is None:
        return replace(finished, outputs=None)
    try:
        sealed = seal_outputs(
            root, attempt.run_id, attempt.task_id, attempt.attempt, mask_json(produced, masks)
        )
    except (OutputsInvalid, WorkspaceError) as exc:
        failure = Failure(FailureKind.ERROR, str(exc), partial=Partial.TRUE)
        return replace(finished, failure=failure, outputs=None)
    except OSError as exc:
        why = f"cannot write its outputs file: {exc.strerror or exc}"
        return replace(finished, failure=Failure(FailureKind.ERROR, why), outputs=None)
    return replace(finished, outputs=None, sealed=sealed)
