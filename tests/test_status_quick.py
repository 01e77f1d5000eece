"""`stoic status`'s quick path (`stoic.services.standing`): the answer the whole command gives,
read without opening the workspace — and the whole command's answer wherever the quick path
cannot be sure (a projection behind the log, a torn tail, settings it does not read as the
settings model would)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import orjson
import pytest

import stoic
from stoic.services.standing import quick_standing
from stoic.store.layout import DECISION_LOG, LOCK_FILE, SETTINGS_FILE, STATUS_PROJECTION
from stoic.store.log import FileDecisionLog
from tests.conftest import STOIC_BIN, run_stoic_process


def _quick_and_whole(
    ws_path: Path, *args: str
) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    """`stoic status ARGS` as typed, and as the whole command answers it (`--local` is not an
    option the quick path takes; with no database named it changes nothing else)."""
    quick = run_stoic_process("-w", str(ws_path), "status", *args)
    whole = run_stoic_process("--local", "-w", str(ws_path), "status", *args)
    return quick, whole


def _same(ws_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    quick, whole = _quick_and_whole(ws_path, *args)
    assert (quick.returncode, quick.stdout, quick.stderr) == (
        whole.returncode,
        whole.stdout,
        whole.stderr,
    )
    return quick


def _settings(ws_path: Path, text: str) -> None:
    (ws_path / SETTINGS_FILE).write_text(text)


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_the_quick_answer_is_the_whole_commands(ws_path: Path, as_json: bool) -> None:
    args = ("--json",) if as_json else ()
    assert quick_standing(ws_path) is not None
    _same(ws_path, *args)  # a fresh workspace

    with stoic.Workspace.open(ws_path) as workspace:
        workspace.record("execution", "succeeded", "ran", run_id="run-1", task_id="a")
        workspace.record("execution", "failed", "exit 1", run_id="run-1", task_id="b")
    for step in (
        ("propose", "--title", "clean up", "--reasoning", "disk full", "--", "rm", "-rf", "x"),
        ("stop", "--reason", "looking into it", "--as", "ann"),
    ):
        assert run_stoic_process("-w", str(ws_path), *step).returncode == 0
    paused = _same(ws_path, *args)
    assert "stoic: PAUSED since" in paused.stderr
    resumed = run_stoic_process(
        "-w", str(ws_path), "resume", "--procedure", "smaller-batch", "--batch-size", "3",
        "--reason", "checked", "--as", "ann",
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    _settings(ws_path, "[queue]\nbatch_size = 25\n")
    shown = _same(ws_path, *args)
    if as_json:
        document = orjson.loads(shown.stdout)
        assert document["batch_size"] == 3 and document["by_type"]["execution"] == {
            "failed": 1,
            "succeeded": 1,
        }
    else:
        assert "review batches of 3 (named by the last resume)" in shown.stdout
        assert "execution      failed         1" in shown.stdout.splitlines()


def test_the_batch_size_setting_is_read(ws_path: Path) -> None:
    _settings(ws_path, "# the review team's size\n[queue]\nbatch_size = 25\n")
    standing = quick_standing(ws_path)
    assert standing is not None and standing.batch_size == 25
    assert "review batches of 25\n" in _same(ws_path).stdout


@pytest.mark.parametrize(
    "text",
    [
        "[queue]\nbatch_size = 0\n",
        "[queue]\nbatch_size = -4\n",
        '[queue]\nbatch_size = "10"\n',
        "[queue]\nbatch_size = true\n",
        "[queue]\nbatch_size = 10.0\n",
        "[queue]\nbatch_size = 9223372036854775808\n",
        "[queue]\nbatchsize = 5\n",
        "queue = 3\n",
        "[queue\nbatch_size = 5\n",
        '[store]\nurl = "postgresql://localhost/stoic"\n',
        "store = 1\n",
        '[stor]\nurl = "postgresql://localhost/stoic"\n',
        "[store]\nurl = false\n",
        '[store]\nurl = ""\nbogus = 2\n',
        "foo = 1\n",
    ],
    ids=[
        "zero",
        "negative",
        "a-string",
        "a-bool",
        "a-float",
        "too-large",
        "unknown-key",
        "not-a-table",
        "invalid-toml",
        "a-database",
        "store-not-a-table",
        "a-misspelt-store",
        "store-url-not-text",
        "store-unknown-key",
        "unknown-top-level-name",
    ],
)
def test_settings_the_quick_path_cannot_be_sure_of_are_the_whole_commands(
    ws_path: Path, text: str
) -> None:
    _settings(ws_path, text)
    assert quick_standing(ws_path) is None
    if "postgresql" not in text:  # the whole command would reach for that database
        _same(ws_path)


def test_settings_that_are_not_utf8_are_the_whole_commands(ws_path: Path) -> None:
    (ws_path / SETTINGS_FILE).write_bytes(b"[queue]\nbatch_size = 5 # \xff\n")
    assert quick_standing(ws_path) is None
    done = _same(ws_path)
    assert done.returncode == 2 and "not UTF-8" in done.stderr


def test_only_the_queue_table_is_read(ws_path: Path) -> None:
    """Status's input is the log and `[queue] batch_size`: a mistake in another table is the
    error of the commands that read that table, not of `stoic status`."""
    _settings(ws_path, "[runner]\ndefault_timeout_secs = 5\n")
    quick, whole = _quick_and_whole(ws_path)
    assert quick.returncode == 0 and quick.stdout.startswith("Workspace ")
    assert whole.returncode == 2 and "default_timeout_secs" in whole.stderr


def test_a_projection_behind_the_log_is_caught_up_by_the_whole_command(ws_path: Path) -> None:
    log = FileDecisionLog(ws_path / DECISION_LOG, ws_path / LOCK_FILE, root=ws_path)
    try:  # as the gate's own quick path appends: the projections catch up at the next open
        log.append([stoic.Decision("gate", "allowed", "the rules allow it")])
    finally:
        log.close()
    assert quick_standing(ws_path) is None
    done = run_stoic_process("-w", str(ws_path), "status", "--json")
    assert orjson.loads(done.stdout)["by_type"] == {"gate": {"allowed": 1}}
    caught_up = quick_standing(ws_path)
    assert caught_up is not None and caught_up.status.records == 1


def test_a_torn_tail_is_the_whole_commands_warning(ws_path: Path) -> None:
    with stoic.Workspace.open(ws_path) as workspace:
        workspace.record("execution", "succeeded", "ran", run_id="run-1", task_id="a")
    with (ws_path / DECISION_LOG).open("ab") as log:
        log.write(b'{"seq": 2, "decision_ty')
    assert quick_standing(ws_path) is None
    done = _same(ws_path)
    assert "stoic: warning:" in done.stderr and "--repair" in done.stderr


def test_a_damaged_status_file_is_the_whole_commands_error(ws_path: Path) -> None:
    with stoic.Workspace.open(ws_path) as workspace:
        workspace.record("execution", "succeeded", "ran", run_id="run-1", task_id="a")
    (ws_path / STATUS_PROJECTION).write_text("{not json")
    assert quick_standing(ws_path) is None
    done = _same(ws_path)
    assert done.returncode != 0 and str(STATUS_PROJECTION) in done.stderr


def test_a_status_file_stamped_with_another_record_is_the_whole_commands_error(
    ws_path: Path,
) -> None:
    with stoic.Workspace.open(ws_path) as workspace:
        workspace.record("execution", "succeeded", "ran", run_id="run-1", task_id="a")
    path = ws_path / STATUS_PROJECTION
    document = orjson.loads(path.read_bytes())
    document["last_hash"] = "0" * 64
    path.write_bytes(orjson.dumps(document))
    assert quick_standing(ws_path) is None
    assert _same(ws_path).returncode != 0


def test_a_missing_workspace_is_the_whole_commands_error(tmp_path: Path) -> None:
    assert quick_standing(tmp_path / "nowhere") is None
    done = _same(tmp_path / "nowhere")
    assert done.returncode == 2 and "no stoic workspace" in done.stderr


def test_the_workspace_named_by_the_environment(ws_path: Path, tmp_path: Path) -> None:
    _settings(ws_path, "[queue]\nbatch_size = 4\n")
    done = subprocess.run(
        [STOIC_BIN, "status"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "STOIC_WORKSPACE": str(ws_path)},
        timeout=120,
        check=False,
    )
    assert done.returncode == 0 and "review batches of 4" in done.stdout


def test_the_names_the_quick_path_knows_are_the_settings_tables() -> None:
    from stoic.services.standing import SETTINGS_TABLES
    from stoic.store.config import Settings

    assert set(Settings.model_fields) == SETTINGS_TABLES


def test_a_status_that_cannot_be_written_is_one_line_and_no_traceback(ws_path: Path) -> None:
    with Path("/dev/full").open("wb") as full:
        done = subprocess.run(
            [STOIC_BIN, "-w", str(ws_path), "status"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 1
    assert done.stderr == "stoic: error: cannot write the status: No space left on device\n"
    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is written
    try:
        cut = subprocess.run(
            [STOIC_BIN, "-w", str(ws_path), "status"],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write)
    assert cut.returncode == 1 and cut.stderr == ""
