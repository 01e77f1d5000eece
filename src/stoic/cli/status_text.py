"""What `stoic status` prints of where a workspace stands, as text and as JSON — one rendering
for the command and for its quick path in `stoic.cli.entry`, which answers without typer or rich
(so this module imports neither)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from stoic.core import next_steps
from stoic.core.text import counted, escape_controls
from stoic.services.standing import Standing, quick_standing

__all__ = ["pause_warning", "quick_status", "status_document", "status_lines"]

_COLUMNS = ("decision type", "outcome", "count")


def status_document(standing: Standing, workspace: str | None) -> dict[str, Any]:
    """`stoic status --json`: `workspace` is None for a database's log."""
    state = standing.status
    return {
        "workspace": workspace,
        "records": state.records,
        "last_seq": state.last_seq,
        "last_decided_at": state.last_decided_at,
        "by_type": state.by_type,
        "paused": (
            {key: state.paused[key] for key in ("reason", "criterion", "since")}
            if state.paused is not None
            else None
        ),
        "batch_size": standing.batch_size,
    }


def status_lines(standing: Standing, heading: str) -> list[str]:
    """The heading, the records and batch size, and the counts by decision type and outcome in
    columns; control characters (a record's type is anybody's text) escaped."""
    state = standing.status
    smaller = " (named by the last resume)" if standing.batch_size_from_resume else ""
    lines = [
        escape_controls(heading),
        f"{counted(state.records, 'record')}, last seq {state.last_seq}",
        f"review batches of {standing.batch_size}{smaller}",
    ]
    rows = [
        (escape_controls(kind), escape_controls(outcome), str(count))
        for kind, outcomes in sorted(state.by_type.items())
        for outcome, count in sorted(outcomes.items())
    ]
    if rows:
        widths = [max(len(row[column]) for row in [_COLUMNS, *rows]) for column in range(3)]
        for kind, outcome, count in [_COLUMNS, *rows]:
            lines.append(
                f"{kind.ljust(widths[0])}  {outcome.ljust(widths[1])}  {count.rjust(widths[2])}"
            )
    return lines


def pause_warning(paused: Mapping[str, Any], *, local: bool) -> str:
    """The line every command that opens a paused workspace writes on stderr."""
    return (
        f"stoic: PAUSED since {paused['since']}: {paused['reason']}"
        f" ({next_steps.resume(local=local)} after dealing with it)"
    )


def quick_status(workspace: Path, *, as_json: bool) -> int | None:
    """Print `stoic status` of `workspace` from `quick_standing` and return the exit code;
    None, printing nothing, where the whole command must answer."""
    if sys.stdout is None or sys.stderr is None:
        return None  # a stream closed: the whole command says what it can
    standing = quick_standing(workspace)
    if standing is None:
        return None
    where = str(workspace.absolute())
    if as_json:
        shown = orjson.dumps(status_document(standing, where), option=orjson.OPT_SORT_KEYS)
    else:
        shown = "\n".join(status_lines(standing, f"Workspace {where}")).encode()
    try:
        if standing.status.paused is not None:
            warning = escape_controls(pause_warning(standing.status.paused, local=False))
            sys.stderr.buffer.write(warning.encode() + b"\n")
            sys.stderr.flush()
        sys.stdout.buffer.write(shown + b"\n")
        sys.stdout.flush()
    except BrokenPipeError:  # `stoic status | head -1`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as exc:
        with contextlib.suppress(OSError):
            sys.stderr.write(f"stoic: error: cannot write the status: {exc.strerror or exc}\n")
        return 1
    return 0
