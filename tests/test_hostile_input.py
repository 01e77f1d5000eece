"""Hostile input: YAML that expands or nests without end, numbers too long to read, control
characters, names too long for the filesystem. Each is one line on stderr and exit 2 — never an
internal error, a crash, a hang or gigabytes of memory."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import STOIC_BIN, run_cli

BOMB_LEVELS = "\n".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]"
    for prev, name in zip("abcdefg", "bcdefgh", strict=True)
)
BOMB = f'a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]\n{BOMB_LEVELS}\n'
"""A "billion laughs": a few hundred bytes whose aliases stand for 9**8 values."""


def _limited() -> None:
    # Without the bound, the bomb takes gigabytes: fail fast instead of swapping the machine.
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def stoic_bounded(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`stoic ARGS` as a real process with 2 GiB of address space and a time bound."""
    return subprocess.run(
        [STOIC_BIN, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        preexec_fn=_limited,
        check=False,
    )


def one_line_usage_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, (done.returncode, done.stderr[:2000])
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr
    assert len(done.stderr) < 2000, done.stderr[:2000]
    return done.stderr


def test_an_alias_bomb_in_status_is_refused_with_its_line(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"{BOMB}tasks:\n  - id: t\n    run: [echo, hi]\n    status: *h\n")
    assert len(plan.read_bytes()) < 600
    err = one_line_usage_error(stoic_bounded("plan", "check", str(plan), cwd=tmp_path))
    assert f"{plan}:" in err and "aliases expand to more than" in err


def test_an_alias_bomb_in_params_never_reaches_a_run(tmp_path: Path) -> None:
    (tmp_path / "tasks.py").write_text("def f(**kw):\n    return 1\n")
    plan = tmp_path / "plan.yaml"
    plan.write_text(f'{BOMB}tasks:\n  - id: t\n    call: "tasks:f"\n    params: {{x: *h}}\n')
    assert stoic_bounded("init", str(tmp_path / "ws"), cwd=tmp_path).returncode == 0
    err = one_line_usage_error(
        stoic_bounded("-w", str(tmp_path / "ws"), "run", str(plan), cwd=tmp_path)
    )
    assert f"{plan}:" in err and "aliases expand" in err
    assert not (tmp_path / "ws" / "runs").exists() or not any((tmp_path / "ws" / "runs").iterdir())


def test_shared_blocks_within_the_bound_still_load(tmp_path: Path) -> None:
    tasks = "".join(
        f"  - id: t{i}\n    run: [echo, hi]\n    env: *env\n    budget: *budget\n"
        for i in range(300)
    )
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        f"meta: {{name: shared}}\nx-env: &env {{A: '1', B: '2'}}\n"
        f"x-budget: &budget {{max_attempts: 2}}\ntasks:\n{tasks}"
    )
    result = run_cli("plan", "check", str(plan))
    # The x- keys are unknown to a plan, but the aliases are read: every task is checked.
    assert "aliases" not in result.stderr
    assert result.stderr.count("unknown key") == 2


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ("&a [*a]", "alias *a stands inside the very node it names"),
        ("&a {x: *a}", "alias *a stands inside the very node it names"),
        ("{x: " + "[" * 70 + "]" * 70 + "}", "nest deeper than 64 levels"),
        (
            "{x: *deep, y: [[*deep]]}",
            "alias *deep makes mappings and lists nest deeper than 64 levels",
        ),
    ],
)
def test_self_containing_and_too_deep_data_is_refused_with_its_line(
    tmp_path: Path, params: str, message: str
) -> None:
    plan = tmp_path / "plan.yaml"
    deep = "x-deep: &deep " + "[" * 62 + "]" * 62 + "\n"
    plan.write_text(f'{deep}tasks:\n  - id: t\n    call: "m:f"\n    params: {params}\n')
    result = run_cli("plan", "check", str(plan))
    assert result.exit_code == 2, result.stderr
    assert f"{plan}:5:" in result.stderr and message in result.stderr


def test_a_mapping_used_as_a_key_does_not_swallow_the_keys_after_it(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("{[a, b]: c, tasks: [{id: t, run: [echo]}]}\n")
    result = run_cli("plan", "check", str(plan))
    assert result.exit_code == 2
    assert f"{plan}:1:2: a key must be a plain value" in result.stderr
    assert "the plan has no tasks" not in result.stderr


@pytest.mark.parametrize("char", ["\x00", "\x1b", "\x7f", "\x08", "\ufffe"])
def test_a_control_character_in_a_plan_is_refused_with_its_place(tmp_path: Path, char: str) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"tasks:\n  - id: t\n    name: ab{char}c\n    run: [echo]\n")
    result = run_cli("plan", "check", str(plan))
    assert result.exit_code == 2, result.stderr
    assert f"{plan}:3:13: character U+{ord(char):04X} is not allowed in YAML" in result.stderr
    assert "internal error" not in result.stderr


