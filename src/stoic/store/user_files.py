"""The console's secret files, `users/<name>.json`: a salted scrypt hash of the secret last
issued to each user, and the audit's view of them (DESIGN §14).

A file holds no role and decides nothing: it names the seq of the `user` record that issued
its secret, and logs in only while the log backs that user with that seq. A file the log does
not back (never added, removed, or replaced since) is named by the audit and moved aside by
`stoic audit --repair`. Every file is written atomically, mode 0600, never through a link.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import hmac
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

import orjson

from stoic.core import next_steps
from stoic.core.audit import Violation, ViolationCode
from stoic.core.users import NAME_PATTERN, UserDirectory
from stoic.exceptions import WorkspaceNotWritable
from stoic.store.atomic import atomic_write
from stoic.store.confined import LinkRefused, confined_dir, read_confined

if TYPE_CHECKING:
    from stoic.store.handle import WorkspaceHandle
    from stoic.store.projections import Stamp
    from stoic.store.quarantine import Quarantine

__all__ = [
    "FOLDER",
    "SecretFile",
    "UserFilesView",
    "hash_secret",
    "new_secret",
    "read_secret_file",
    "remove_secret_file",
    "secret_matches",
    "write_secret_file",
]

FOLDER = "users"
_N, _R, _P, _SALT, _LENGTH = 2**14, 8, 1, 16, 32
_DUMMY: dict[str, Any] = {"salt": "00" * _SALT, "hash": "00" * _LENGTH, "n": _N, "r": _R, "p": _P}
"""Checked against when there is no file, so a name without one takes as long to refuse."""


def new_secret() -> str:
    """A one-time secret: shown once, never stored."""
    return secrets.token_urlsafe(24)


def _scrypt(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        secret.encode(), salt=salt, n=n, r=r, p=p, dklen=_LENGTH, maxmem=128 * r * n * 2
    )


def hash_secret(secret: str) -> dict[str, Any]:
    """The stored form of a secret: scrypt (n=2**14, r=8, p=1) with a 16-byte random salt."""
    salt = secrets.token_bytes(_SALT)
    digest = _scrypt(secret, salt, _N, _R, _P)
    return {"kdf": "scrypt", "n": _N, "r": _R, "p": _P, "salt": salt.hex(), "hash": digest.hex()}


def secret_matches(stored: dict[str, Any] | None, secret: str) -> bool:
    """Whether `secret` is the one `stored` hashes, compared in constant time; with no stored
    hash a dummy is computed, so the answer takes as long either way."""
    params = stored if stored is not None else _DUMMY
    try:
        n, r, p = int(params["n"]), int(params["r"]), int(params["p"])
        salt, expected = bytes.fromhex(params["salt"]), bytes.fromhex(params["hash"])
        if (n, r, p) != (_N, _R, _P):  # a file asking for other costs is not ours
            n, r, p, salt, expected = _N, _R, _P, bytes(_SALT), b""
            stored = None
    except (KeyError, TypeError, ValueError):
        n, r, p, salt, expected, stored = _N, _R, _P, bytes(_SALT), b"", None
    digest = _scrypt(secret, salt, n, r, p)
    return hmac.compare_digest(digest, expected) and stored is not None


@dataclass(frozen=True, slots=True)
class SecretFile:
    """What `users/<name>.json` holds."""

    name: str
    seq: int
    """The seq of the `user` record that issued this secret."""
    hashed: dict[str, Any]


def _path(root: Path, name: str) -> Path:
    if NAME_PATTERN.fullmatch(name) is None:
        raise ValueError(f"{name!r} is not a user name")
    return root / FOLDER / f"{name}.json"


def _make_folder(root: Path) -> None:
    """`users/`, mode 0700, made (and its entry fsynced) without following a link."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            os.mkdir(FOLDER, 0o700, dir_fd=fd)
        except FileExistsError:
            return
        os.fsync(fd)
    finally:
        os.close(fd)


def write_secret_file(root: Path, name: str, seq: int, hashed: dict[str, Any]) -> Path:
    """Write `users/<name>.json` (mode 0600, atomically); returns its path."""
    path = _path(root, name)
    try:
        _make_folder(root)
    except OSError as exc:
        raise WorkspaceNotWritable(f"cannot make {root / FOLDER}: {exc.strerror or exc}") from exc
    body = orjson.dumps({"name": name, "seq": seq, **hashed}, option=orjson.OPT_SORT_KEYS)
    atomic_write(path, body + b"\n", root=root, mode=0o600)
    return path


