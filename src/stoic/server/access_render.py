"""What the console's access pages share: their templates (autoescaped) and who is asking."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

__all__ = ["client_address", "page"]

_templates = Jinja2Templates(
    env=jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,  # whatever a name or a reason holds is shown as text
    )
)


def page(
    request: Request,
    template: str,
    context: dict[str, Any],
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """A page rendered on the server from `templates/<template>`."""
    return _templates.TemplateResponse(
        request, template, context, status_code=status_code, headers=headers
    )


def client_address(request: Request) -> str:
    """Who is asking, as far as this server can tell: the connection's address, or behind a
    proxy (`--behind-proxy` only) the address the proxy appended to X-Forwarded-For last —
    the entries before it are whatever the client sent."""
    if request.app.state.config.behind_proxy:
        forwarded = request.headers.get("x-forwarded-for", "")
        last = forwarded.rsplit(",", 1)[-1].strip()
        if last:
            return last
    return request.client.host if request.client is not None else "unknown"
