"""`GET /metrics`: the workspace's counts in the Prometheus text format (version 0.0.4).

Served without a login, as `/healthz` is: a scraper has none, and the counts hold no text
from any task (see `stoic.services.metrics`). Counting reads the whole log, so it is done once
per log head: the answer is kept with the head it counts, and a request at that head gets it
without reading anything but the head. Requests wait for a count in progress on the event
loop, not in a worker thread, so a crowd of scrapers holds one thread at most and the rest of
the console keeps answering.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse
from starlette.concurrency import run_in_threadpool

from stoic.server.console import console_of
from stoic.server.control import ControlPlane
from stoic.services import metrics
from stoic.services.workspace import Workspace
from stoic.store.interface import Head

__all__ = ["CONTENT_TYPE", "CountsAtHead", "exposition", "router"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

router = APIRouter()


class CountsAtHead:
    """The exposition of the counts at the last head they were computed for."""

    def __init__(self) -> None:
        self.lock = anyio.Lock()
        """Held by the one request that reads the log; the others wait on the event loop."""
        self.computed = 0
        """How many times the counts were computed (`stoic_metrics_computed_total`)."""
        self._head: Head | None = None
        self._text = ""

    def text(self, look: Callable[[], AbstractContextManager[Workspace]]) -> str:
        """The counts as the log holds them now: computed again only if its head moved."""
        with look() as workspace:
            head = workspace.head()
            if head != self._head:
                self._text = exposition(metrics.counts(workspace))
                self._head = head
                self.computed += 1
        return self._text


def _cache(request: Request) -> CountsAtHead:
    cache = getattr(request.app.state, "metrics_cache", None)
    if not isinstance(cache, CountsAtHead):  # no await since the look: one per app
        cache = request.app.state.metrics_cache = CountsAtHead()
    return cache


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics_page(request: Request) -> PlainTextResponse:
    cache = _cache(request)
    async with cache.lock:
        counted = await run_in_threadpool(cache.text, console_of(request).look)
    text = counted + _served(cache) + _control_plane(getattr(request.app.state, "control", None))
    return PlainTextResponse(text, media_type=CONTENT_TYPE)


def _served(cache: CountsAtHead) -> str:
    return (
        "# HELP stoic_metrics_computed_total Times the counts were read from the log: once"
        " per log head.\n"
        "# TYPE stoic_metrics_computed_total counter\n"
        f"stoic_metrics_computed_total {cache.computed}\n"
    )


def _control_plane(plane: ControlPlane | None) -> str:
    """The loop's own gauges, when this server runs one."""
    if plane is None:
        return ""
    return (
        "# HELP stoic_runners Runners this server runs now.\n"
        "# TYPE stoic_runners gauge\n"
        f"stoic_runners {len(plane.running())}\n"
        "# HELP stoic_control_surveys_total Surveys of the runs since the server started.\n"
        "# TYPE stoic_control_surveys_total counter\n"
        f"stoic_control_surveys_total {plane.surveys}\n"
    )


def exposition(counts: metrics.Counts) -> str:
    """The counts as Prometheus text: a HELP and a TYPE line before each metric's samples."""
    lines: list[str] = []

    def gauge(name: str, help_text: str, samples: list[tuple[str, int]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} gauge")
        lines.extend(f"{name}{labels} {value}" for labels, value in samples)

    runs = [(f'{{status="{status}"}}', n) for status, n in sorted(counts.runs.items())]
    gauge("stoic_runs", "Runs by status, as the log tells them.", runs)
    gauge(
        "stoic_pending_proposals", "Proposals waiting for review.", [("", counts.pending_proposals)]
    )
    gauge(
        "stoic_open_escalations", "Escalations not yet answered.", [("", counts.open_escalations)]
    )
    gauge("stoic_paused", "1 while the workspace is paused.", [("", int(counts.paused))])
    gauge("stoic_records", "The decision log's head seq.", [("", counts.records)])
    if counts.audit_ok is not None and counts.audit_seq is not None:
        gauge(
            "stoic_last_audit_ok",
            "1 if the last audit on record passed, 0 if it failed.",
            [("", int(counts.audit_ok))],
        )
        gauge(
            "stoic_last_audit_seq",
            "The seq of the record of the last audit.",
            [("", counts.audit_seq)],
        )
    return "\n".join(lines) + "\n"
