"""`stoic log --tail` on a 1,000,000-record log answers without reading the file into memory."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

import stoic
from tests.conftest import log_path

RECORDS = 1_000_000

# Peak RSS from /proc: getrusage would report the parent's peak, inherited across fork and exec.
_RUN_AND_MEASURE = """
import re, sys
from pathlib import Path
from stoic.cli.app import main
code = main(sys.argv[1:])
peak_kb = re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1)
print(f"PEAK_KB {peak_kb}", file=sys.stderr)
sys.exit(code)
"""


@pytest.fixture(scope="module")
def big_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("big") / "ws"
    with stoic.Workspace.init(root) as ws:
        for start in range(0, RECORDS, 20_000):
            ws.record_many(
                {
                    "type": "execution",
                    "outcome": "succeeded",
                    "reason": f"Task t{i} finished.",
                    "run_id": f"run-{i // 1000}",
                    "task_id": f"t{i}",
                }
                for i in range(start, start + 20_000)
            )
    return root


def _measured(*args: str) -> tuple[subprocess.CompletedProcess[str], int]:
    result = subprocess.run(
        [sys.executable, "-c", _RUN_AND_MEASURE, *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    peak = re.search(r"PEAK_KB (\d+)", result.stderr)
    assert peak is not None, result.stderr
    return result, int(peak.group(1)) * 1024


@pytest.mark.slow
def test_tail_20_of_a_million_records_reads_only_the_end(big_workspace: Path) -> None:
    size = log_path(big_workspace).stat().st_size
    result, peak = _measured("--workspace", str(big_workspace), "log", "--tail", "20", "--json")
    assert result.returncode == 0, result.stderr
    seqs = [orjson.loads(line)["seq"] for line in result.stdout.splitlines()]
    assert seqs == list(range(RECORDS - 19, RECORDS + 1))
    # The log is hundreds of MB; the process stays at the size of the interpreter itself.
    assert size > 300 * 2**20
    assert peak < 120 * 2**20, f"peak RSS {peak / 2**20:.0f} MiB for a {size / 2**20:.0f} MiB log"

    table, table_peak = _measured("--workspace", str(big_workspace), "log", "--tail", "20")
    assert table.returncode == 0
    assert f"Task t{RECORDS - 1} finished." in table.stdout
    assert "Task t999979 finished." not in table.stdout
    assert table_peak < 120 * 2**20


@pytest.mark.slow
def test_audit_of_a_million_records_keeps_memory_flat(big_workspace: Path) -> None:
    result, peak = _measured("--workspace", str(big_workspace), "audit", "--json")
    assert result.returncode == 0, result.stdout
    report = orjson.loads(result.stdout)
    assert report["ok"] and report["records"] == RECORDS
    assert peak < 120 * 2**20, f"peak RSS {peak / 2**20:.0f} MiB"
