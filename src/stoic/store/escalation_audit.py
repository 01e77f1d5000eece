"""The escalations' files against the log: briefings and `escalations/escalation-log.md`.

What `stoic audit` checks of them (DESIGN §9, §12): each briefing is the one its record wrote
(rendered again from the log), the escalation log is what the fold says, and a briefing or an
entry of an escalation the log does not hold means records were lost.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from stoic.core.audit import Violation, ViolationCode
from stoic.core.escalations import (
    BriefingForm,
    EscalationState,
    is_escalation_id,
    render_escalation_log,
)
from stoic.store.escalations import Escalations

if TYPE_CHECKING:
    from stoic.store.handle import WorkspaceHandle

__all__ = ["check_escalation_files"]


def check_escalation_files(
    workspace: WorkspaceHandle,
    state: EscalationState,
    *,
    settled: Callable[[], bool] = lambda: True,
) -> list[Violation]:
    """Audit: every briefing is the one its record wrote; escalation-log.md is what the log
    says; a briefing or entry for an escalation the log does not hold means records were lost.

    Not `settled`: the log grew after the audit read it, so files that may already show the
    newer records (unknown briefings, the escalation log) are left for the next audit.
    """
    root = workspace.root
    found = []
    escalations = Escalations(workspace)
    for item in state.escalations.values():
        relative = f"escalations/{item.id}.md"
        try:
            text: str | None = (root / relative).read_text(encoding="utf-8")
        except FileNotFoundError:
            text = None
        except (OSError, UnicodeDecodeError):
            text = ""
        if text is None:
            found.append(
                Violation(
                    ViolationCode.ESCALATION_MISMATCH,
                    f"{relative} is missing (raised at seq {item.seq})",
                    seq=item.seq,
                )
            )
        elif all(  # any form a stoic wrote it in, its current one or an earlier
            text != escalations.briefing_of(item, form=form) for form in BriefingForm
        ):
            found.append(
                Violation(
                    ViolationCode.ESCALATION_MISMATCH,
                    f"{relative} differs from the briefing its record wrote (edited by hand?)",
                    seq=item.seq,
                    path=relative,
                )
            )
    names = _briefing_names(root / "escalations")
    log_file = root / "escalations" / "escalation-log.md"
    try:
        actual = log_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        actual = None
    if not settled():  # asked after reading: it covers whatever the files show
        return found
    for name in names:
        if name[: -len(".md")] not in state.escalations:
            found.append(
                Violation(
                    ViolationCode.RECORDS_LOST,
                    f"escalations/{name} is the briefing of an escalation the log does not hold:"
                    " records were lost",
                    path=f"escalations/{name}",
                )
            )
    expected = render_escalation_log(state.escalations.values())
    for form in BriefingForm:  # written by an earlier stoic, in an earlier form?
        if actual is not None and actual != expected:
            earlier = render_escalation_log(state.escalations.values(), form=form)
            expected = earlier if actual == earlier else expected
    if actual is not None and actual != expected:
        unknown = sorted(
            {match for match in _ENTRY.findall(actual) if match not in state.escalations}
        )
        if unknown:
            found.append(
                Violation(
                    ViolationCode.RECORDS_LOST,
                    f"{log_file.name} has entries for {', '.join(unknown[:5])}, which the log"
                    " does not hold: records were lost",
                    path="escalations/escalation-log.md",
                )
            )
            return found
    if actual != expected:
        what = "is missing" if actual is None else "does not match the log (edited by hand?)"
        found.append(
            Violation(
                ViolationCode.ESCALATION_MISMATCH,
                f"{log_file.name} {what}",
                path="escalations/escalation-log.md" if actual is not None else None,
            )
        )
    return found


_ENTRY = re.compile(r"^## (ESC-\d{3,}) ", re.MULTILINE)


def _briefing_names(folder: Path) -> list[str]:
    try:
        with os.scandir(folder) as entries:
            return sorted(
                e.name
                for e in entries
                if e.name.endswith(".md") and is_escalation_id(e.name[: -len(".md")])
            )
    except FileNotFoundError:
        return []
