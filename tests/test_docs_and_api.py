"""The public API is pinned, and the README's examples run as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import stoic
from tests.conftest import PROJECT_ROOT, fill

README = (PROJECT_ROOT / "README.md").read_text()


def test_exported_names_are_pinned() -> None:
    assert sorted(stoic.__all__) == sorted(
        [
            "AuditReport",
            "ConfigError",
            "Decision",
            "InvalidDecision",
            "LogCorrupt",
            "LogTornTail",
            "ProjectionMismatch",
            "Record",
            "StoicError",
            "UsageError",
            "Violation",
            "ViolationCode",
            "Workspace",
            "WorkspaceError",
            "WorkspaceExists",
            "WorkspaceNotFound",
            "WorkspaceNotWritable",
            "WorkspaceStatus",
            "__version__",
            "step_done",
            "escalate",
        ]
    )
    for name in stoic.__all__:
        assert hasattr(stoic, name)


def test_every_stoic_error_derives_from_the_base() -> None:
    errors = [getattr(stoic, name) for name in stoic.__all__ if name.endswith(("Error", "Found"))]
    assert errors and all(issubclass(error, stoic.StoicError) for error in errors)


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)


def test_readme_python_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    blocks = _python_blocks()
    assert blocks, "the README has no Python example"
    exec(compile(blocks[0], "README.md", "exec"), {})
    assert (tmp_path / "demo.stoic" / "logs" / "decision_log.ndjson").stat().st_size > 0


def test_readme_hash_check_without_stoic_says_true(ws: stoic.Workspace, ws_path: Path) -> None:
    fill(ws, 3)
    snippet = re.search(r"```sh\n(tail -n 1 \.stoic.*?)```", README, flags=re.DOTALL)
    assert snippet is not None
    script = snippet.group(1).replace(".stoic/", f"{ws_path}/")
    result = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "True"


def test_the_demo_runs_and_shows_each_part(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "examples" / "demo.py"), str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "## What Needs Your Decision" in output  # an escalation briefing
    assert "WARNING: verifier style-review of task write-notes could not verify" in output
    assert "stoic --workspace" in output.rsplit("# To review them:", 1)[1]  # the queue waits


def test_the_readme_code_map_names_modules_that_exist() -> None:
    section = README.split("## Where the code is", 1)[1].split("\n## ", 1)[0]
    package = PROJECT_ROOT / "src" / "stoic"
    current = ""
    named = []
    for line in section.splitlines():
        folder = re.match(r"- `(\w+)/`", line)
        if folder:
            current = folder[1]
        named += [(current, module) for module in re.findall(r"`(\w+\.py)`", line)]
    assert len(named) >= 15
    missing = [
        f"{folder}/{module}"
        for folder, module in named
        if not (package / folder / module).is_file()
    ]
    assert missing == []
