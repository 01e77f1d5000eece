"""A run folder's evidence: the files under `runs/<run_id>/` that a backend must carry, told
apart from the views it rebuilds from the log (DESIGN §3, §13).

Evidence is what no record can give back: the plan copy and each amended plan's copy (the
records name their sha256), each attempt's output log, each outputs file (named by path and
sha256 in its end record) and each result file a task wrote. `state.json` and
`logs/execution_log.md` are views of the log; `run.lock` is a lease; an attempt's inputs file,
the spare it is written into and a temp file left by a crash are scratch. Only the layout's own
names are evidence: a path is checked here, in every backend, before it is stored or written.

Reading never follows a link: each folder is opened relative to the one before with
`O_NOFOLLOW`, and a link or a special file anywhere in a run folder is refused.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePath

from stoic.store.atomic import atomic_write
from stoic.store.confined import LinkRefused, confined_dir, open_at

__all__ = [
    "EVIDENCE_PATTERN",
    "RunFile",
    "RunFolders",
    "check_evidence_path",
    "read_run_folders",
    "write_run_file",
]

_ID = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}"
_N = r"[0-9]{1,9}"
EVIDENCE_PATTERN = (
    rf"plan\.yaml|plan\.amended-{_N}\.yaml"
    rf"|tasks/{_ID}/attempt-{_N}\.log|tasks/{_ID}/outputs-{_N}\.json"
    rf"|results/{_ID}\.attempt-{_N}\.json"
)
"""The evidence a run folder holds, as paths relative to it (the database checks the same)."""
_EVIDENCE = re.compile(EVIDENCE_PATTERN)
_SCRATCH = re.compile(
    rf"state\.json|run\.lock|results/{_ID}\.inputs-{_N}\.json|results/\.inputs\.spare"
    r"|(?:.*/)?\.[^/]+\.tmp"
)
"""Views rebuilt from the log, the lease and scratch: never carried, never reported."""
_RUN_ID = re.compile(_ID)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True, slots=True)
class RunFile:
    """One evidence file of a run: its path relative to the run folder and its bytes."""

    run_id: str
    path: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def relative(self) -> str:
        """Its path inside the workspace."""
        return f"runs/{self.run_id}/{self.path}"


@dataclass(slots=True)
class RunFolders:
    """What a walk of `runs/` found besides the evidence it yields."""

    runs: set[str] = field(default_factory=set)
    """The run folders walked."""
    files: int = 0
    """The evidence files yielded."""
    left: list[str] = field(default_factory=list)
    """Workspace paths of plain files that are neither evidence nor a view: not carried."""


def check_evidence_path(run_id: str, path: str) -> None:
    """Refuse (ValueError, one line) a run id or path that is not the layout's own evidence:
    nothing absolute, no `..`, no NUL, only the names a run folder keeps."""
    if not _RUN_ID.fullmatch(run_id):
        raise ValueError(f"{run_id!r} is not a run id")
    parts = path.split("/")
    if "\0" in path or path.startswith("/") or ".." in parts or not _EVIDENCE.fullmatch(path):
        raise ValueError(f"{path!r} is not a file a run folder keeps as evidence")


def read_run_folders(root: Path, found: RunFolders) -> Iterator[RunFile]:
    """Every evidence file under `root/runs`, one at a time (one file's bytes in memory),
    run by run in name order; `found` is filled as the walk goes. A link or a special file in
    the way is refused (LinkRefused, naming it)."""
    try:
        with confined_dir(root, PurePath("runs")) as runs:
            for name in _names(runs):
                where = root / "runs" / name
                kind = _kind(runs, name, where)
                if kind == "dir" and _RUN_ID.fullmatch(name):
                    found.runs.add(name)
                    yield from _walk(runs, name, name, "", where, found)
                elif kind == "dir":
                    found.left.append(f"runs/{name}/")
                else:
                    found.left.append(f"runs/{name}")
    except FileNotFoundError:
        return


def _walk(
    parent: int, name: str, run_id: str, prefix: str, where: Path, found: RunFolders
) -> Iterator[RunFile]:
    fd = os.open(name, _DIR_FLAGS, dir_fd=parent)  # no link: a folder swapped for one fails
    try:
        for entry in _names(fd):
            relative = f"{prefix}{entry}"
            path = where / entry
            kind = _kind(fd, entry, path)
            if kind == "dir":
                yield from _walk(fd, entry, run_id, f"{relative}/", path, found)
            elif _EVIDENCE.fullmatch(relative):
                found.files += 1
                yield RunFile(run_id, relative, _read(fd, path))
            elif not _SCRATCH.fullmatch(relative):
                found.left.append(f"runs/{run_id}/{relative}")
    finally:
        os.close(fd)


def _names(folder: int) -> list[str]:
    with os.scandir(folder) as entries:
        return sorted(entry.name for entry in entries)


def _kind(folder: int, name: str, path: Path) -> str:
    """ "dir" or "file"; a link or anything else is refused."""
    mode = os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    what = "a link" if stat.S_ISLNK(mode) else "not a plain file"
    raise LinkRefused(
        errno.ELOOP, f"{path} is {what}; stoic never carries one from a run folder (move it away)"
    )


def _read(folder: int, path: Path) -> bytes:
    fd = open_at(folder, path, os.O_RDONLY)
    try:
        if os.fstat(fd).st_nlink != 1:
            raise LinkRefused(
                errno.EMLINK, f"{path} is a hard link to another file (hint: move it away)"
            )
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def write_run_file(root: Path, file: RunFile) -> None:
    """Write `file` at its place in the workspace `root`: its folders made through no link, the
    file replaced atomically (never written through what stands there)."""
    check_evidence_path(file.run_id, file.path)
    path = root / file.relative
    with confined_dir(root, PurePath(file.relative).parent, create=True):
        pass
    atomic_write(path, file.data, root=root)
