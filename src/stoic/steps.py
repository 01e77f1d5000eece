"""Progress a Python task reports while it runs: `stoic.step_done()` after each side effect.

A failure after a completed step of a non-idempotent task is never retried automatically
(DESIGN §7): the runner cannot know the step is safe to repeat.
"""

from __future__ import annotations

__all__ = ["step_done", "take"]

_completed = 0


def step_done() -> None:
    """Say that one more step with side effects has completed."""
    global _completed
    _completed += 1


def take() -> int:
    """How many steps were reported since the last call (the worker asks after each task)."""
    global _completed
    done, _completed = _completed, 0
    return done