def read_secret_file(root: Path, name: str) -> SecretFile | None:
    """The secret file of `name`, or None when there is none (or it is not one of ours)."""
    try:
        data = orjson.loads(read_confined(root, _path(root, name)))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("name") != name or type(data.get("seq")) is not int:
        return None
    return SecretFile(name, data["seq"], data)


def remove_secret_file(root: Path, name: str) -> None:
    """Delete `users/<name>.json` (gone already is fine), the folder's entry fsynced."""
    _path(root, name)
    try:
        with confined_dir(root, PurePath(FOLDER)) as folder:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{name}.json", dir_fd=folder)
            os.fsync(folder)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise WorkspaceNotWritable(f"cannot remove {name}'s secret file: {exc}") from exc


def _listed(root: Path) -> list[str]:
    """The file names in `users/`, read without following a link."""
    try:
        with confined_dir(root, PurePath(FOLDER)) as folder:
            return sorted(os.listdir(folder))  # noqa: PTH208 - by descriptor: never through a link
    except FileNotFoundError:
        return []
    except LinkRefused:
        return ["."]  # the folder itself is not one: named as unbacked
    except OSError as exc:
        if exc.errno == errno.ENOTDIR:
            return ["."]
        raise


class UserFilesView:
    """`users/*.json`: written only by the users service, checked against the log's users."""

    name = "users"
    title = "the users' secret files"

    def __init__(self, workspace: WorkspaceHandle) -> None:
        self.workspace = workspace

    def catch_up(self, before: Stamp[Any], after: Stamp[Any]) -> None:
        """Nothing: a secret file is written with the record that issues it, never later."""

    def rebuild(self, quarantine: Quarantine) -> None:
        """Nothing to write: a secret cannot be rebuilt from the log (the repair has moved
        aside each file the log does not back)."""

    def check(self) -> UserFilesCheck:
        return UserFilesCheck(self.workspace)


class UserFilesCheck:
    """The users the log backs, folded; at the end, each secret file compared with them."""

    def __init__(self, workspace: WorkspaceHandle) -> None:
        self.workspace = workspace
        self.directory = UserDirectory()

    def feed(self, records: list[dict[str, Any]]) -> None:
        self.directory.feed(records)

    def finish(self, last_seq: int, newest: Callable[[], int]) -> list[Violation]:
        log = self.workspace.log
        # A secret is issued by a record and a file written under the writer lock: under the
        # shared lock, both or neither are there.
        lock = contextlib.nullcontext() if log.held_here() else log.locked(shared=True)
        try:
            with lock:
                if newest() != last_seq:  # the log moved on since it was read: not settled
                    return []
                return self._compare()
        except WorkspaceNotWritable:  # a read-only workspace: nobody writes it meanwhile
            return self._compare()

    def _compare(self) -> list[Violation]:
        root = self.workspace.root
        found: list[Violation] = []
        for entry in _listed(root):
            if entry.startswith(".") and entry.endswith(".tmp"):
                continue  # a write cut off before its rename: never read
            stem = entry.removesuffix(".json")
            relative = f"{FOLDER}/{entry}" if entry != "." else FOLDER
            user = self.directory.get(stem) if entry.endswith(".json") else None
            held = read_secret_file(root, stem) if user is not None else None
            if user is not None and held is not None and held.seq == user.issued_seq:
                continue
            if user is None:
                why = "no user of that name is on record (never added, or removed)"
            elif held is None:
                why = "it is not a secret file stoic wrote"
            else:
                why = (
                    f"it holds the secret issued at seq {held.seq}, replaced at seq"
                    f" {user.issued_seq}"
                )
            found.append(
                Violation(
                    ViolationCode.USER_FILE_UNBACKED,
                    f"{relative} can never log in: {why}; {next_steps.audit(repair=True)} moves"
                    " it aside",
                    expected=f"seq {user.issued_seq}" if user is not None else "no file",
                    found=f"seq {held.seq}" if held is not None else "a file",
                    path=relative,
                )
            )
        return found
