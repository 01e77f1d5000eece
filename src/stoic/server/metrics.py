"""`GET /metrics`: the workspace's counts in the Prometheus text format (version 0.0.4).

Served without a login, as `/healthz` is: a scraper has none, and the counts hold no text
from any task (see `stoic.services.metrics`).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from stoic.server.control import ControlPlane
from stoic.services import metrics
from stoic.services.workspace import Workspace

__all__ = ["CONTENT_TYPE", "exposition", "router"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

router = APIRouter()


@router.get("/metrics", response_class=PlainTextResponse)
def metrics_page(request: Request) -> PlainTextResponse:
    with Workspace.open(request.app.state.config.workspace) as workspace:
        counts = metrics.counts(workspace)
    text = exposition(counts) + _control_plane(getattr(request.app.state, "control", None))
    return PlainTextResponse(text, media_type=CONTENT_TYPE)


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
