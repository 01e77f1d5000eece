"""Words a person types into a closed vocabulary: a misspelt one is refused with the closest
word; a proposal without a confidence says so in words."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_cli


def test_a_misspelt_decision_word_gets_did_you_mean(ws_path: Path) -> None:
    ws = str(ws_path)
    raised = run_cli("-w", ws, "escalate", "--mode", "ambiguty", "--question", "Which db?")
    assert raised.exit_code == 2
    assert "did you mean 'ambiguity'?" in raised.stderr
    assert (
        run_cli("-w", ws, "escalate", "--mode", "ambiguity", "--question", "Which db?").exit_code
        == 0
    )
    answered = run_cli("-w", ws, "escalations", "answer", "ESC-001", "--decision", "rooted")
    assert answered.exit_code == 2
    assert "unknown decision 'rooted'; did you mean 'routed'?" in answered.stderr
    assert "(allowed: routed, amended, escalated, aborted)" in answered.stderr
    listed = run_cli("-w", ws, "queue", "--status", "pendng")
    assert listed.exit_code == 2 and "did you mean 'pending'?" in listed.stderr
    nothing_close = run_cli("-w", ws, "queue", "--status", "zzz")
    assert nothing_close.exit_code == 2 and "did you mean" not in nothing_close.stderr


def test_a_proposal_without_a_confidence_says_not_given(ws_path: Path) -> None:
    ws = str(ws_path)
    made = run_cli("-w", ws, "propose", "--title", "Clean tmp", "--reasoning", "disk at 91%")
    assert made.exit_code == 0, made.stderr
    proposal = made.stdout.strip()
    shown = run_cli("-w", ws, "queue", "show", proposal).stdout
    assert "confidence: not given" in shown and "None" not in shown
    listed = run_cli("-w", ws, "queue").stdout
    assert "unknown" not in listed
    sure = run_cli(
        "-w", ws, "propose", "--title", "t", "--reasoning", "r", "--confidence", "0.9"
    ).stdout.strip()
    assert "confidence: 0.9 (high)" in run_cli("-w", ws, "queue", "show", sure).stdout
