"""Fuzzing the command line: mutated real plans and hostile arguments never give an internal
error (exit 70), a traceback, a crash or a hang — only the exit codes the README lists.

Mutations are seeded, so a failure names a case that replays the same way. Most cases run
in-process with a time bound (SIGALRM); a sample runs as real processes (a crash shows as a
signal there), and a few mutated plans really run, with every command made harmless.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT, STOIC_BIN, CliResult, run_cli

CORPUS = Path(os.environ.get("STOIC_CORPUS", PROJECT_ROOT.parent / "shared" / "corpus" / "plans"))
SEED = 20261201
MUTATED_PLANS = 520
HOSTILE_ARGUMENTS = 240
CASE_SECONDS = 20
"""A bound on one case, far above what any takes: it turns a hang into a failure."""
USAGE_EXITS = {0, 1, 2, 3, 4}
"""completed, failed, usage error, awaiting a person, paused."""


def corpus_files() -> list[Path]:
    """The corpus plans; absent, the test is skipped — except in CI, where it must be there."""
    if not CORPUS.is_dir():
        reason = f"the plan corpus is not here ({CORPUS}); set STOIC_CORPUS to its folder"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI runs it, so it must be present)")
        pytest.skip(reason)
    files = sorted(CORPUS.glob("*.yaml"))
    assert len(files) >= 200, f"{CORPUS} holds only {len(files)} plans"
    return files


class CaseTimedOut(BaseException):
    """Raised by the alarm: a BaseException, so the CLI's own error boundary lets it through."""


