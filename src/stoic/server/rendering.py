"""The console's pages, rendered by Jinja2 with autoescaping on for every template: text from
a task, a proposal or a briefing reaches the page only as text.

The one place markup is built from data is `source_link`: a source becomes a link only when
it is an http(s) address, its parts escaped; anything else (`javascript:…`, a file, an id) is
shown as text.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader
from markupsafe import Markup, escape

from stoic.core.proposals import is_proposal_id
from stoic.core.text import escape_controls
from stoic.server.sessions import Session

__all__ = ["age", "page", "source_link"]

_RUN_ID = re.compile(r"run-\d{8}-\d{6}-[0-9a-f]{4,32}")
_TEMPLATES = Path(__file__).with_name("templates")


def _shown(value: object) -> object:
    """Every text a page shows with its control characters visible (`\u202e`, `\x1b`): a
    right-to-left override in an agent's call would otherwise show a reviewer its command
    reversed. Markup was built here, from text escaped the same way."""
    if isinstance(value, str) and not isinstance(value, Markup):
        return escape_controls(value)
    return value


_ENV = Environment(
    loader=FileSystemLoader(_TEMPLATES),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
    finalize=_shown,
)


def source_link(source: str) -> Markup:
    """An http(s) source as a link that opens elsewhere, a proposal as a link to its page;
    any other source (a run, a task, a file, `javascript:…`) as text."""
    source = escape_controls(source)
    parts = urlsplit(source.strip())
    if parts.scheme in {"http", "https"} and parts.netloc:
        return Markup('<a href="{0}" rel="noopener noreferrer" target="_blank">{0}</a>').format(
            source.strip()
        )
    if is_proposal_id(source) and source.isprintable():
        return Markup('<a href="/proposals/{0}">{0}</a>').format(source)
    if _RUN_ID.fullmatch(source):
        return Markup('<a href="/runs/{0}">{0}</a>').format(source)
    return Markup("<code>{}</code>").format(escape(source))


def age(stamp: str | None, now: float | None = None) -> str:
    """How long ago an ISO time was, in the largest whole unit (`3 min`, `2 h`, `5 d`)."""
    if not stamp:
        return "-"
    try:
        then = datetime.fromisoformat(stamp)
    except ValueError:
        return stamp
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    seconds = max(0, int((now if now is not None else time.time()) - then.timestamp()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


_ENV.filters["source_link"] = source_link
_ENV.filters["age"] = age


def page(
    request: Request,
    template: str,
    session: Session,
    *,
    paused: dict[str, Any] | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """A page in the base layout: who is logged in, the CSRF token its forms carry, and the
    pause banner while the workspace is paused."""
    del request  # the session carries what the layout needs
    body = _ENV.get_template(template).render(
        person=session.person, csrf=session.csrf, paused=paused, **context
    )
    return HTMLResponse(body, status_code=status_code)
