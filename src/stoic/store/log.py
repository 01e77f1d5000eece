"""The decision log on disk: `logs/decision_log.ndjson` (DESIGN §3, §4).

One writer at a time per workspace, across processes, through an OS file lock; readers never
take it and never see a half record, because they only consume lines that end in a newline. An
append returns only after its bytes are written and fsynced; a batch costs one write and one
fsync. A write that fails part-way is cut back to where it started, so no partial record stays.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import orjson

from stoic.core import next_steps
from stoic.core.records import GENESIS_HASH, Decision, Record, seal
from stoic.exceptions import LogCorrupt, LogTornTail, WorkspaceError, WorkspaceNotWritable
from stoic.store.atomic import write_all
from stoic.store.confined import LinkRefused, open_confined
from stoic.store.provenance import vet

__all__ = ["FileDecisionLog", "LineChunk", "LogLine", "TailState", "TornTail", "utc_timestamp"]

_CHUNK = 1 << 20
_BACK_BLOCK = 1 << 16

LogLine = tuple[int, int, bytes, bool]
"""(line number or 0 when unknown, byte offset, bytes without the newline, ends in a newline)."""


def utc_timestamp() -> str:
    """Now, as an RFC 3339 UTC timestamp with microseconds (`…:56.873271Z`); isoformat is
    twice as quick as strftime, and every append takes one."""
    return datetime.now(UTC).isoformat(timespec="microseconds")[:-6] + "Z"


@dataclass(frozen=True, slots=True)
class LineChunk:
    """Consecutive complete lines of the log, and a cut-off fragment where the log ends in one."""

    first_line_no: int
    """Line number of the first line, or 0 when reading did not start at the top."""
    offset: int
    lines: list[bytes]
    final: bool
    """Whether the requested range ends after these lines."""
    fragment: bytes
    """Bytes after the last newline, on the final chunk only."""


@dataclass(frozen=True, slots=True)
class TornTail:
    """The bytes after the last valid record: a write that a crash cut off."""

    offset: int
    """Where the valid part of the log ends."""
    length: int
    """How many bytes follow it."""
    after_seq: int
    """The seq of the last valid record."""
    fragment: bytes
    """The first bytes of what follows, for the record of the repair."""

    def describe(self, path: Path) -> str:
        return (
            f"{path} has a torn last line: {self.length} bytes after seq {self.after_seq}"
            f" (offset {self.offset}) are not a complete record"
        )


@dataclass(frozen=True, slots=True)
class TailState:
    """Where the log ends, as the next append needs to know it."""

    size: int
    good_end: int
    last_seq: int
    last_hash: str
    torn: TornTail | None
    identity: tuple[int, int] = (0, 0)
    """(inode, mtime_ns) when the state was read: a changed file invalidates a cached state."""
    corrupt: str | None = None
    """Set when the last record before the end cannot be read: nothing may be appended."""


class FileDecisionLog:
    """The append-only, hash-chained decision log of one workspace."""

    def __init__(
        self,
        path: Path,
        lock_path: Path,
        *,
        root: Path,
        clock: Callable[[], str] = utc_timestamp,
        new_id: Callable[[], str] = lambda: os.urandom(16).hex(),
    ) -> None:
        self.path = path
        self.lock_path = lock_path
        self.root = root
        """The workspace: no link inside it is followed to the log or its lock."""
        self._clock = clock
        self._new_id = new_id
        self._mutex = threading.RLock()
        self._depth = 0
        self._owner: int | None = None
        self._after_unlock: list[Callable[[], object]] = []
        self._writer_fd: int | None = None
        self._lock_fd: int | None = None
        self._cached: TailState | None = None
        self._followers: list[weakref.WeakMethod[Callable[[int, bytes], None]]] = []

    def follow_appends(self, follower: Callable[[int, bytes], None]) -> None:
        """Hand `follower` (a bound method, held weakly) what this object appends — the offset
        it starts at and the bytes — while the writer lock is still held, so a reader of the
        log's tail (the pause watch) need not read back what this process wrote itself."""
        self._followers = [ref for ref in self._followers if ref() is not None]
        self._followers.append(weakref.WeakMethod(follower))

    def end_under_lock(self) -> int:
        """The log's size, read from the writer's own descriptor (the caller holds the lock)."""
        assert self.held_here()
        return os.fstat(self._open_writer()).st_size

    def close(self) -> None:
        for fd in (self._writer_fd, self._lock_fd):
            if fd is not None:
                os.close(fd)
        self._writer_fd = self._lock_fd = None

    # -- reading -------------------------------------------------------------------------------

    def size(self) -> int:
        with self._reader() as handle:
            return os.fstat(handle.fileno()).st_size

    def _reader(self) -> BinaryIO:
        try:
            fd = open_confined(self.root, self.path, os.O_RDONLY)
        except LinkRefused as exc:
            raise WorkspaceError(f"cannot read the decision log: {exc.strerror}") from exc
        return os.fdopen(fd, "rb")

    def chunks(self, start: int = 0, end: int | None = None) -> Iterator[LineChunk]:
        """The log between two byte offsets as lists of complete lines, about 1 MiB at a time."""
        with self._reader() as handle:
            if end is None:
                end = os.fstat(handle.fileno()).st_size
            handle.seek(start)
            offset = start
            line_no = 1 if start == 0 else 0
            remaining = end - start
            carry = b""
            while remaining > 0:
                chunk = handle.read(min(_CHUNK, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
                lines = (carry + chunk).split(b"\n")
                carry = lines.pop()
                final = remaining <= 0
                yield LineChunk(line_no, offset, lines, final, carry if final else b"")
                offset += sum(map(len, lines)) + len(lines)
                if line_no:
                    line_no += len(lines)
            if remaining > 0 and carry:
                # The file ended before `end` (it was cut while being read).
                yield LineChunk(line_no, offset, [], True, carry)

    def lines(self, start: int = 0, end: int | None = None) -> Iterator[LogLine]:
        """Lines between two byte offsets, streamed; a last line without newline is yielded
        with its flag False so the caller decides what a fragment means."""
        for chunk in self.chunks(start, end):
            line_no, offset = chunk.first_line_no, chunk.offset
            for line in chunk.lines:
                yield (line_no, offset, line, True)
                offset += len(line) + 1
                if line_no:
                    line_no += 1
            if chunk.fragment:
                yield (line_no, offset, chunk.fragment, False)

    def ends_line(self, offset: int) -> bool:
        """Whether `offset` is just after a newline (or the start): where a record may end."""
        if offset == 0:
            return True
        with self.path.open("rb") as handle:
            return os.pread(handle.fileno(), 1, offset - 1) == b"\n"

    def lines_reversed(self, end: int) -> Iterator[bytes]:
        """Complete lines before `end` (which must follow a newline), last first."""
        with self._reader() as handle:
            position = end
            carry = b""
            first = True
            while position > 0:
                size = min(_BACK_BLOCK, position)
                position -= size
                handle.seek(position)
                parts = (handle.read(size) + carry).split(b"\n")
                carry = parts[0]
                tail = parts[1:]
                if first:
                    # `end` follows a newline, so the block's last part is the empty remainder.
                    tail = tail[:-1] if tail else tail
                    first = False
                yield from reversed(tail)
            if carry:
                yield carry

    def offset_after(self, seq: int, end: int) -> int:
        """Where the first record after `seq` starts (`end` is where a whole line ends), found
        by bisection since records are in seq order: a cursor costs a few reads, not a scan.

        0 when a line it looks at does not parse: reading from the top then meets that line and
        reports it, as a full scan would.
        """
        if seq <= 0 or end <= 0:
            return 0
        with self._reader() as handle:
            fd = handle.fileno()
            found = _seq_at(fd, 0)
            if found is None or found[0] > seq:
                return 0
            lo_end, hi = found[1], end  # the answer is a line start in [lo_end, hi]
            while lo_end < hi:
                probe = _line_start(fd, (lo_end + hi) // 2)
                found = _seq_at(fd, probe)
                if found is None:
                    return 0
                if found[0] <= seq:
                    lo_end = found[1]
                else:
                    hi = probe
            return hi

    def tail_state(self) -> TailState:
        """Where the log ends and whether its last line is torn. Reads backwards, no lock."""
        with self._reader() as handle:
            stat = os.fstat(handle.fileno())
            return self._read_tail(handle.fileno(), stat.st_size, (stat.st_ino, stat.st_mtime_ns))

    def _read_tail(self, fd: int, size: int, identity: tuple[int, int]) -> TailState:
        if size == 0:
            return TailState(0, 0, 0, GENESIS_HASH, None, identity)
        torn_from: int | None = None
        end = size
        if os.pread(fd, 1, size - 1) != b"\n":
            torn_from = end = _line_start(fd, size)
        last = _record_before(fd, end)
        if last is not None and last[1] is None and torn_from is None:
            # A complete last line that does not parse is a write cut off by a crash as well.
            torn_from = end = last[0]
            last = _record_before(fd, end)
        if last is not None and last[1] is None:
            return TailState(
                size,
                end,
                0,
                GENESIS_HASH,
                None,
                identity,
                corrupt=f"the line at byte {last[0]} of {self.path} is not a valid record",
            )
        seq, digest = (last[1], last[2]) if last is not None else (0, GENESIS_HASH)
        assert seq is not None and digest is not None
        torn = _torn(fd, torn_from, size, seq) if torn_from is not None else None
        return TailState(size, end, seq, digest, torn, identity)

    # -- writing -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self, *, shared: bool = False) -> Iterator[None]:
        """Hold the workspace's writer lock (and this process's, for threads).

        `shared` waits for a write in progress to finish and holds off new ones: what a reader
        needs for a consistent end of the log. It opens the lock file read-only, so it works on
        a read-only workspace too.
        """
        outermost = False
        try:
            with self._mutex:
                if shared:
                    try:
                        lock_fd = open_confined(self.root, self.lock_path, os.O_RDONLY)
                    except OSError as exc:
                        raise _not_writable(self.lock_path, exc) from exc
                    try:
                        fcntl.flock(lock_fd, fcntl.LOCK_SH)
                        yield
                    finally:
                        os.close(lock_fd)
                    return
                if self._depth:  # already held by this thread: a read-decide-append section
                    self._depth += 1
                    try:
                        yield
                    finally:
                        self._depth -= 1
                    return
                if self._lock_fd is None:
                    try:
                        self._lock_fd = open_confined(
                            self.root, self.lock_path, os.O_RDWR | os.O_CREAT
                        )
                    except OSError as exc:
                        raise _not_writable(self.lock_path, exc) from exc
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
                self._depth, self._owner, outermost = 1, threading.get_ident(), True
                try:
                    yield
                finally:
                    self._depth, self._owner = 0, None
                    fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        finally:
            if outermost:
                waiting, self._after_unlock = self._after_unlock, []
                for action in waiting:
                    action()

    def held_here(self) -> bool:
        """Whether this thread holds the writer lock right now."""
        return self._depth > 0 and self._owner == threading.get_ident()

    def after_unlock(self, action: Callable[[], object]) -> None:
        """Run `action` once this thread lets the writer lock go (at once if it holds none):
        slow side effects, such as notifications, never keep other writers waiting."""
        if self.held_here():
            self._after_unlock.append(action)
        else:
            action()

    def append(self, decisions: Sequence[Decision]) -> list[Record]:
        """Seal and durably append decisions: one write and one fsync for the whole batch."""
        if not decisions:
            return []
        decisions = vet(decisions)
        with self.locked():
            fd = self._open_writer()
            state = self._state_under_lock(fd)
            if state.corrupt is not None:
                raise LogCorrupt(
                    f"{state.corrupt}; run {next_steps.audit()} to see every violation"
                )
            if state.torn is not None:
                raise LogTornTail(
                    f"{state.torn.describe(self.path)}; appends are refused until"
                    f" {next_steps.audit(repair=True)} removes them"
                )
            decided_at = self._clock()
            records: list[Record] = []
            lines: list[bytes] = []
            seq, prev_hash = state.last_seq, state.last_hash
            for decision in decisions:
                seq += 1
                record, line = seal(
                    decision,
                    seq=seq,
                    prev_hash=prev_hash,
                    decision_id=self._new_id(),
                    decided_at=decided_at,
                )
                records.append(record)
                lines.append(line)
                prev_hash = record.hash
            payload = b"".join(lines)
            self._write_durably(fd, payload, state.size)
            stat = os.fstat(fd)
            self._cached = TailState(
                stat.st_size, stat.st_size, seq, prev_hash, None, (stat.st_ino, stat.st_mtime_ns)
            )
            for ref in self._followers:
                if (follower := ref()) is not None:
                    follower(state.size, payload)
        return records

    def replace_torn_tail(
        self, keep: Callable[[bytes], object], decide: Callable[[TornTail], Decision]
    ) -> tuple[TornTail, Record] | None:
        """Put the record `decide` makes where a torn last line is, in one write (under the
        lock); returns what was cut and the record. None when the tail is not torn.

        `keep` is handed every byte about to be cut and returns before anything changes. The
        record is written over the torn bytes, then the file is cut to its end and synced: a
        crash in between leaves a torn tail again, never a cut without its record.
        """
        with self.locked():
            fd = self._open_writer()
            self._cached = None
            state = self._state_under_lock(fd)
            if state.corrupt is not None:
                raise LogCorrupt(f"{state.corrupt}; a line before the last is never repaired")
            torn = state.torn
            if torn is None:
                return None
            keep(os.pread(fd, torn.length, torn.offset))
            record, line = seal(
                decide(torn),
                seq=state.last_seq + 1,
                prev_hash=state.last_hash,
                decision_id=self._new_id(),
                decided_at=self._clock(),
            )
            self._cached = None
            try:
                # Its own descriptor: a write through the O_APPEND one ignores the offset.
                over = os.open(self.path, os.O_WRONLY | os.O_NOFOLLOW)
                try:
                    view, offset = memoryview(line), torn.offset
                    while view:
                        written = os.pwrite(over, view, offset)
                        view, offset = view[written:], offset + written
                    os.ftruncate(over, torn.offset + len(line))
                    os.fsync(over)
                finally:
                    os.close(over)
            except OSError as exc:
                raise _not_writable(self.path, exc) from exc
            return torn, record

    def _open_writer(self) -> int:
        if self._writer_fd is None:
            try:
                self._writer_fd = open_confined(self.root, self.path, os.O_RDWR | os.O_APPEND)
            except OSError as exc:
                raise _not_writable(self.path, exc) from exc
        return self._writer_fd

    def _state_under_lock(self, fd: int) -> TailState:
        stat = os.fstat(fd)
        identity = (stat.st_ino, stat.st_mtime_ns)
        cached = self._cached
        if cached is not None and cached.size == stat.st_size and cached.identity == identity:
            return cached
        self._cached = self._read_tail(fd, stat.st_size, identity)
        return self._cached

    def _write_durably(self, fd: int, payload: bytes, start_size: int) -> None:
        try:
            write_all(fd, payload)
            os.fsync(fd)
        except OSError as exc:
            self._cached = None
            # Cut back to the last whole record; if even that fails, the tail reads as torn and
            # appends stay refused until a repair.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start_size)
                os.fsync(fd)
            raise _not_writable(self.path, exc) from exc


def _not_writable(path: Path, exc: OSError) -> WorkspaceNotWritable:
    reason = exc.strerror or str(exc)
    hints = {
        errno.EROFS: "the file system is mounted read-only",
        errno.EACCES: "check the folder's permissions",
        errno.EPERM: "check the folder's permissions",
        errno.ENOSPC: "free some disk space and try again",
        errno.EFBIG: "the file size limit was reached; free space or raise the limit",
        errno.EDQUOT: "the disk quota is exhausted",
    }
    hint = hints.get(exc.errno or 0, "")
    suffix = f" — {hint}" if hint else ""
    return WorkspaceNotWritable(f"cannot write {path}: {reason}{suffix}; nothing was recorded")


def _record_before(fd: int, end: int) -> tuple[int, int | None, str | None] | None:
    """The line that ends just before `end`: (start, seq, hash), seq and hash None if unreadable."""
    if end == 0:
        return None
    start = _line_start(fd, end - 1)
    try:
        parsed = orjson.loads(os.pread(fd, end - 1 - start, start))
        seq, digest = parsed["seq"], parsed["hash"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return (start, None, None)
    if isinstance(seq, bool) or not isinstance(seq, int) or not isinstance(digest, str):
        return (start, None, None)
    return (start, seq, digest)


def _seq_at(fd: int, start: int) -> tuple[int, int] | None:
    """The seq of the whole line that starts at `start`, and where the line ends (after its
    newline); None when it is not a record."""
    parts: list[bytes] = []
    position = start
    while True:
        block = os.pread(fd, _BACK_BLOCK, position)
        if not block:
            return None
        cut = block.find(b"\n")
        if cut >= 0:
            parts.append(block[:cut])
            position += cut + 1
            break
        parts.append(block)
        position += len(block)
    try:
        seq = orjson.loads(b"".join(parts))["seq"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    if isinstance(seq, bool) or not isinstance(seq, int):
        return None
    return seq, position


def _line_start(fd: int, before: int) -> int:
    """Offset of the first byte after the last newline that comes before `before`."""
    position = before
    while position > 0:
        size = min(_BACK_BLOCK, position)
        block = os.pread(fd, size, position - size)
        found = block.rfind(b"\n")
        if found >= 0:
            return position - size + found + 1
        position -= size
    return 0


def _torn(fd: int, offset: int, size: int, after_seq: int) -> TornTail:
    return TornTail(
        offset=offset,
        length=size - offset,
        after_seq=after_seq,
        fragment=os.pread(fd, min(256, size - offset), offset),
    )
