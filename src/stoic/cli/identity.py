"""Who a person is on record: `--as NAME`, else $STOIC_ACTOR, else the OS user."""

from __future__ import annotations

import getpass
import os

__all__ = ["human_actor"]


def human_actor(as_name: str | None) -> str:
    name = as_name or os.environ.get("STOIC_ACTOR") or getpass.getuser()
    return f"human:{name}"
