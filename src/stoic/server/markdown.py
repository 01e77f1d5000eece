"""A briefing's markdown as HTML, minimally and safely: headings, paragraphs, lists, code
blocks, inline code and bold. Every piece of text is escaped before any tag is put around it,
so markup written by a task (`<script>`, a `javascript:` link) reaches the page as text; no
link, image or raw HTML is ever made from the source."""

from __future__ import annotations

import re

from markupsafe import Markup, escape

from stoic.core.text import escape_controls

__all__ = ["render"]

_HEADING = re.compile(r"(#{1,6})\s+(.*)")
_BULLET = re.compile(r"[-*+]\s+(.*)")
_NUMBERED = re.compile(r"\d{1,9}[.)]\s+(.*)")
_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")


def _inline(text: str) -> str:
    """Escaped text with `code` and **bold** marked; the markers' insides stay escaped."""
    parts = _CODE.split(text)
    out = []
    for index, part in enumerate(parts):
        if index % 2:
            out.append(f"<code>{escape(part)}</code>")
        else:
            out.append(_BOLD.sub(r"<strong>\1</strong>", str(escape(part))))
    return "".join(out)


def render(source: str) -> Markup:
    """The HTML of `source`: each block in its tag, each text escaped (its control
    characters too, made visible)."""
    source = escape_controls(source)
    html: list[str] = []
    paragraph: list[str] = []
    listed: str | None = None
    lines = source.replace("\r\n", "\n").split("\n")

    def close() -> None:
        nonlocal listed
        if paragraph:
            html.append(f"<p>{_inline(' '.join(paragraph))}</p>")
            paragraph.clear()
        if listed is not None:
            html.append(f"</{listed}>")
            listed = None

    at = 0
    while at < len(lines):
        line = lines[at].rstrip()
        at += 1
        if line.startswith("```"):
            close()
            code: list[str] = []
            while at < len(lines) and not lines[at].startswith("```"):
                code.append(lines[at])
                at += 1
            at += 1
            html.append(f"<pre><code>{escape(chr(10).join(code))}</code></pre>")
            continue
        if not line.strip():
            close()
            continue
        heading = _HEADING.fullmatch(line)
        if heading:
            close()
            level = len(heading.group(1))
            html.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
            continue
        for tag, pattern in (("ul", _BULLET), ("ol", _NUMBERED)):
            item = pattern.fullmatch(line.lstrip())
            if item:
                if paragraph or listed != tag:
                    close()
                    html.append(f"<{tag}>")
                    listed = tag
                html.append(f"<li>{_inline(item.group(1))}</li>")
                break
        else:
            if listed is not None:
                close()
            paragraph.append(line.strip())
    close()
    return Markup("\n".join(html))  # every text in it was escaped above
