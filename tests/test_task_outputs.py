"""Data between tasks: a task's outputs reach its dependents, from the log alone."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest

from stoic.run.task_outputs import retire_inputs, write_inputs
from tests.conftest import STOIC_BIN, log_path, run_cli

TRANSFORM = """
def double(inputs, factor=2):
    return {"items": [n * factor for n in inputs["fetch"]["items"]]}

def produce():
    return {"rows": [1, 2, 3], "name": "made in python"}

def big():
    return {"blob": "x" * 100_000}

def not_a_number():
    return {"ratio": float("nan")}

def huge():
    return "y" * (17 * 1024 * 1024)

def takes(inputs):
    return inputs
"""


def end_records(ws_path: Path, task: str) -> list[dict[str, object]]:
    return [
        r
        for r in map(orjson.loads, log_path(ws_path).read_bytes().splitlines())
        if r["decision_type"] == "execution"
        and r.get("task_id") == task
        and r["decision_outcome"] != "started"
    ]


def run_plan(ws_path: Path, folder: Path, body: str) -> tuple[int, str]:
    (folder / "transform.py").write_text(TRANSFORM)
    (folder / "plan.yaml").write_text(body)
    result = run_cli("-w", str(ws_path), "run", str(folder / "plan.yaml"))
    return result.exit_code, result.stdout + result.stderr


def the_run(ws_path: Path) -> str:
    (run_id,) = [path.name for path in (ws_path / "runs").iterdir()]
    return run_id


def test_a_shell_tasks_outputs_reach_a_python_dependents_inputs(
    tmp_path: Path, ws_path: Path
) -> None:
    code, out = run_plan(
        ws_path,
        tmp_path,
        "tasks:\n"
        "  - id: fetch\n    shell: true\n    run: |\n"
        """      echo '{"outputs": {"items": [1, 2, 3]}}' > "$STOIC_RESULT"\n"""
        "  - {id: transform, call: 'transform:double', params: {factor: 10},"
        " depends_on: [fetch]}\n",
    )
    assert code == 0, out
    (fetched,) = end_records(ws_path, "fetch")
    assert fetched["details"]["outputs"] == {"items": [1, 2, 3]}  # type: ignore[index]
    assert "outputs" not in fetched["details"]["result"]  # type: ignore[index,operator]
    (transformed,) = end_records(ws_path, "transform")
    assert transformed["details"]["outputs"] == {"items": [10, 20, 30]}  # type: ignore[index]


def test_a_python_return_value_reaches_a_shell_dependents_inputs_file(
    tmp_path: Path, ws_path: Path
) -> None:
    code, out = run_plan(
        ws_path,
        tmp_path,
        "tasks:\n"
        "  - {id: produce, call: 'transform:produce'}\n"
        "  - {id: other, run: ['true']}\n"
        "  - id: consume\n    depends_on: [produce, other]\n    shell: true\n"
        "    run: 'cat \"$STOIC_INPUTS\"'\n",
    )
    assert code == 0, out
    log = ws_path / "runs" / the_run(ws_path) / "tasks" / "consume" / "attempt-1.log"
    assert orjson.loads(log.read_bytes()) == {
        "produce": {"rows": [1, 2, 3], "name": "made in python"},
        "other": None,  # a dependency that handed on nothing
    }


def test_big_outputs_go_to_a_file_named_by_its_sha256(tmp_path: Path, ws_path: Path) -> None:
    code, out = run_plan(
        ws_path,
        tmp_path,
        "tasks:\n  - {id: big, call: 'transform:big'}\n"
        "  - {id: takes, call: 'transform:takes', depends_on: [big]}\n",
    )
    assert code == 0, out
    (ended,) = end_records(ws_path, "big")
    details = ended["details"]
    assert isinstance(details, dict) and "outputs" not in details
    file = details["outputs_file"]
    run_id = the_run(ws_path)
    assert file["path"] == f"runs/{run_id}/tasks/big/outputs-1.json"
    data = (ws_path / file["path"]).read_bytes()
    import hashlib

    assert file["sha256"] == hashlib.sha256(data).hexdigest() and file["bytes"] == len(data)
    (took,) = end_records(ws_path, "takes")
    assert took["details"]["outputs_file"]["bytes"] == len(data) + len(b'{"big":}')  # type: ignore[index]


def test_a_changed_outputs_file_fails_the_audit_and_its_dependent(
    tmp_path: Path, ws_path: Path
) -> None:
    code, out = run_plan(
        ws_path,
        tmp_path,
        "tasks:\n  - {id: big, call: 'transform:big'}\n"
        "  - {id: takes, call: 'transform:takes', depends_on: [big], approval: required}\n",
    )
    assert code != 0 and "takes" in out, out  # waits for its approval
    run_id = the_run(ws_path)
    assert run_cli("-w", str(ws_path), "audit").exit_code == 0
    outputs = ws_path / "runs" / run_id / "tasks" / "big" / "outputs-1.json"
    outputs.write_bytes(outputs.read_bytes().replace(b"xxx", b"yyy", 1))
    audit = run_cli("-w", str(ws_path), "audit")
    assert audit.exit_code != 0
    assert "outputs_file_changed" in audit.stdout + audit.stderr
    assert "no longer matches the sha256" in audit.stdout + audit.stderr
    resume = ("resume", "--procedure", "manual-verification", "--reason", "seen", "--as", "ada")
    assert run_cli("-w", str(ws_path), *resume).exit_code == 0  # the failed audit paused it
    resumed = run_cli("-w", str(ws_path), "continue", run_id, "--approve-suggestion", "takes")
    assert resumed.exit_code != 0, resumed.stdout + resumed.stderr
    ends = end_records(ws_path, "takes")
    assert ends and ends[0]["decision_outcome"] == "failed", resumed.stdout + resumed.stderr
    assert "the outputs of big in" in str(ends[0]["decision_reason"])
    assert "no longer match the sha256" in str(ends[0]["decision_reason"])
    outputs.unlink()
    audit = run_cli("-w", str(ws_path), "audit")
    assert audit.exit_code != 0 and "cannot be read" in audit.stdout + audit.stderr


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        ("{id: p, call: 'transform:not_a_number'}", "outputs.ratio is nan, which JSON cannot"),
        ("{id: p, call: 'transform:huge'}", "over the 16 MiB"),
        (
            '{id: p, shell: true, run: \'echo {\\"outputs\\": {\\"n\\":'
            ' 123456789012345678901234567}} > "$STOIC_RESULT"\'}',
            "is past 64 bits",
        ),
    ],
)
def test_outputs_json_cannot_carry_fail_the_task(
    tmp_path: Path, ws_path: Path, task: str, expected: str
) -> None:
    code, out = run_plan(ws_path, tmp_path, f"tasks:\n  - {task}\n")
    assert code != 0, out
    ended = end_records(ws_path, "p")[0]
    assert ended["decision_outcome"] == "failed"
    assert expected in str(ended["decision_reason"]), ended["decision_reason"]


class Api(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        bodies = {"/json": b'{"users": ["ada", "alan"]}', "/big": b'{"id": 18446744073709551616}'}
        body = bodies.get(self.path, b"plain words")
        self.send_response(200)
        self.send_header(
            "Content-Type", "application/json" if self.path in bodies else "text/plain"
        )
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        del format, args


@pytest.fixture
def api_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_an_http_body_is_the_tasks_outputs(tmp_path: Path, ws_path: Path, api_url: str) -> None:
    code, out = run_plan(
        ws_path,
        tmp_path,
        f"tasks:\n  - {{id: users, http: {{url: '{api_url}/json'}}}}\n"
        f"  - {{id: words, http: {{url: '{api_url}/text'}}}}\n"
        "  - {id: takes, call: 'transform:takes', depends_on: [users, words]}\n",
    )
    assert code == 0, out
    (took,) = end_records(ws_path, "takes")
    assert took["details"]["outputs"] == {  # type: ignore[index]
        "users": {"users": ["ada", "alan"]},
        "words": "plain words",
    }


def test_an_http_json_body_with_an_integer_past_64_bits_is_handed_on_as_its_text(
    tmp_path: Path, ws_path: Path, api_url: str
) -> None:
    """Parsed, the integer would become a float: a dependent would get a changed number."""
    code, out = run_plan(
        ws_path,
        tmp_path,
        f"tasks:\n  - {{id: big, http: {{url: '{api_url}/big'}}}}\n"
        "  - {id: takes, call: 'transform:takes', depends_on: [big]}\n",
    )
    assert code == 0, out
    (took,) = end_records(ws_path, "takes")
    assert took["details"]["outputs"] == {"big": '{"id": 18446744073709551616}'}  # type: ignore[index]


CONSUMER = """\
cat "$STOIC_INPUTS" > "{out}/inputs-$STOIC_ATTEMPT.json"
if [ ! -e "{out}/started" ]; then touch "{out}/started"; sleep 60; fi
"""


def test_a_run_continued_after_a_crash_gives_the_same_inputs(tmp_path: Path, ws_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "transform.py").write_text(TRANSFORM)
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "tasks:\n  - {id: big, call: 'transform:big'}\n"
        "  - {id: small, call: 'transform:produce'}\n"
        "  - id: consume\n    depends_on: [big, small]\n    idempotent: true\n    shell: true\n"
        f"    run: {orjson.dumps(CONSUMER.format(out=out)).decode()}\n"
    )
    runner = subprocess.Popen(
        [STOIC_BIN, "-w", str(ws_path), "run", str(plan)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not (out / "started").exists():
        assert time.monotonic() < deadline and runner.poll() is None
        time.sleep(0.05)
    os.kill(runner.pid, signal.SIGKILL)  # the producers' ends are on the log; the runner is gone
    runner.wait()
    resumed = subprocess.run(
        [STOIC_BIN, "-w", str(ws_path), "continue", the_run(ws_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    first = orjson.loads((out / "inputs-1.json").read_bytes())
    assert first["small"] == {"rows": [1, 2, 3], "name": "made in python"}
    assert first["big"] == {"blob": "x" * 100_000}
    assert (out / "inputs-2.json").read_bytes() == (out / "inputs-1.json").read_bytes()
    assert len(end_records(ws_path, "big")) == 1  # not run again


def test_params_may_not_set_the_inputs_parameter(tmp_path: Path, ws_path: Path) -> None:
    code, out = run_plan(
        ws_path, tmp_path, "tasks:\n  - {id: p, call: 'transform:takes', params: {inputs: 1}}\n"
    )
    assert code != 0, out
    assert "`params:` sets `inputs`" in str(end_records(ws_path, "p")[0]["decision_reason"])


def test_an_inputs_file_planted_as_a_link_is_replaced_not_written_through(
    tmp_path: Path, ws_path: Path
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched")
    (tmp_path / "transform.py").write_text(TRANSFORM)
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "tasks:\n  - id: plant\n    shell: true\n"
        f"    run: 'ln -s {victim} $(dirname $STOIC_RESULT)/c.inputs-1.json'\n"
        "  - {id: c, shell: true, run: 'cat \"$STOIC_INPUTS\"', depends_on: [plant]}\n"
    )
    result = run_cli("-w", str(ws_path), "run", str(plan))
    assert result.exit_code == 0, result.stdout + result.stderr
    assert victim.read_text() == "untouched"
    log = ws_path / "runs" / the_run(ws_path) / "tasks" / "c" / "attempt-1.log"
    assert orjson.loads(log.read_bytes()) == {"plant": None}


def test_each_task_of_a_shell_chain_reads_its_own_inputs(tmp_path: Path, ws_path: Path) -> None:
    """An ended attempt's inputs file is written into for the next: each still reads its own."""
    result_line = '      echo \'{"outputs": {"n": %d}}\' > "$STOIC_RESULT"'
    lines = ["tasks:"]
    for i in range(4):
        lines += [f"  - id: t{i}", "    shell: true", "    run: |"]
        if i:
            lines.append('      cat "$STOIC_INPUTS"')
        lines.append(result_line % i)
        if i:
            lines.append(f"    depends_on: [t{i - 1}]")
    plan = tmp_path / "plan.yaml"
    plan.write_text("\n".join(lines) + "\n")
    result = run_cli("-w", str(ws_path), "run", str(plan))
    assert result.exit_code == 0, result.stdout + result.stderr
    run = ws_path / "runs" / the_run(ws_path)
    for i in range(1, 4):
        log = run / "tasks" / f"t{i}" / "attempt-1.log"
        assert orjson.loads(log.read_bytes()) == {f"t{i - 1}": {"n": i - 1}}


