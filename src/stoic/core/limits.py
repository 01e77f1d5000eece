"""Bounds on what input may hold, shared by every reader of plans, settings and arguments."""

from __future__ import annotations

__all__ = ["MAX_INT_BITS"]

MAX_INT_BITS = 63
"""An integer must fit a signed 64-bit number: the log's readers (jq, JSON parsers) hold no more,
and Python refuses to read a number of thousands of digits at all."""
