"""Completion summaries (DESIGN §11): read from a task's linked markdown by its structure.

What happened: the first sentence of `## Root Cause`, else the `**Root Need:**` line, else the
first sentence of `## Summary`. The fix: the last entry of a verification log that mentions a
fix or a commit. No model reads the document; a heading or a bold label decides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Summary", "first_sentence", "sections", "summarize"]

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_ROOT_NEED = re.compile(r"^\s*(?:[-*]\s+)?\*\*Root Need:?\*\*:?\s*(.+?)\s*$", re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")
_ABBREVIATIONS = ("e.g", "i.e", "etc", "vs", "cf", "approx", "no", "fig")
_FIX = re.compile(
    r"\b(fix(?:es|ed)?|commit(?:ted|s)?|(?=[0-9a-f]*\d)[0-9a-f]{7,40})\b", re.IGNORECASE
)
_ENTRY = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+(.*)$")


@dataclass(frozen=True, slots=True)
class Summary:
    what: str | None
    """What happened (or what was needed), one sentence."""
    source: str | None
    """Where it came from: "Root Cause", "Root Need" or "Summary"."""
    fix: str | None = None
    """The verification entry that names the fix or the commit."""

    def text(self) -> str | None:
        parts = [part for part in (self.what, f"Fix: {self.fix}" if self.fix else None) if part]
        return " ".join(parts) or None


def sections(markdown: str) -> dict[str, list[str]]:
    """Heading title (lowercased) → its body lines, for every heading level."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    fenced = False
    for line in markdown.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        heading = None if fenced else _HEADING.match(line)
        if heading is not None:
            current = found.setdefault(heading.group(2).strip().lower(), [])
            continue
        if current is not None:
            current.append(line)
    return found


def _plain(text: str) -> str:
    text = re.sub(r"`([^`]*)`", r"\1", text)
    text = re.sub(r"\*\*([^*]*)\*\*|__([^_]*)__", lambda m: m.group(1) or m.group(2), text)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return " ".join(text.split())


def first_sentence(lines: list[str]) -> str | None:
    """The first sentence of the first paragraph (list markers and markup removed)."""
    paragraph: list[str] = []
    for line in lines:
        if not line.strip():
            if paragraph:
                break
            continue
        entry = _ENTRY.match(line)
        paragraph.append(entry.group(1) if entry else line.strip())
    if not paragraph:
        return None
    text = _plain(" ".join(paragraph))
    for end in _SENTENCE_END.finditer(text):
        word = text[: end.start()].rsplit(" ", 1)[-1].lower()
        if word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
            continue  # "e.g." or an initial: not the end of the sentence
        return text[: end.end()]
    return text


def _entries(lines: list[str]) -> list[str]:
    """A log's entries: list items (with their continuation lines) or paragraphs."""
    entries: list[str] = []
    current: list[str] = []
    for line in lines:
        entry = _ENTRY.match(line)
        if entry is not None or not line.strip():
            if current:
                entries.append(_plain(" ".join(current)))
            current = [entry.group(1)] if entry else []
        else:
            current.append(line.strip())
    if current:
        entries.append(_plain(" ".join(current)))
    return [entry for entry in entries if entry]


def summarize(markdown: str) -> Summary:
    """The completion summary of a task's document (DESIGN §11)."""
    found = sections(markdown)
    what: str | None = None
    source: str | None = None
    root_cause = found.get("root cause")
    if root_cause:
        what, source = first_sentence(root_cause), "Root Cause"
    if what is None:
        for line in markdown.splitlines():
            need = _ROOT_NEED.match(line)
            if need is not None:
                what, source = _plain(need.group(1)), "Root Need"
                break
    if what is None and found.get("summary"):
        what, source = first_sentence(found["summary"]), "Summary"
    fix = None
    for title, body in found.items():
        if "verification" in title:
            mentions = [entry for entry in _entries(body) if _FIX.search(entry)]
            if mentions:
                fix = mentions[-1]
    return Summary(what, source if what else None, fix)
