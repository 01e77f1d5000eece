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
from pathlib import Path
from typing import Any

import orjson

from stoic.core.task_outputs import OUTPUTS_INLINE_LIMIT, canonical, digest
from stoic.run.attempt import AttemptResult
from stoic.store.atomic import atomic_write, write_all
from stoic.store.confined import confined_dir, open_at, read_confined, relative_inside

__all__ = [
    "InputsUnreadable",
    "inputs_path",
    "load_outputs",
    "produced_outputs",
    "seal_outputs",
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
    return root / "runs" / run_id / "results" / f"{task_id}.inputs-{attempt}.json"


def write_inputs(root: Path, path: Path, inputs: Mapping[str, Any]) -> None:
    """`$STOIC_INPUTS`: `{dependency_id: outputs}`. Not synced: it is rebuilt from the records
    for every attempt, so a crash can lose nothing a later attempt needs. Whatever stands at
    its place is unlinked first (never written through: it could be a link to another file)."""
    data = orjson.dumps(dict(inputs), option=orjson.OPT_SORT_KEYS)
    relative = relative_inside(root, path)
    with confined_dir(root, relative.parent, create=True) as folder:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(relative.name, dir_fd=folder)
        fd = open_at(folder, path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        try:
            write_all(fd, data)
        finally:
            os.close(fd)


def _make_folder(root: Path, path: Path) -> None:
    """The file's folder, made as `mkdir -p` would but never through a link."""
    with confined_dir(root, relative_inside(root, path).parent, create=True):
        pass
