"""The host names the console answers to: a request naming any other is refused (400).

A web page can point a name of its own at this machine ("DNS rebinding"): the browser then
takes the console for the page's own site and lets the page read what it answers — /healthz,
/metrics, the login page — and post logins that count against the owner's address. What the
browser cannot change is the `Host` it sends, which is the page's name. So the console answers
only to an IP address (no page is served from a name that is one), `localhost`, the name it
listens on, `serve.public_url`'s host and `serve.allowed_hosts`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from stoic.core.gate_wire import hook_output

__all__ = ["KnownHosts", "answered_names", "host_answered"]

GATE_PATHS = ("/gate/",)
"""The agent gate's hooks: refused as the gate answers, a deny, never an HTTP error."""
REFUSAL = (
    b"stoic: this server does not answer to that host name;"
    b" add it to serve.allowed_hosts in stoic.toml\n"
)


def _name(text: str) -> str:
    return text.lower().removesuffix(".")


def answered_names(
    listen_on: str, public_url: str, allowed: Iterable[str], own: Iterable[str] = ()
) -> frozenset[str]:
    """The names besides IP addresses and `localhost`: the one `--host` gives (unless it is
    an address), the host of `serve.public_url`, `serve.allowed_hosts`, and — listening on
    every address (`0.0.0.0`, `::`) — the machine's `own` names, which no other site's page
    can be served from."""
    names = {_name(name) for name in allowed}
    if _is_address(listen_on) and ipaddress.ip_address(listen_on).is_unspecified:
        names |= {_name(name) for name in own if name}
    if public_url and (public := urlsplit(public_url).hostname):
        names.add(_name(public))
    if not _is_address(listen_on):
        names.add(_name(listen_on))
    return frozenset(names)


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def host_answered(header: str, names: frozenset[str]) -> bool:
    """Whether a request whose `Host` is `header` is for this server; a header that is not
    `host[:port]` is not."""
    if header.startswith("["):
        inside, bracket, rest = header[1:].partition("]")
        if not bracket or (rest and not _port(rest)):
            return False
        try:
            return ipaddress.ip_address(inside).version == 6
        except ValueError:
            return False
    host, colon, port = header.partition(":")
    if not host or (colon and not _port(colon + port)):
        return False
    if _is_address(host):
        return True
    name = _name(host)
    return name == "localhost" or name in names


def _port(text: str) -> bool:
    digits = text.removeprefix(":")
    return text.startswith(":") and digits.isascii() and digits.isdigit() and len(digits) <= 5


class KnownHosts:
    """ASGI middleware: a request whose one `Host` header is not answered gets a 400 line."""

    def __init__(self, app: ASGIApp, names: frozenset[str]) -> None:
        self.app = app
        self.names = names

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        hosts = [value for key, value in scope.get("headers", ()) if key == b"host"]
        if len(hosts) == 1 and host_answered(hosts[0].decode("latin-1"), self.names):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        status, kind, body = 400, b"text/plain; charset=utf-8", REFUSAL
        if str(scope.get("path", "")).startswith(GATE_PATHS):
            # Claude Code lets a call through on any answer but a 2xx: the gate denies.
            said = "stoic's gate: " + REFUSAL.decode().strip().removeprefix("stoic: ")
            status, kind, body = 200, b"application/json", hook_output("deny", said)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", kind),
                    (b"content-length", str(len(body)).encode()),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
