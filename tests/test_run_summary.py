"""The end of a run: counts by status and the tasks that need a look; every row on request."""

from __future__ import annotations

import re
from pathlib import Path

import orjson

from stoic.core.text import counted
from tests.conftest import run_cli

_BOOM = '[sh, -c, "echo boom; exit 3"]'
_TRUE = '["true"]'
CHAIN_WITH_A_FAILURE = (
    "tasks:\n"
    + "".join(
        f"  - {{id: t{i}, run: {_BOOM if i == 2 else _TRUE}"
        + (f", depends_on: [t{i - 1}]" if i else "")
        + "}\n"
        for i in range(16)
    )
    + f"  - {{id: alone, run: {_TRUE}}}\n"
)


def _rows(text: str) -> set[str]:
    """The task ids that have a row in the summary's table."""
    return set(re.findall(r"^(t\d+|alone)\s+(?:succeeded|failed|blocked|waiting)", text, re.M))


def _run_id(ws_path: Path) -> str:
    (run_id,) = [path.name for path in (ws_path / "runs").iterdir()]
    return run_id


def test_the_summary_counts_and_names_only_what_needs_a_look(tmp_path: Path, ws_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(CHAIN_WITH_A_FAILURE)
    result = run_cli("-w", str(ws_path), "run", str(plan))
    assert result.exit_code == 1, result.stdout + result.stderr
    run_id = _run_id(ws_path)
    assert f"run {run_id}: 17 tasks: 3 succeeded, 1 failed, 13 blocked" in result.stdout
    shown = _rows(result.stdout)
    assert "t2" in shown and "t0" not in shown and "alone" not in shown  # no succeeded rows
    assert {f"t{i}" for i in range(3, 13)} <= shown  # the first ten blocked
    assert "t13" not in shown and "… and 3 more blocked" in result.stdout
    assert "  … and 3 more blocked behind them" in result.stdout
    assert f"Every task's row: `stoic status {run_id} --tasks`." in result.stdout
    status = run_cli("-w", str(ws_path), "status", run_id)
    assert status.exit_code == 0
    assert _rows(status.stdout) == shown


def test_every_row_on_request(tmp_path: Path, ws_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(CHAIN_WITH_A_FAILURE)
    result = run_cli("-w", str(ws_path), "run", str(plan), "--tasks")
    everything = {f"t{i}" for i in range(16)} | {"alone"}
    assert _rows(result.stdout) == everything
    assert "Every task's row" not in result.stdout
    status = run_cli("-w", str(ws_path), "status", _run_id(ws_path), "--tasks")
    assert _rows(status.stdout) == everything
    refused = run_cli("-w", str(ws_path), "status", "--tasks")
    assert refused.exit_code == 2
    assert "name the run (`stoic status RUN_ID --tasks`)" in refused.stderr


def test_a_rejected_task_says_who_rejected_it_and_why(tmp_path: Path, ws_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text('tasks:\n  - {id: deploy, run: ["true"], approval: required}\n')
    waiting = run_cli("-w", str(ws_path), "run", str(plan))
    assert waiting.exit_code == 3, waiting.stdout + waiting.stderr
    assert re.search(r"^deploy\s+waiting\s", waiting.stdout, re.M)
    assert "waiting for a person (approval)" in waiting.stdout  # a gate, not a recovery
    queue = orjson.loads(run_cli("-w", str(ws_path), "queue", "--json").stdout)
    (proposal,) = [p["id"] for p in (queue if isinstance(queue, list) else queue["proposals"])]
    rejected = run_cli(
        "-w", str(ws_path), "reject", proposal, "--reason", "not on a Friday", "--as", "alice"
    )
    assert rejected.exit_code == 0, rejected.stderr
    status = run_cli("-w", str(ws_path), "status", _run_id(ws_path))
    assert re.search(
        r"^deploy\s+failed\s+0\s+-\s+rejected by human:alice: not on a Friday", status.stdout, re.M
    ), status.stdout


def test_counted_says_one_thing_in_the_singular() -> None:
    assert counted(1, "task") == "1 task"
    assert counted(0, "task") == "0 tasks"
    assert counted(2, "red flag") == "2 red flags"
    assert counted(1, "entry", "entries") == "1 entry"
    assert counted(3, "entry", "entries") == "3 entries"


def test_one_task_and_one_error_are_said_in_the_singular(tmp_path: Path, ws_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text('tasks:\n  - {id: a, run: ["true"]}\n')
    result = run_cli("-w", str(ws_path), "run", str(plan))
    assert ": plan plan, 1 task\n" in result.stdout and "1 tasks" not in result.stdout
    assert "run " + _run_id(ws_path) + ": 1 task: 1 succeeded" in result.stdout
    (started,) = [
        orjson.loads(line)
        for line in (ws_path / "logs" / "decision_log.ndjson").read_bytes().splitlines()
        if b'"run_lifecycle"' in line and b'"started"' in line
    ]
    assert started["decision_reason"].endswith("started with 1 task.")
    broken = tmp_path / "broken.yaml"
    broken.write_text('tasks:\n  - {id: a, run: ["true"], depends_on: [nope]}\n')
    checked = run_cli("plan", "check", str(broken))
    assert checked.exit_code == 2
    assert "(1 error)" in checked.stderr and "1 errors" not in checked.stderr


FAILING_OUTPUT = """
tasks:
  - id: build
    run: ["sh", "-c", "echo compiling; echo 'error: foo.c:3: missing semicolon' >&2; echo; exit 1"]
  - id: quiet
    run: ["sh", "-c", "exit 2"]
  - id: py
    call: "boom:fail"
  - id: colours
    run: ["sh", "-c", "printf 'token %s\\\\033[2J\\\\n' \\"$API_KEY_X\\"; exit 1"]
    secrets: [API_KEY_X]
  - id: direct
    shell: true
    run: >-
      d="$(dirname "$(dirname "$STOIC_RESULT")")/tasks/direct"; mkdir -p "$d";
      echo "direct $API_KEY_X" >> "$d/attempt-$STOIC_ATTEMPT.log"; exit 1
    secrets: [API_KEY_X]
"""


def test_a_failed_task_is_named_with_the_last_line_it_wrote(tmp_path: Path, ws_path: Path) -> None:
    """An exit status says little: the summary adds the last line the task wrote (not again
    when the failure's note says it already), its secrets masked and controls escaped."""
    (tmp_path / "boom.py").write_text("def fail():\n    raise ValueError('no key named region')\n")
    plan = tmp_path / "plan.yaml"
    plan.write_text(FAILING_OUTPUT)
    result = run_cli("-w", str(ws_path), "run", str(plan), env={"API_KEY_X": "s3cr3t-value"})
    assert result.exit_code == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "  build failed; its output ends: error: foo.c:3: missing semicolon" in lines
    assert "  quiet failed" in lines  # it wrote nothing
    assert "  py failed" in lines  # the traceback's last line is the note already
    assert "  colours failed; its output ends: token [API_KEY_X masked]\\x1b[2J" in lines
    assert "  direct failed; its output ends: direct [API_KEY_X masked]" in lines
    assert "s3cr3t-value" not in result.stdout
    status = run_cli("-w", str(ws_path), "status", _run_id(ws_path))
    assert "  build failed; its output ends: error: foo.c:3: missing semicolon" in status.stdout


def test_the_output_end_is_the_tasks_not_stoics_cut_mark() -> None:
    from stoic.run.run_end import output_end

    cut = b"[stoic: output cut at 64 bytes; 9 more bytes were discarded]\n"
    assert output_end([b"first\nlast real line\n", b"\n" + cut]) == "last real line"
    assert output_end([b"x" * 10_000, b"\nthe end"]) == "the end"
    assert output_end([b"", b"  \n"]) == ""