def test_a_spare_inputs_file_planted_as_a_hard_link_is_not_written_through(
    tmp_path: Path, ws_path: Path
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched")
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "tasks:\n  - id: plant\n    shell: true\n"
        f"    run: 'ln {victim} $(dirname $STOIC_RESULT)/.inputs.spare'\n"
        "  - {id: c, shell: true, run: 'cat \"$STOIC_INPUTS\"', depends_on: [plant]}\n"
    )
    result = run_cli("-w", str(ws_path), "run", str(plan))
    assert result.exit_code == 0, result.stdout + result.stderr
    assert victim.read_text() == "untouched"
    log = ws_path / "runs" / the_run(ws_path) / "tasks" / "c" / "attempt-1.log"
    assert orjson.loads(log.read_bytes()) == {"plant": None}


def test_an_inputs_file_written_into_the_spare_keeps_nothing_of_the_last(tmp_path: Path) -> None:
    folder = tmp_path / "results"
    folder.mkdir()
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        first, second = folder / "a.inputs-1.json", folder / "b.inputs-1.json"
        write_inputs(tmp_path, first, {"x": "y" * 10_000}, fd)
        retire_inputs(fd, first)
        write_inputs(tmp_path, second, {"x": None}, fd)
    finally:
        os.close(fd)
    assert not first.exists()
    assert orjson.loads(second.read_bytes()) == {"x": None}
    assert sorted(path.name for path in folder.iterdir()) == ["b.inputs-1.json"]
