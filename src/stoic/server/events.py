"""`GET /events`: server-sent events from the log's tail, so the queue and run pages show new
records within a second without being reloaded by hand.

The page says which record it was rendered at (`?after=SEQ`); the stream sends one `record`
event with the head's seq as soon as the log holds a later one, and the page reloads. The log
is the one source: the stream reads its head, never a cache. A stream ends after
`STREAM_SECONDS` (the browser's EventSource connects again), so a server stopping never waits
on a page left open.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from stoic.server.auth import session_of
from stoic.server.console import console_of
from stoic.server.sessions import Session

__all__ = ["POLL_SECONDS", "STREAM_SECONDS", "router"]

router = APIRouter(include_in_schema=False)

POLL_SECONDS = 0.2
"""How often the stream looks at the log's head: well within the second a page may lag."""
STREAM_SECONDS = 25.0


def _head_seq(request: Request) -> int:
    return console_of(request).live_seq()


async def _stream(request: Request, after: int) -> AsyncIterator[bytes]:
    yield b"retry: 1000\n\n"
    loop = asyncio.get_running_loop()
    ends = loop.time() + STREAM_SECONDS
    while loop.time() < ends and not await request.is_disconnected():
        seq = await asyncio.to_thread(_head_seq, request)
        if seq > after:
            yield f"id: {seq}\nevent: record\ndata: {seq}\n\n".encode()
            after = seq
        await asyncio.sleep(POLL_SECONDS)


@router.get("/events")
def events(
    request: Request, session: Annotated[Session, Depends(session_of)], after: int = 0
) -> StreamingResponse:
    """A `record` event each time the log holds a record past `after`."""
    del session
    return StreamingResponse(
        _stream(request, max(0, after)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
