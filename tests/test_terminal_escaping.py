"""Control sequences from tasks, plans, proposers and result files never reach a terminal raw.

Every human view prints them escaped (`\\x1b]0;…`), in a pipe and on a real terminal; the JSON
views keep them exact.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import time
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stoic.core.text import escape_controls, one_line
from tests.conftest import STOIC_BIN, CliResult, run_cli

OSC_TITLE = "\x1b]0;pwned\x07"
OSC_CLIPBOARD = "\x1b]52;c;Zm9v\x07"
CLEAR = "\x1b[2J"
ERASE_ABOVE = "\x1b[1A\x1b[2K"
C1_CSI = "\x9b2J"
BIDI = "\u202e"
RETURN = "\r"

# Anything but tab and newline, from anywhere: C0, DEL, C1, bidirectional overrides.
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")

PLAN = r"""
meta: {name: "release\e]0;pwned\a"}
tasks:
  - id: hostile
    name: "sneaky\e[1A\e[2K\r"
    run: ["sh", "hostile.sh"]
  - id: missing
    run: ["nope\e]0;pwned\a"]
"""
RESULT_MESSAGE = f"m{OSC_CLIPBOARD} {CLEAR}{C1_CSI}"
HOSTILE_SH = f"""cat > "$STOIC_RESULT" <<'EOF'
{json.dumps({"failure": {"kind": "tool_error", "message": RESULT_MESSAGE}})}
EOF
exit 1
"""


def write_plan(folder: Path) -> Path:
    (folder / "hostile.sh").write_text(HOSTILE_SH)
    plan = folder / "plan.yaml"
    plan.write_text(PLAN)
    return plan


def test_escape_controls_shows_every_control_and_keeps_text() -> None:
    assert escape_controls(OSC_TITLE) == "\\x1b]0;pwned\\x07"
    assert escape_controls(CLEAR + ERASE_ABOVE) == "\\x1b[2J\\x1b[1A\\x1b[2K"
    assert escape_controls(C1_CSI + BIDI + RETURN + "\b") == "\\x9b2J\\u202e\\x0d\\x08"
    assert escape_controls("line one\n\tline two — ünïcode") == "line one\n\tline two — ünïcode"
    assert escape_controls("name-\udcff") == "name-\\udcff"  # a non-UTF-8 byte of a path
    once = escape_controls(OSC_CLIPBOARD)
    assert escape_controls(once) == once


@pytest.fixture
def hostile_ws(tmp_path: Path, ws_path: Path) -> tuple[Path, str, list[CliResult]]:
    """A workspace whose plan, tasks, result files, proposal and escalation carry sequences."""
    plan = write_plan(tmp_path)
    ran = run_cli("-w", str(ws_path), "run", str(plan))
    assert ran.exit_code in (1, 3), ran.stderr
    proposed = run_cli(
        "-w",
        str(ws_path),
        "propose",
        "--title",
        f"Rotate keys{OSC_TITLE}",
        "--summary",
        f"all of them{CLEAR}{BIDI}",
        "--reasoning",
        f"expired{ERASE_ABOVE}",
        "--trade-off",
        f"downtime{C1_CSI}",
        "--",
        "echo",
        OSC_CLIPBOARD,
    )
    assert proposed.exit_code == 0, proposed.stderr
    raised = run_cli(
        "-w",
        str(ws_path),
        "escalate",
        "--mode",
        "ambiguity",
        "--question",
        f"Which key{OSC_TITLE}{RETURN} should go?",
    )
    assert raised.exit_code == 0, raised.stderr
    run_id = next(path.name for path in (ws_path / "runs").iterdir())
    return ws_path, run_id, [ran, proposed, raised]


VIEWS = [
    ("log",),
    ("log", "--failures"),
    ("status", "{run}"),
    ("timeline", "{run}"),
    ("timeline", "{run}", "--customer"),
    ("queue",),
    ("queue", "show", "{proposal}"),
    ("escalations",),
    ("escalations", "show", "ESC-001"),
]


@pytest.mark.parametrize("view", VIEWS, ids=lambda view: " ".join(view))
def test_every_human_view_prints_sequences_escaped(
    hostile_ws: tuple[Path, str, list[CliResult]], view: tuple[str, ...]
) -> None:
    ws_path, run_id, _ = hostile_ws
    proposals = orjson.loads(run_cli("-w", str(ws_path), "queue", "--json").stdout)
    titled = [p["id"] for p in proposals if p["title"].startswith("Rotate")]
    args = [part.format(run=run_id, proposal=titled[0]) for part in view]
    result = run_cli("-w", str(ws_path), *args)
    assert result.exit_code in (0, 1, 3), result.stderr
    shown = result.stdout + result.stderr
    assert not RAW.search(shown), repr(RAW.search(shown))
    assert "\\x1b" in shown or "\\x9b" in shown, shown


def test_run_propose_and_escalate_print_sequences_escaped(
    hostile_ws: tuple[Path, str, list[CliResult]],
) -> None:
    _, _, results = hostile_ws
    for result in results:  # the run's plain lines and summary, the ids, the notices
        shown = result.stdout + result.stderr
        assert not RAW.search(shown), repr(shown)
    assert "release\\x1b]0;pwned\\x07" in results[0].stdout
    assert "Which key\\x1b]0;pwned\\x07\\x0d should go?" in results[2].stderr


def test_the_workspace_status_prints_a_pause_reason_escaped(ws_path: Path) -> None:
    stopped = run_cli("-w", str(ws_path), "stop", "--reason", f"maintenance{OSC_TITLE}")
    assert stopped.exit_code == 0, stopped.stderr
    result = run_cli("-w", str(ws_path), "status")
    shown = result.stdout + result.stderr
    assert not RAW.search(shown) and "maintenance\\x1b]0;pwned\\x07" in shown, shown


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    return []


def test_the_review_walk_prints_sequences_escaped(
    hostile_ws: tuple[Path, str, list[CliResult]],
) -> None:
    ws_path, _, _ = hostile_ws
    done = subprocess.run(  # input at its end: the walk shows the first proposal, then quits
        [STOIC_BIN, "-w", str(ws_path), "review"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert not RAW.search(done.stdout + done.stderr), done.stdout
    assert "sneaky\\x1b[1A\\x1b[2K\\x0d" in done.stdout


def test_json_views_keep_the_text_exact(hostile_ws: tuple[Path, str, list[CliResult]]) -> None:
    ws_path, run_id, _ = hostile_ws
    queue = orjson.loads(run_cli("-w", str(ws_path), "queue", "--json").stdout)
    titles = {p["title"] for p in queue}
    assert f"Rotate keys{OSC_TITLE}" in titles
    escalations = orjson.loads(run_cli("-w", str(ws_path), "escalations", "--json").stdout)
    assert escalations[0]["question"] == f"Which key{OSC_TITLE}{RETURN} should go?"
    state = orjson.loads(run_cli("-w", str(ws_path), "status", run_id, "--json").stdout)
    assert any(RESULT_MESSAGE in text for text in _strings(state))


def _on_a_terminal(*args: str, cwd: Path) -> bytes:
    """`stoic ARGS` with stdout and stderr on a real pseudo-terminal; all it wrote."""
    controller, terminal = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"}
    env.pop("NO_COLOR", None)
    process = subprocess.Popen(
        [STOIC_BIN, *args], stdin=terminal, stdout=terminal, stderr=terminal, cwd=cwd, env=env
    )
    os.close(terminal)
    written = b""
    deadline = time.monotonic() + 120  # a bound on a hang, not a speed check
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 1)
            if ready:
                try:
                    chunk = os.read(controller, 65536)
                except OSError:  # the terminal closed: the process is done
                    break
                if not chunk:
                    break
                written += chunk
            elif process.poll() is not None:
                break
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        os.close(controller)
    return written


def _content_sequences(written: bytes) -> list[str]:
    """Sequences that only the hostile content holds: rich itself writes no OSC, no clear
    screen, no C1 and no bidi override, and moves the cursor only around its own live view."""
    text = written.decode("utf-8", errors="replace")
    found = [seq for seq in (OSC_TITLE, OSC_CLIPBOARD, "\x1b]", CLEAR, C1_CSI, BIDI) if seq in text]
    found += re.findall("sneaky\x1b", text)
    return found


def test_run_output_on_a_real_terminal_shows_sequences_escaped(tmp_path: Path) -> None:
    plan = write_plan(tmp_path)
    assert subprocess.run([STOIC_BIN, "init", str(tmp_path / "ws")], check=False).returncode == 0
    written = _on_a_terminal("-w", str(tmp_path / "ws"), "run", str(plan), cwd=tmp_path)
    assert b"\x1b[" in written  # it did draw for a terminal (styles, the live view)
    assert not _content_sequences(written), _content_sequences(written)
    assert b"release\\x1b]0;pwned\\x07" in written
    assert b"\\x1b]52;c;Zm9v\\x07" in written


def test_human_views_on_a_real_terminal_show_sequences_escaped(
    hostile_ws: tuple[Path, str, list[CliResult]],
) -> None:
    ws_path, run_id, _ = hostile_ws
    for view in (("log",), ("queue",), ("status", run_id), ("timeline", run_id), ("escalations",)):
        written = _on_a_terminal("-w", str(ws_path), *view, cwd=ws_path.parent)
        assert written, view
        assert not _content_sequences(written), (view, _content_sequences(written))


FORGED = "\nESC-999 ambiguity (routed by human:admin): all good\nstoic: notice: paused: FAKE"


def test_a_newline_cannot_forge_a_line_of_a_listing_or_a_notice(ws_path: Path) -> None:
    """A listing's line and a notice are one line each: what a task or a proposer wrote is
    shown there with its newlines as `\\n`, never as a line that looks like stoic's."""
    settings = ws_path / "stoic.toml"
    settings.write_text(settings.read_text() + '\n[[notifiers]]\nkind = "console"\n')
    raised = run_cli(
        "-w", str(ws_path), "escalate", "--mode", "ambiguity", "--question", f"Fine{FORGED} ok?"
    )  # fmt: skip
    assert raised.exit_code == 0, raised.stderr
    proposed = run_cli(
        "-w", str(ws_path), "propose", "--title", f"Rotate{FORGED}",
        "--reasoning", "r", "--", "true",
    )  # fmt: skip
    assert proposed.exit_code == 0, proposed.stderr
    notices = [line for line in raised.stderr.splitlines() if line.startswith("stoic: notice:")]
    assert len(notices) == 1 and "Fine\\nESC-999" in notices[0], raised.stderr
    assert "FAKE" not in "".join(set(raised.stderr.splitlines()) - set(notices))
    for listing in (("escalations",), ("queue",)):
        shown = run_cli("-w", str(ws_path), *listing)
        assert shown.exit_code == 0, shown.stderr
        assert not any(
            line.startswith(("ESC-999", "stoic: notice")) for line in shown.stdout.splitlines()
        )
        assert "\\nESC-999 ambiguity (routed by human:admin): all good\\n" in shown.stdout


@given(st.text())
def test_one_line_is_one_line_with_nothing_raw(text: str) -> None:
    shown = one_line(text)
    assert "\n" not in shown and not RAW.search(shown)
    assert shown == text or "\\" in shown  # changed only by writing escapes