@contextmanager
def time_bound(seconds: float, case: str) -> Iterator[None]:
    def expired(signum: int, frame: object) -> None:
        raise CaseTimedOut(f"{case} did not finish in {seconds}s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def assert_handled(case: str, code: int, stdout: str, stderr: str) -> None:
    assert code in USAGE_EXITS, f"{case}: exit {code}: {stderr[-2000:]}"
    assert "Traceback" not in stderr and "Traceback" not in stdout, f"{case}: {stderr[-2000:]}"
    assert "internal error" not in stderr, f"{case}: {stderr[-2000:]}"
    if code == 2:
        assert (stderr or stdout).strip(), f"{case}: a usage error says what is wrong"


def bounded_cli(case: str, *args: str) -> CliResult:
    with time_bound(CASE_SECONDS, case):
        result = run_cli(*args)
    assert_handled(case, result.exit_code, result.stdout, result.stderr)
    return result


# -- mutations ---------------------------------------------------------------------------------

Mutation = Callable[[random.Random, bytes], bytes]

CONTROLS = [chr(code).encode() for code in (*range(0x20), 0x7F)] + [
    "\u009b".encode(),
    "\u202e".encode(),
    "\ufeff".encode(),
]
BOMB = b'x-a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]\n' + b"".join(
    f"x-{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]\n".encode()
    for prev, name in zip("abcdefg", "bcdefgh", strict=True)
)
HOSTILE_VALUES = [
    b"9" * 5000,
    b"-" + b"9" * 30,
    b"0x" + b"f" * 40,
    b"1e999",
    b".nan",
    b"-.inf",
    b"[" * 3000 + b"]" * 3000,
    b"{a: " * 200 + b"1" + b"}" * 200,
    b"*h",
    b"&r [*r]",
    b"*nowhere",
    b"!!python/object/apply:os.system ['true']",
    b"!!binary aGVsbG8=",
    b"~",
    b"[]",
    b"{}",
    b"yes",
    b"2026-12-01T10:00:00Z",
    b"'" + b"a" * 300 + b"'",
    b'"\\e]0;pwned\\a\\e[2J"',
    b"'../../../etc/passwd'",
    b"[1, [2, [3, {x: y}]]]",
    b"- a\n- b",
    b"|\n  text\n  more",
]


def _offset(rng: random.Random, data: bytes) -> int:
    return rng.randrange(len(data) + 1)


def truncate(rng: random.Random, data: bytes) -> bytes:
    return data[: _offset(rng, data)]


def insert_control(rng: random.Random, data: bytes) -> bytes:
    at = _offset(rng, data)
    return data[:at] + rng.choice(CONTROLS) + data[at:]


def flip_bytes(rng: random.Random, data: bytes) -> bytes:
    mutable = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        if mutable:
            mutable[rng.randrange(len(mutable))] = rng.randrange(256)
    return bytes(mutable)


def not_utf8(rng: random.Random, data: bytes) -> bytes:
    at = _offset(rng, data)
    return data[:at] + rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88"]) + data[at:]


def _lines(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True) or [b""]


def duplicate_line(rng: random.Random, data: bytes) -> bytes:
    lines = _lines(data)
    at = rng.randrange(len(lines))
    return b"".join([*lines[: at + 1], lines[at], *lines[at + 1 :]])


def drop_line(rng: random.Random, data: bytes) -> bytes:
    lines = _lines(data)
    del lines[rng.randrange(len(lines))]
    return b"".join(lines)


def shift_indent(rng: random.Random, data: bytes) -> bytes:
    lines = _lines(data)
    at = rng.randrange(len(lines))
    lines[at] = (b" " * rng.randint(1, 5) + lines[at]) if rng.random() < 0.5 else lines[at].lstrip()
    return b"".join(lines)


def replace_value(rng: random.Random, data: bytes) -> bytes:
    """A `key: value` line's value becomes something hostile (wrong type, huge, deep …)."""
    lines = _lines(data)
    candidates = [i for i, line in enumerate(lines) if b": " in line]
    if not candidates:
        return data + b"\nx: " + rng.choice(HOSTILE_VALUES) + b"\n"
    at = rng.choice(candidates)
    key = lines[at].split(b": ", 1)[0]
    value = rng.choice(HOSTILE_VALUES)
    prefix = BOMB if value == b"*h" else b""
    lines[at] = key + b": " + value + b"\n"
    return prefix + b"".join(lines)


def hostile_id(rng: random.Random, data: bytes) -> bytes:
    lines = _lines(data)
    ids = [i for i, line in enumerate(lines) if line.lstrip(b" -").startswith(b"id:")]
    if not ids:
        return data
    at = rng.choice(ids)
    value = rng.choice([b"a" * 300, b"'../x'", b"'a/b'", b'"t\\e]0;x\\a"', b"7", b"[a]", b"''"])
    lines[at] = lines[at].split(b"id:", 1)[0] + b"id: " + value + b"\n"
    return b"".join(lines)


def second_document(rng: random.Random, data: bytes) -> bytes:
    return data + b"\n---\n" + data[: rng.randrange(len(data) + 1)]


def long_string(rng: random.Random, data: bytes) -> bytes:
    return data + b"\nx-long: '" + b"z" * rng.choice([1000, 100_000]) + b"'\n"


MUTATIONS: list[Mutation] = [
    truncate,
    insert_control,
    flip_bytes,
    not_utf8,
    duplicate_line,
    drop_line,
    shift_indent,
    replace_value,
    replace_value,
    hostile_id,
    second_document,
    long_string,
]


def mutated_plans(count: int, seed: int) -> Iterator[tuple[str, bytes]]:
    """`count` seeded mutants of corpus plans: (a name to replay the case by, the bytes)."""
    files = corpus_files()
    rng = random.Random(seed)
    for number in range(count):
        source = rng.choice(files)
        data = source.read_bytes()
        applied = [rng.choice(MUTATIONS) for _ in range(rng.randint(1, 3))]
        for mutation in applied:
            data = mutation(rng, data)
        names = "+".join(mutation.__name__ for mutation in applied)
        yield f"case {number} ({source.name}, {names})", data


# -- the tests ---------------------------------------------------------------------------------


def test_mutated_corpus_plans_through_plan_check(tmp_path: Path) -> None:
    checked = 0
    for case, data in mutated_plans(MUTATED_PLANS, SEED):
        plan = tmp_path / f"plan-{checked}.yaml"
        plan.write_bytes(data)
        options = ("--json",) if checked % 4 == 0 else ()
        result = bounded_cli(
            case, "-w", str(tmp_path / "no-ws"), "plan", "check", str(plan), *options
        )
        if result.exit_code == 2 and not options:
            assert f"{plan}:" in result.stderr, f"{case}: an invalid plan names file and line"
        plan.unlink()
        checked += 1
    assert checked >= 500


def test_a_sample_of_mutated_plans_as_real_processes(tmp_path: Path) -> None:
    for number, (case, data) in enumerate(mutated_plans(16, SEED + 1)):
        plan = tmp_path / f"plan-{number}.yaml"
        plan.write_bytes(data)
        done = subprocess.run(
            [STOIC_BIN, "plan", "check", str(plan)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode >= 0, f"{case}: killed by signal {-done.returncode}"
        assert_handled(case, done.returncode, done.stdout, done.stderr)


HARMLESS_SETTINGS = """
[policy]
allowed_executors = ["agent"]   # shell, python and http tasks are halted before they start
env_passthrough = ["HOME", "LANG"]

[agents]
agent_cli = ["/bin/true", "{prompt}"]
"""


def test_a_sample_of_mutated_plans_really_run_harmlessly(tmp_path: Path) -> None:
    """Each task of the sample is an agent task running /bin/true or is halted by policy; no
    program the corpus names can be found (PATH is an empty folder), so no verifier runs."""
    ws = tmp_path / "ws"
    assert (
        subprocess.run([STOIC_BIN, "init", str(ws)], capture_output=True, check=False).returncode
        == 0
    )
    (ws / "stoic.toml").write_text(HARMLESS_SETTINGS)
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    env = {**os.environ, "PATH": str(empty)}
    ran = 0
    sample: list[tuple[str, bytes]] = []
    refused = 0
    for case, data in mutated_plans(300, SEED + 2):  # mostly mutants that pass plan check
        check = tmp_path / "check.yaml"
        check.write_bytes(data)
        valid = run_cli("-w", str(ws), "plan", "check", str(check)).exit_code != 2
        if valid or refused < 2:
            sample.append((case, data))
            refused += not valid
        if len(sample) == 6:
            break
    assert len(sample) == 6
    for number, (case, data) in enumerate(sample):
        folder = tmp_path / f"plan-{number}"
        folder.mkdir()
        (folder / "plan.yaml").write_bytes(data)
        done = subprocess.run(
            [STOIC_BIN, "-w", str(ws), "run", "--workers", "2", str(folder / "plan.yaml")],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=folder,
            env=env,
            check=False,
        )
        assert done.returncode >= 0, f"{case}: killed by signal {-done.returncode}"
        assert_handled(case, done.returncode, done.stdout, done.stderr)
        ran += done.returncode != 2
    assert ran >= 4, "the sample ran plans, not only refused them"
    audit = subprocess.run(
        [STOIC_BIN, "-w", str(ws), "audit"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert audit.returncode == 0, audit.stdout + audit.stderr


HOSTILE_ARGS = [
    "",
    "-",
    "--",
    "a" * 300,
    "a" * 5000,
    "run-" + "9" * 300,
    "PROP-" + "x" * 300,
    "ESC-" + "9" * 30,
    "PROP-00000000-000",
    "../../../etc/passwd",
    "/dev/null",
    "/dev/zero",
    "/",
    ".",
    "-1",
    "0",
    "9" * 30,
    "1e999",
    "nan",
    "\x1b]0;pwned\x07",
    "\x1b[2J\x1b[1A",
    "\u202e\u2066",
    "\udcff",
    "\ud800x",
    "a\x00b",
    "a\nb",
    "%s%n{prompt}",
    "$(true); true",
    "--help-me",
]

COMMANDS: list[Callable[[str, Path], list[str]]] = [
    lambda x, plan: ["status", x],
    lambda x, plan: ["continue", x],
    lambda x, plan: ["continue", x, "--approve-suggestion", x],
    lambda x, plan: ["timeline", x],
    lambda x, plan: ["timeline", x, "--customer"],
    lambda x, plan: ["log", "--tail", x],
    lambda x, plan: ["log", "--type", x],
    lambda x, plan: ["log", "--run", x],
    lambda x, plan: ["queue", "--status", x],
    lambda x, plan: ["queue", "show", x],
    lambda x, plan: ["approve", x, "--reason", x],
    lambda x, plan: ["reject", x, "--reason", x],
    lambda x, plan: ["defer", x],
    lambda x, plan: ["undefer", x],
    lambda x, plan: ["execute", x],
    lambda x, plan: ["rollback", x],
    lambda x, plan: ["escalations", "show", x],
    lambda x, plan: ["escalations", "answer", x, "--decision", x],
    lambda x, plan: ["escalate", "--mode", x, "--question", x],
    lambda x, plan: ["escalate", "--mode", "ambiguity", "--question", "which?", "--run", x],
    lambda x, plan: ["propose", "--title", x, "--reasoning", x, "--source", x, "--", "true"],
    lambda x, plan: ["propose", "--title", "t", "--reasoning", "r", "--confidence", x, "--", x],
    lambda x, plan: ["flag", x],
    lambda x, plan: ["incident", "new", "--severity", x, "--title", x],
    lambda x, plan: ["plan", "check", x],
    lambda x, plan: ["run", x],
    lambda x, plan: ["run", str(plan), "--workers", x],
    lambda x, plan: ["-w", x, "status"],
    lambda x, plan: ["-w", x, "log"],
]


def test_hostile_arguments_to_every_command(
    tmp_path: Path, ws_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # anything a command creates from an argument stays in here
    plan = tmp_path / "plan.yaml"
    plan.write_text("tasks:\n  - id: t\n    run: ['/bin/true']\n")
    rng = random.Random(SEED + 3)
    cases = [(command, value) for command in COMMANDS for value in HOSTILE_ARGS]
    rng.shuffle(cases)
    for number, (command, value) in enumerate(cases[:HOSTILE_ARGUMENTS]):
        args = command(value, plan)
        bounded_cli(f"case {number}: stoic {args!r}", "-w", str(ws_path), *args)
    audit = run_cli("-w", str(ws_path), "audit")
    assert audit.exit_code == 0, audit.stdout + audit.stderr


def test_a_sample_of_hostile_arguments_as_real_processes(ws_path: Path, tmp_path: Path) -> None:
    values = ["a" * 300, "\x1b]0;pwned\x07", "9" * 30, "../../x", "-"]
    for value in values:
        for args in (["continue", value], ["-w", value, "status"], ["log", "--tail", value]):
            done = subprocess.run(
                [STOIC_BIN, "-w", str(ws_path), *args],
                capture_output=True,
                text=True,
                timeout=120,
                cwd=tmp_path,
                check=False,
            )
            case = f"stoic {args!r}"
            assert done.returncode >= 0, f"{case}: killed by signal {-done.returncode}"
            assert_handled(case, done.returncode, done.stdout, done.stderr)


TOML_VALUES = [
    "9" * 5000,
    "9" * 4000,
    "99999999999999999999",
    "-1",
    "inf",
    "nan",
    "1e999",
    "[" * 3000 + "]" * 3000,
    "{a = " * 500 + "1" + "}" * 500,
    '"\\u001b]0;pwned\\u0007"',
    '"' + "a" * 100_000 + '"',
    "[1, 'a', true]",
    "{}",
    "1979-05-27T07:32:00Z",
    "'(a+)+$'",
    '"["',
]


def test_mutated_settings_files(ws_path: Path) -> None:
    settings = ws_path / "stoic.toml"
    original = settings.read_bytes()
    uncommented = b"\n".join(line.removeprefix(b"# ") for line in original.splitlines())
    rng = random.Random(SEED + 4)
    for number in range(120):
        data = uncommented if rng.random() < 0.7 else original
        if rng.random() < 0.6:
            lines = _lines(data)
            settable = [i for i, line in enumerate(lines) if b" = " in line]
            at = rng.choice(settable)
            key = lines[at].split(b" = ", 1)[0]
            lines[at] = key + b" = " + rng.choice(TOML_VALUES).encode() + b"\n"
            data = b"".join(lines)
        for mutation in [rng.choice(MUTATIONS[:7]) for _ in range(rng.randint(0, 2))]:
            data = mutation(rng, data)
        settings.write_bytes(data)
        bounded_cli(f"settings case {number}", "-w", str(ws_path), "status")
