"""A worker process for Python tasks: `python -m stoic.run.worker REQUEST_FD REPLY_FD`.

It reads one request at a time (a length-prefixed JSON frame), imports and calls the task's
function (its stdout and stderr go to a pipe the runner copies into the attempt's log),
and replies with the value or the failure.
A task that kills this process takes only itself down: the pool sees the pipe close.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib
import inspect
import os
import signal
import struct
import sys
import traceback
from collections.abc import Callable, Sequence
from importlib.machinery import PathFinder
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson

__all__ = ["read_frame", "write_frame"]

_HEADER = struct.Struct("!I")
_PR_SET_PDEATHSIG = 1


def write_frame(fd: int, payload: dict[str, Any]) -> None:
    body = orjson.dumps(payload, default=repr)
    data = _HEADER.pack(len(body)) + body
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def read_frame(fd: int) -> dict[str, Any] | None:
    """The next frame, or None when the other end has gone."""
    header = _read_exactly(fd, _HEADER.size)
    if header is None:
        return None
    body = _read_exactly(fd, _HEADER.unpack(header)[0])
    if body is None:
        return None
    value = orjson.loads(body)
    assert isinstance(value, dict)
    return value


def _read_exactly(fd: int, size: int) -> bytes | None:
    parts: list[bytes] = []
    while size:
        chunk = os.read(fd, size)
        if not chunk:
            return None
        parts.append(chunk)
        size -= len(chunk)
    return b"".join(parts)


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _outputs_reply(value: Any) -> dict[str, Any]:
    """The reply for a return value: it becomes the task's outputs, so it must be JSON that
    reads back as it was (never a repr in its place)."""
    if value is None:
        return {"ok": True}
    from stoic.core.task_outputs import OutputsInvalid, canonical

    try:
        canonical(value)
    except OutputsInvalid as exc:
        message = f"the return value cannot be the task's outputs: {exc}"
        return {"ok": False, "kind": "error", "message": message, "partial": True}
    return {"ok": True, "value": value}


@functools.lru_cache(maxsize=256)
def _takes_inputs(function: Callable[..., Any]) -> bool:
    """Whether the function has a parameter named `inputs` (it is given its dependencies'
    outputs there)."""
    try:
        return "inputs" in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False


def _call(request: dict[str, Any]) -> dict[str, Any]:
    reply = _invoke(request)
    from stoic import steps

    done = steps.take()
    if done:
        reply["steps_completed"] = done
        if not reply["ok"] and reply.get("partial") is None:
            reply["partial"] = True  # a step was done before it failed
    return reply


_checked: dict[tuple[str, str, tuple[str, ...]], ModuleType] = {}
"""Modules `_load` has let a call import, by (module, plan folder, allowed packages): the
same call again is not checked again (finding a module's folder resolves every component of
its path, the most of a no-op task's cost) while the module loaded is the one checked."""


def _load(call: str, plan_dir: str, allowed: Sequence[str]) -> Callable[..., Any]:
    """The function `call:` names, from a module of the plan's folder — or of a package
    `policy.allowed_modules` names. Anything else (`os:popen`, a module in the invoking shell's
    folder, a plan file shadowing a module already loaded) is refused."""
    module_name, _, function_name = call.partition(":")
    key = (module_name, plan_dir, tuple(allowed))
    module = _checked.get(key)
    if module is None or sys.modules.get(module_name) is not module:
        module = _checked[key] = _checked_module(module_name, plan_dir, allowed)
    function: Callable[..., Any] = getattr(module, function_name)
    return function


def _checked_module(module_name: str, plan_dir: str, allowed: Sequence[str]) -> ModuleType:
    parts = module_name.split(".")
    named = any(".".join(parts[:end]) in allowed for end in range(1, len(parts) + 1))
    if not named:
        top = parts[0]
        if PathFinder.find_spec(top, [plan_dir]) is None:
            raise ModuleNotFoundError(
                f"module {top!r} is neither in the plan's folder {plan_dir} nor in policy"
                " allowed_modules"
            )
        loaded = sys.modules.get(top)
        if loaded is not None and not _inside(loaded, plan_dir):
            raise ImportError(
                f"{top!r} in the plan's folder has the name of a module already loaded from"
                f" {_origin(loaded)}; rename it"
            )
    module = importlib.import_module(module_name)
    if not named and not _inside(module, plan_dir):
        raise ImportError(f"{module_name!r} was not found in the plan's folder {plan_dir}")
    return module


def _origin(module: ModuleType) -> str:
    spec = module.__spec__
    if spec is not None and spec.origin not in (None, "built-in", "frozen"):
        return str(spec.origin)
    locations = list(getattr(module, "__path__", ()))
    return locations[0] if locations else "(built in)"


def _inside(module: ModuleType, folder: str) -> bool:
    origin = _origin(module)
    if origin == "(built in)":
        return False
    return Path(origin).resolve().is_relative_to(Path(folder).resolve())


def _invoke(request: dict[str, Any]) -> dict[str, Any]:
    from stoic.failures import Escalated, RateLimited, TaskFailure

    plan_dir = request["plan_dir"]
    if plan_dir not in sys.path and not request.get("trusted"):
        sys.path.insert(0, plan_dir)  # stoic's own calls never import from the plan's folder
    os.chdir(plan_dir)  # a task runs in its plan's folder, as shell tasks do
    try:
        # A trusted call is stoic's own (the HTTP executor's): it is only ever one of stoic's
        # modules, whatever the plan's policy allows.
        allowed = ("stoic",) if request.get("trusted") else request.get("allowed_modules", ())
        function = _load(request["call"], plan_dir, allowed)
    except Exception as exc:
        message = f"cannot load {request['call']}: {type(exc).__name__}: {exc}"
        return {"ok": False, "kind": "error", "message": message, "partial": False}
    params = request["params"]
    if "inputs" in request and _takes_inputs(function):
        if "inputs" in params:
            message = "`params:` sets `inputs`, the parameter stoic gives the dependencies' outputs"
            return {"ok": False, "kind": "error", "message": message, "partial": False}
        params = {**params, "inputs": request["inputs"]}
    try:
        value = function(**params)
    except TaskFailure as exc:
        reply: dict[str, Any] = {
            "ok": False,
            "kind": exc.kind.value,
            "message": exc.message,
            "partial": exc.partial,
        }
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            reply["retry_after_s"] = float(exc.retry_after)
        if isinstance(exc, Escalated):
            reply["escalate"] = exc.request
            return reply
        traceback.print_exc()
        return reply
    except BaseException as exc:  # a task's SystemExit or KeyboardInterrupt fails the task only
        traceback.print_exc()
        return {"ok": False, "kind": "error", "message": f"{type(exc).__name__}: {exc}"}
    return _outputs_reply(value)


def serve(request_fd: int, reply_fd: int) -> None:
    from stoic.store.provenance import mark_task_process

    _die_with_parent()
    mark_task_process()  # what a task decides from here is the task's, never a person's
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        request = read_frame(request_fd)
        if request is None:
            return
        saved = {name: os.environ.get(name) for name in request["env"]}
        os.environ.update(request["env"])
        try:
            reply = _call(request)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        reply["result_file"] = _result_file_there(request["env"].get("STOIC_RESULT"))
        write_frame(reply_fd, reply)


def _result_file_there(path: str | None) -> bool:
    """Whether anything stands at the result file's place (a link too: the runner refuses it).
    The runner reads it only then: a task that says there is none has simply written none."""
    if path is None:
        return True  # the runner looks for itself
    try:
        os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return True


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]))
