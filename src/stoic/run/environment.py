"""The environment block of a process that starts tasks holds nothing a task may not see.

Any process running as the same user can read `/proc/<pid>/environ` of stoic's runner — the
block the kernel keeps from the moment of `execve`, whatever the process changed since. So
before a runner (or `stoic execute`) starts anything, stoic re-executes itself with a block of
only the variables its policy passes on and stoic's own non-secret settings; the rest is handed
to the new image through an anonymous memory file, read at once into this process's memory
(and only there: every process stoic starts is given its environment explicitly) and closed.
"""

from __future__ import annotations

import os
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path

from stoic.core.limits import MAX_SETTINGS_BYTES
from stoic.core.policy import DEFAULT_ENV_PASSTHROUGH, Policy
from stoic.exceptions import UsageError
from stoic.plan.reading import NotARegularFile, TooLarge, read_bounded
from stoic.store.atomic import write_all

__all__ = [
    "HELD_FD_VARIABLE",
    "OWN_SETTINGS",
    "confine",
    "confine_by_settings",
    "split_environment",
    "take_held",
]

HELD_FD_VARIABLE = b"STOIC_HELD_ENV_FD"
OWN_SETTINGS = frozenset(
    {b"STOIC_ACTOR", b"STOIC_WORKSPACE", b"PYTHONPATH", b"PYTHONHOME", b"VIRTUAL_ENV"}
)
"""Not secret, and needed by stoic itself after the re-exec (who acts, where, its imports)."""


def split_environment(
    policy: Policy, environ: Mapping[bytes, bytes]
) -> tuple[dict[bytes, bytes], dict[bytes, bytes]]:
    """(what the block may keep, what is held in memory only)."""
    kept: dict[bytes, bytes] = {}
    held: dict[bytes, bytes] = {}
    for name, value in environ.items():
        visible = policy.passes_env(name.decode(errors="replace")) or name in OWN_SETTINGS
        (kept if visible else held)[name] = value
    return kept, held


_block: frozenset[bytes] | None = None
"""In a re-executed image, the names its environment block holds (the rest are in memory)."""


def confine(policy: Policy) -> None:
    """Re-execute this process with an environment block that `policy` allows, unless its block
    already holds nothing else. A command may confine itself early, by the workspace's policy,
    before its costly work, and again by a narrower one (a plan's): that re-executes only when
    the narrower policy holds back a name the block still has."""
    kept, held = split_environment(policy, os.environb)
    block = _names_in_block() if _block is None else _block
    if block <= kept.keys():
        return
    fd = os.memfd_create("stoic-held-environment", 0)  # inherited by the new image
    payload = b"".join(name + b"=" + value + b"\0" for name, value in held.items())
    write_all(fd, payload)
    os.lseek(fd, 0, os.SEEK_SET)
    kept[HELD_FD_VARIABLE] = str(fd).encode()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, sys.orig_argv, kept)


def confine_by_settings(settings_file: Path) -> None:
    """Confine by the `env_passthrough` that `settings_file` (a workspace's `stoic.toml`)
    writes, read on its own: a command that runs a run does this before its costly imports and
    its plan's reading, so that only the confined image does that work (validating every
    setting is itself a cost; the run does it later). When the file cannot be read so, nothing
    happens; either way the run confines itself again by its whole policy before it starts
    anything, which a plan's policy may narrow."""
    try:
        data = tomllib.loads(read_bounded(settings_file, MAX_SETTINGS_BYTES).decode("utf-8"))
    except (OSError, NotARegularFile, TooLarge, ValueError, RecursionError):
        return  # UnicodeDecodeError and TOMLDecodeError are ValueErrors
    section = data.get("policy", {})
    if not isinstance(section, dict):
        return
    globs = section.get("env_passthrough", list(DEFAULT_ENV_PASSTHROUGH))
    if not isinstance(globs, list) or not all(isinstance(glob, str) for glob in globs):
        return
    confine(Policy.build(None, (), globs))


def _names_in_block() -> frozenset[bytes]:
    """The names the kernel's block holds: not `os.environ`'s, which the interpreter adds to as
    it starts (LC_CTYPE, when it coerces the C locale)."""
    try:
        entries = Path("/proc/self/environ").read_bytes().split(b"\0")
    except OSError:
        return frozenset(os.environb)
    return frozenset(entry.partition(b"=")[0] for entry in entries if entry) - {HELD_FD_VARIABLE}


def take_held() -> None:
    """In the re-executed image: the held variables back into memory, the memory file closed."""
    global _block  # once per process, at its start
    raw = os.environb.pop(HELD_FD_VARIABLE, None)
    if raw is None:
        return
    _block = _names_in_block()
    chunks: list[bytes] = []
    try:
        fd = int(raw)
        try:
            while chunk := os.read(fd, 1 << 16):
                chunks.append(chunk)
        finally:
            os.close(fd)
    except (ValueError, OSError) as exc:
        raise UsageError(
            f"{HELD_FD_VARIABLE.decode()}={raw.decode(errors='replace')} is not the memory file"
            f" stoic hands to itself ({exc}); unset it"
        ) from None
    for entry in b"".join(chunks).split(b"\0"):
        name, equals, value = entry.partition(b"=")
        if equals and name not in os.environb:
            os.environb[name] = value
