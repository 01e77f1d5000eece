"""Delivering notices to the configured notifiers (DESIGN §11).

The store announces a notice (`Workspace.announce`) and hands it, once no workspace lock is
held, to the deliverer the workspace was opened with; this module is that deliverer. Every
notifier runs in its own thread with its own timeout, so delivery takes at most the longest
timeout, whatever the notifiers do. A delivery that fails or times out is recorded as
`notification/failed` and never fails or blocks the work; one that succeeds is recorded as
`notification/sent` (console notices, printed in front of the person, are not recorded).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import orjson

from stoic.core.notifications import Notice, json_payload, slack_payload, wants
from stoic.core.text import escape_controls, flattened
from stoic.store.atomic import append_durably
from stoic.store.processes import ProcessPolicy

if TYPE_CHECKING:
    from stoic.store.config import NotifierSettings
    from stoic.store.workspace import Workspace

__all__ = ["deliver"]

_GRACE = 1.0
"""Beyond a notifier's own timeout, how long its thread is waited for."""

_ANNOUNCED = ("database_seq", "database_hash")
"""A database record's place, on the notice of it: recorded, so a server that follows the
database goes on after it (`stoic.services.db_notices`)."""


def deliver(workspace: Workspace, notice: Notice) -> list[tuple[str, str | None]]:
    """Tell every notifier that wants the notice's event; returns (notifier, error or None) per
    delivery."""
    event = notice.event
    chosen = [
        (index, notifier)
        for index, notifier in enumerate(workspace.settings.notifiers)
        if wants(notifier.events, event)
    ]
    if not chosen:
        return []
    outcomes: dict[int, str | None] = {}
    threads = []
    for index, notifier in chosen:
        thread = threading.Thread(
            target=_deliver_into,
            args=(workspace, notifier, notice, outcomes, index),
            name=f"stoic-notify-{index}",
            daemon=True,
        )
        thread.start()
        threads.append((index, notifier, thread))
    results = []
    for index, notifier, thread in threads:
        thread.join(notifier.timeout + _GRACE)
        error = outcomes.get(index, f"no answer within {notifier.timeout:g}s")
        name = _name(index, notifier)
        results.append((name, error))
        if notifier.kind != "console" or error is not None:
            _record(workspace, name, notifier, notice, error)
    return results


def _name(index: int, notifier: NotifierSettings) -> str:
    where = (
        _where(notifier.url)
        if notifier.url
        else notifier.path or (" ".join(map(_shown, notifier.command or ())) or "stderr")
    )
    return f"{notifier.kind}#{index + 1} ({where})"


def _where(url: str) -> str:
    """A webhook's URL as it may be recorded: scheme and host only, since its path and query
    are often the secret itself (a Slack webhook URL is)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port is not None else ""
    return (
        f"{parts.scheme}://{host}{port}/…"
        if parts.path not in ("", "/") or parts.query
        else f"{parts.scheme}://{host}{port}"
    )


def _shown(argument: str) -> str:
    """A command notifier's argument as it may be recorded: a URL cut to its host, as a
    webhook's is (`curl https://hooks.slack.com/services/…` carries the secret in its path)."""
    parts = urlsplit(argument)
    if not (parts.scheme and parts.netloc):
        return argument
    try:
        return _where(argument)
    except ValueError:  # a port out of range: nothing of it is shown
        return f"{parts.scheme}://…"


def _without_url(error: str, notifier: NotifierSettings) -> str:
    """An error message that may quote the webhook's URL, with the URL cut to its host."""
    for argument in notifier.command or ():
        if _shown(argument) != argument:
            error = error.replace(argument, _shown(argument))
    if notifier.url:
        error = error.replace(notifier.url, _where(notifier.url))
        parts = urlsplit(notifier.url)
        if parts.path not in ("", "/"):
            error = error.replace(parts.path, "/…")
    return error


def _record(
    workspace: Workspace,
    name: str,
    notifier: NotifierSettings,
    notice: Notice,
    error: str | None,
) -> None:
    """On record, but never at the cost of the work: a log that refuses it is left alone."""
    from stoic.exceptions import StoicError

    outcome = "sent" if error is None else "failed"
    if error is not None:
        error = _without_url(error, notifier)
    reason = (
        f"Notified {name} of {notice.event.value}."
        if error is None
        else f"Notifier {name} failed on {notice.event.value}: {error}."
    )
    with contextlib.suppress(StoicError, OSError):
        workspace.record(
            "notification",
            outcome,
            reason,
            actor="system:notify",
            trigger="autonomous",
            run_id=notice.run_id,
            inputs={
                "event": notice.event.value,
                "notifier": notifier.kind,
                **{key: notice.data[key] for key in _ANNOUNCED if key in notice.data},
            },
            details={"notifier": name, **({"error": error} if error else {})},
        )


def _deliver_into(
    workspace: Workspace,
    notifier: NotifierSettings,
    notice: Notice,
    outcomes: dict[int, str | None],
    index: int,
) -> None:
    try:
        _deliver(workspace, notifier, notice)
    except Exception as exc:  # a notifier's failure is recorded, never raised into the work
        outcomes[index] = f"{type(exc).__name__}: {exc}"
    else:
        outcomes[index] = None


def _deliver(workspace: Workspace, notifier: NotifierSettings, notice: Notice) -> None:
    if notifier.kind == "console":
        extra = "".join(f"\n  {line}" for line in notice.lines)
        if notice.link is not None:
            extra += f"\n  {notice.link}"
        text = f"stoic: notice: {notice.event.value}: {flattened(notice.text)}{extra}"
        sys.stderr.write(escape_controls(text) + "\n")  # a person reads it: nothing raw
        sys.stderr.flush()
    elif notifier.kind == "file":
        assert notifier.path is not None
        line = orjson.dumps(json_payload(notice)) + b"\n"
        append_durably(workspace.root / notifier.path, line, root=workspace.root)
    elif notifier.kind == "webhook":
        import httpx  # only here: most commands never send a webhook

        assert notifier.url is not None
        body = slack_payload(notice) if notifier.format == "slack" else json_payload(notice)
        response = httpx.post(notifier.url, json=body, timeout=notifier.timeout)
        if response.status_code >= 300:
            raise RuntimeError(f"the webhook answered HTTP {response.status_code}")
    else:
        assert notifier.command is not None
        process = ProcessPolicy.for_command(
            workspace.settings, notifier.command, extra_env={"STOIC_EVENT": notice.event.value}
        )
        if process.refusal is not None:
            raise RuntimeError(f"refused by policy: {process.refusal}")
        try:
            done = subprocess.run(
                notifier.command,
                input=orjson.dumps(json_payload(notice)),
                capture_output=True,
                timeout=notifier.timeout,
                env=process.env,
                check=False,
            )
        except FileNotFoundError:
            raise RuntimeError(f"command not found: {notifier.command[0]}") from None
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"no answer within {notifier.timeout:g}s") from None
        if done.returncode != 0:
            raise RuntimeError(f"the command exited with status {done.returncode}")
