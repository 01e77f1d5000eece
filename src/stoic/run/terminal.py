"""The rich console every human view prints through: it never writes a control character that
came from the content (see `stoic.core.text`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from rich.console import Console, ConsoleOptions, RenderableType
from rich.segment import Segment
from rich.text import Text

from stoic.core.text import escape_controls, has_controls

__all__ = ["SafeConsole", "console_for_output", "plain_text"]


class SafeConsole(Console):
    """A rich Console whose every rendered segment has its control characters escaped.

    Escaping happens where renderables become segments, so tables, progress bars, markup and
    plain strings are all covered; rich's own styling and cursor movement travel as styles and
    control segments, which are left as they are.
    """

    def render_str(self, text: str, **kwargs: Any) -> Text:
        # Before layout, so a table measures the text as it will be shown.
        return super().render_str(escape_controls(text), **kwargs)

    def render(
        self, renderable: RenderableType, options: ConsoleOptions | None = None
    ) -> Iterable[Segment]:
        if isinstance(renderable, Text) and not renderable.spans and has_controls(renderable.plain):
            renderable = _escaped_text(renderable)
        return _escaped_segments(super().render(renderable, options))


def plain_text(value: str, style: str = "") -> Text:
    """A rich Text of `value` as written: no markup, control characters escaped.

    Built here rather than with `Text(value)`, which silently drops some control characters
    (a carriage return, a backspace) where a person should see them escaped.
    """
    return Text(escape_controls(value), style=style)


def _escaped_text(text: Text) -> Text:
    return Text(
        escape_controls(text.plain),
        style=text.style,
        justify=text.justify,
        overflow=text.overflow,
        no_wrap=text.no_wrap,
        end=text.end,
        tab_size=text.tab_size,
    )


def _escaped_segments(segments: Iterable[Segment]) -> Iterator[Segment]:
    for segment in segments:
        if segment.control or not has_controls(segment.text):
            yield segment
        else:
            yield Segment(escape_controls(segment.text), segment.style)


def console_for_output(*, stderr: bool = False) -> SafeConsole:
    """A terminal console; piped output gets wide lines, which `grep` reads better than wraps."""
    console = SafeConsole(stderr=stderr)
    if not console.is_terminal:
        console = SafeConsole(stderr=stderr, width=max(console.width, 200))
    return console