def test_a_number_of_thousands_of_digits_in_a_plan_is_refused_with_its_place(
    tmp_path: Path,
) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"tasks:\n  - id: t\n    run: [echo]\n    timeout: {'9' * 5000}\n")
    result = run_cli("plan", "check", str(plan))
    assert result.exit_code == 2, result.stderr
    assert f"{plan}:4:14: the number 999" in result.stderr
    assert "is too large (at most 63 bits)" in result.stderr
    assert len(result.stderr) < 1000


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"[queue]\nbatch_size = {'9' * 5000}\n", ":2: a number too large to read"),
        (f"[queue]\nbatch_size = {'9' * 4000}\n", ":2: queue.batch_size: 999"),
        ("[runner]\nworkers = 99999999999999999999\n", ":2: runner.workers: 9999"),
        (f"x = {'[' * 5000}{']' * 5000}\n", ":1: arrays or tables nest too deeply"),
        (f"x = {'{a = ' * 3000}1{'}' * 3000}\n", ":1: arrays or tables nest too deeply"),
        (f"[{'.'.join(['a'] * 5000)}]\n", ":1: a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a: nests deeper"),
        (f"x = {'[' * 200}{']' * 200}\n", ":1: x: nests deeper than 16 levels"),
        ("[runner]\nkill_grace_seconds = inf\n", ":2: runner.kill_grace_seconds: inf is not"),
        ("[recovery]\nunavailable_retry_delay_seconds = nan\n", ":2: recovery.unavailable_retry"),
        (
            '[[notifiers]]\nkind = "webhook"\nurl = "http://127.0.0.1:99999/hook"\n',
            ":3: notifiers.url: ",
        ),
        ('[[notifiers]]\nkind = "webhook"\nurl = "https:///no-host"\n', ":3: notifiers.url: "),
    ],
)
def test_a_hostile_stoic_toml_is_one_line_with_file_and_line(
    ws_path: Path, text: str, message: str
) -> None:
    (ws_path / "stoic.toml").write_text(text)
    result = run_cli("-w", str(ws_path), "status")
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith(f"stoic: error: {ws_path / 'stoic.toml'}{message}")
    assert result.stderr.count("\n") == 1 and len(result.stderr) < 500


LONG = "a" * 300


@pytest.mark.parametrize(
    "args",
    [
        ("continue", f"run-{LONG}"),
        ("status", f"run-{LONG}"),
        ("timeline", f"run-{LONG}"),
        ("propose", "--title", "t", "--reasoning", "r", "--source", LONG, "--", "true"),
        (
            "escalate",
            "--mode",
            "ambiguity",
            "--question",
            "which?",
            "--run",
            f"run-{LONG}",
            "--task",
            "t",
        ),
        ("queue", "show", f"PROP-{LONG}"),
        ("approve", f"PROP-{LONG}"),
        ("escalations", "show", f"ESC-{LONG}"),
        ("plan", "check", f"/tmp/{LONG}/plan.yaml"),
        ("run", f"/tmp/{LONG}.yaml"),
    ],
)
def test_an_id_or_path_too_long_for_the_filesystem_is_a_usage_error(
    ws_path: Path, args: tuple[str, ...]
) -> None:
    result = run_cli("-w", str(ws_path), *args)
    assert result.exit_code == 2, result.stderr
    assert "internal error" not in result.stderr
    assert result.stderr.count("\n") <= 2 and len(result.stderr) < 800, result.stderr
    assert stoic_records(ws_path) == 0  # refused before anything was decided


@pytest.mark.parametrize("where", ["--workspace", "init"])
def test_a_workspace_path_too_long_is_a_usage_error(tmp_path: Path, where: str) -> None:
    long_path = str(tmp_path / LONG / "ws")
    args = ("init", long_path) if where == "init" else ("-w", long_path, "status")
    result = run_cli(*args)
    assert result.exit_code == 2, result.stderr
    assert "a name is too long for the filesystem" in result.stderr
    assert result.stderr.count("\n") == 1


def stoic_records(ws_path: Path) -> int:
    log = ws_path / "logs" / "decision_log.ndjson"
    return len(log.read_bytes().splitlines()) if log.exists() else 0


def test_an_argument_that_is_not_utf8_is_a_usage_error(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("tasks:\n  - id: t\n    run: [echo]\n")
    odd = os.fsencode(tmp_path) + b"/\xff.yaml"
    os.link(plan, odd)
    for args in ([b"plan", b"check", b"--json", odd], [b"run", odd], [b"status", b"run-\xff"]):
        done = subprocess.run(
            [os.fsencode(STOIC_BIN), b"-w", os.fsencode(tmp_path / "ws"), *args],
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2, done.stderr
        assert b"is not UTF-8 text" in done.stderr and done.stderr.count(b"\n") == 1


def test_an_argument_holding_nul_is_a_usage_error(ws_path: Path) -> None:
    result = run_cli("-w", str(ws_path), "status", "run-a\x00b")
    assert result.exit_code == 2
    assert "holds a NUL character" in result.stderr


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_plan_that_is_a_pipe_or_a_device_is_refused_not_read_forever(
    tmp_path: Path, kind: str
) -> None:
    plan = tmp_path / "plan.yaml"
    if kind == "fifo":
        os.mkfifo(plan)  # reading it would wait for a writer forever
    else:
        plan.symlink_to("/dev/zero")  # reading it would never end
    done = stoic_bounded("plan", "check", str(plan), cwd=tmp_path)
    err = one_line_usage_error(done)
    named = "a named pipe" if kind == "fifo" else "a character device"
    assert f"{plan}:1:1: is {named}, not a plan file" in err


def test_settings_that_are_a_pipe_or_too_large_are_refused(tmp_path: Path) -> None:
    from stoic.exceptions import ConfigError
    from stoic.store.config import load_settings

    big = tmp_path / "big.toml"
    big.write_text("# x\n" * 300_000)
    with pytest.raises(ConfigError, match="larger than 1 MiB"):
        load_settings(big)
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    script = (
        "import sys\nfrom pathlib import Path\nfrom stoic.store.config import load_settings\n"
        "try:\n    load_settings(Path(sys.argv[1]))\nexcept Exception as exc:\n    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(fifo)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "is a named pipe, not a settings file" in done.stdout, done.stderr
