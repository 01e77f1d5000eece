"""The HTTP call itself, made inside a pooled worker process (see `stoic.run.http`).

In a process of its own the call can be given a real deadline: the runner ends the worker when
the time is up or the run stops, however slowly the server answers. The response is written
to stdout as it arrives, up to the cap, and what the response was comes back as the value.
"""

from __future__ import annotations

import sys
from typing import Any

import orjson

from stoic.core.task_outputs import LongInteger, refuse_long_integers

__all__ = ["BODY_OUTPUTS_CAP", "CUT_NOTE_ROOM", "perform"]

_CHUNK = 64 * 1024
BODY_OUTPUTS_CAP = 1024 * 1024
"""A response body up to this size is the task's outputs (bigger ones are not kept)."""
CUT_NOTE_ROOM = 128
"""Bytes beyond the cap the log may need for the note that says the body was cut."""


def perform(
    *,
    method: str,
    url: str,
    headers: dict[str, str],
    json_body: Any,
    body: str | None,
    timeout: float,
    cap: int,
) -> dict[str, Any]:
    """Make the request; never raises for what the server or the network does."""
    import httpx  # here, in the worker: the runner reads only this module's caps

    out = sys.stdout.buffer
    status: int | None = None
    try:
        with (
            httpx.Client(timeout=timeout, follow_redirects=False) as client,
            client.stream(
                method,
                url,
                headers=headers,
                json=json_body if body is None else None,
                content=body.encode() if body is not None else None,
            ) as response,
        ):
            status = response.status_code
            head = f"HTTP {status}\n".encode()
            out.write(head)
            room = cap
            cut = False
            kept: list[bytes] | None = []  # the body for the outputs, while it is small enough
            size = 0
            for chunk in response.iter_bytes(_CHUNK):
                size += len(chunk)
                if kept is not None:
                    kept.append(chunk)
                    if size > BODY_OUTPUTS_CAP:
                        kept = None
                if len(chunk) > room:  # the rest is never read: a huge body costs nothing
                    out.write(chunk[:room])
                    cut = True
                    break
                out.write(chunk)
                out.flush()
                room -= len(chunk)
            if cut:
                out.write(f"\n[stoic: output cut at {cap} bytes]\n".encode())
            out.flush()
            return {
                "status": status,
                "reason": response.reason_phrase,
                "retry_after": response.headers.get("retry-after"),
                "cut": cut,
                **_body(kept, response.headers.get("content-type", "")),
            }
    except httpx.ConnectError as exc:
        return _transport("unavailable", f"cannot connect: {exc}", partial=False)
    except httpx.ConnectTimeout:
        return _transport("timeout", f"no connection within {timeout:g}s", partial=False)
    except httpx.TimeoutException:
        what = "response" if status is None else f"rest of the HTTP {status} response"
        return _transport("timeout", f"no {what} within {timeout:g}s", partial=None)
    except httpx.HTTPError as exc:
        return _transport("error", f"{type(exc).__name__}: {exc}", partial=None, status=status)


def _transport(
    kind: str, message: str, *, partial: bool | None, status: int | None = None
) -> dict[str, Any]:
    return {"failure": kind, "message": message, "partial": partial, "status": status}


def _body(kept: list[bytes] | None, content_type: str) -> dict[str, Any]:
    """The body as outputs: parsed when the server says it is JSON, else text."""
    if kept is None:
        return {"body_over_cap": True}
    raw = b"".join(kept)
    media = content_type.split(";")[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        try:
            parsed = orjson.loads(raw)
            refuse_long_integers(raw)
            return {"body": parsed}
        except (orjson.JSONDecodeError, LongInteger):
            pass  # not JSON that reads back exactly: kept as the text it is
    return {"body": raw.decode("utf-8", errors="replace")}
