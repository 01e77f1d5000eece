"""Bounds on what input may hold, shared by every reader of plans, settings and arguments."""

from __future__ import annotations

__all__ = ["MAX_INT_BITS", "MAX_PLAN_BYTES", "MAX_SETTINGS_BYTES"]

MAX_INT_BITS = 63
"""An integer must fit a signed 64-bit number: the log's readers (jq, JSON parsers) hold no more,
and Python refuses to read a number of thousands of digits at all."""

MAX_PLAN_BYTES = 128 * 1024 * 1024
"""A plan file is read whole; a 100,000-task plan is a few megabytes, so this is far above any
real plan and far below what would exhaust memory."""

MAX_SETTINGS_BYTES = 1024 * 1024
"""`stoic.toml` holds a few dozen settings."""
