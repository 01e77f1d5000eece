"""Where a workspace keeps its files (DESIGN §3), named once for every reader of them — the
gate's quick path among them, which must not import the whole workspace to find its log."""

from __future__ import annotations

from pathlib import Path

__all__ = ["DECISION_LOG", "LOCK_FILE", "NOTICES_LOCK", "SETTINGS_FILE", "STATUS_PROJECTION"]

DECISION_LOG = Path("logs/decision_log.ndjson")
LOCK_FILE = Path("logs/decision_log.lock")
NOTICES_LOCK = Path("logs/database_notices.lock")
"""Held by the one server of a workspace that tells its notifiers of its database's records."""
SETTINGS_FILE = Path("stoic.toml")
STATUS_PROJECTION = Path("manifests/workspace_status.json")
