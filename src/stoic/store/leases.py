"""Run leases in the file backend: an OS lock on `runs/<run_id>/run.lock` (DESIGN §6).

The lock is the holder's liveness too: the OS drops it when the holder dies, however it dies,
so a reader can tell a run that is going from one whose runner is gone. The holder writes who
it is into the file once it holds the lock; a reader reads that only while the lock is held.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path, PurePath

import orjson

from stoic.exceptions import UsageError, WorkspaceError, WorkspaceNotWritable
from stoic.store.confined import confined_dir, open_at, open_confined
from stoic.store.interface import Lease
from stoic.store.log import utc_timestamp

__all__ = [
    "FileLeases",
    "check_run_id",
    "hold_exclusive",
    "holder_here",
    "lease_path",
    "refused",
    "run_folder",
]

_TRIES = 20
"""A reader asking who holds a run holds the lock for an instant: try again a few times before
calling it another holder's."""

_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_HOLDER_LIMIT = 4096


def check_run_id(run_id: str) -> str:
    """`run_id`, if it is a plain name; one that is not (`../x`) is refused in every backend."""
    if not _RUN_ID.fullmatch(run_id):
        raise UsageError(f"{run_id!r} is not a run id (they look like run-20261123-101500-3fa2c1)")
    return run_id


def run_folder(root: Path, run_id: str) -> Path:
    """A run's folder; an id that is not a plain name (`../x`) is refused, never followed."""
    return root / "runs" / check_run_id(run_id)


def lease_path(root: Path, run_id: str) -> Path:
    return run_folder(root, run_id) / "run.lock"


def holder_here() -> str:
    """This process, as a lease names its holder in every backend."""
    return f"pid {os.getpid()} on {os.uname().nodename}"


def refused(run_id: str, holder: Lease | None) -> UsageError:
    """The refusal of a run someone else holds, worded alike in every backend."""
    by = ""
    if holder is not None and holder.since is not None:
        by = f" ({holder.holder} since {holder.since})"
    return UsageError(f"run {run_id} is being run by another stoic process right now{by}")


def hold_exclusive(root: Path, path: Path) -> int | None:
    """An exclusive OS lock on the workspace file `path` (created if need be, never through a
    link), held by this process until the returned descriptor is closed or it dies; None
    while another process holds it."""
    try:
        fd = open_confined(root, path, os.O_RDWR | os.O_CREAT, create_parents=True)
    except OSError as exc:
        raise WorkspaceNotWritable(f"cannot open {path}: {exc.strerror or exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


class FileLeases:
    """The run leases of one workspace, as held by this process."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._held: dict[str, tuple[int, Lease]] = {}
        self._mutex = threading.Lock()

    def acquire(self, run_id: str) -> Lease:
        path = lease_path(self.root, run_id)
        try:
            fd = open_confined(self.root, path, os.O_RDWR | os.O_CREAT, create_parents=True)
        except OSError as exc:
            raise WorkspaceNotWritable(f"cannot open {path}: {exc.strerror or exc}") from exc
        try:
            for tried in range(1, _TRIES + 1):
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if tried == _TRIES:
                        raise refused(run_id, self.held_by(run_id)) from None
                    time.sleep(0.01)
            lease = Lease(run_id, holder_here(), utc_timestamp())
            _write_holder(fd, lease)
        except BaseException:
            os.close(fd)
            raise
        with self._mutex:
            self._held[run_id] = (fd, lease)
        return lease

    def renew(self, lease: Lease) -> Lease:
        """The OS keeps the lock for as long as this process lives: renewing only checks that
        the lease is still this process's."""
        with self._mutex:
            held = self._held.get(lease.run_id)
        if held is None or held[1] != lease:
            raise UsageError(
                f"run {lease.run_id} is not held by this process: it cannot be renewed"
            )
        return lease

    def release(self, lease: Lease) -> None:
        with self._mutex:
            held = self._held.get(lease.run_id)
            if held is None or held[1] != lease:
                return
            del self._held[lease.run_id]
        os.close(held[0])

    def held_by(self, run_id: str) -> Lease | None:
        """Asked with a shared lock that is let go at once; a holder keeps it exclusively."""
        path = lease_path(self.root, run_id)
        try:
            fd = open_confined(self.root, path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise WorkspaceError(f"cannot open {path}: {exc.strerror or exc}") from None
        return _holder_if_held(fd, run_id)

    def held(self) -> list[Lease]:
        """Every run held right now, by anyone, by run id: one look at each run's lock, with
        the `runs/` folder walked once (a start asks this before it is admitted)."""
        try:
            with confined_dir(self.root, PurePath("runs")) as runs:
                found = []
                for name in sorted(os.listdir(runs)):  # noqa: PTH208 - a folder descriptor
                    if _RUN_ID.fullmatch(name):
                        lease = _held_in(runs, name)
                        if lease is not None:
                            found.append(lease)
                return found
        except FileNotFoundError:
            return []
        except OSError as exc:
            where = self.root / "runs"
            raise WorkspaceError(f"cannot read {where}: {exc.strerror or exc}") from None

    @contextlib.contextmanager
    def holding(self, run_id: str) -> Iterator[Lease]:
        """Hold the run for the block."""
        lease = self.acquire(run_id)
        try:
            yield lease
        finally:
            self.release(lease)

    def close(self) -> None:
        with self._mutex:
            held, self._held = list(self._held.values()), {}
        for fd, _lease in held:
            os.close(fd)


def _held_in(runs: int, run_id: str) -> Lease | None:
    """Who holds the run whose folder is `run_id` in the open `runs` folder, if anyone."""
    try:
        folder = os.open(run_id, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=runs)
    except (FileNotFoundError, NotADirectoryError):
        return None  # not a run's folder (or gone since it was listed)
    try:
        fd = open_at(folder, Path("run.lock"), os.O_RDONLY)
    except FileNotFoundError:
        return None
    finally:
        os.close(folder)
    return _holder_if_held(fd, run_id)


def _holder_if_held(fd: int, run_id: str) -> Lease | None:
    """Who holds the run lock open at `fd`, or None when nobody does; closes `fd`. A shared
    lock that cannot be taken means a runner holds the exclusive one."""
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(fd, run_id)
        return None
    finally:
        os.close(fd)


def _write_holder(fd: int, lease: Lease) -> None:
    """Who holds the lock, for readers; the lock, not these bytes, is what holds the run."""
    data = orjson.dumps({"holder": lease.holder, "since": lease.since})
    with contextlib.suppress(OSError):  # a full disk must not stop a run it can still hold
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)


def _read_holder(fd: int, run_id: str) -> Lease:
    try:
        data = orjson.loads(os.pread(fd, _HOLDER_LIMIT, 0))
        return Lease(run_id, str(data["holder"]), str(data["since"]))
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError):
        # Held by a process that wrote nothing (yet): the lock still says someone holds it.
        return Lease(run_id, "another stoic process", None)
