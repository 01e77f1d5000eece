"""The control plane of `stoic serve`, end to end: a real server subprocess on a free port
continues runs by itself when what they wait for is decided in another process, takes up a
run whose runner was killed, stops its runners on SIGTERM, and serves /metrics.

Every wait below polls for an effect; its bound is a hang guard, not a timing threshold."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import orjson
import pytest

import stoic
from stoic.cli.serve_command import exposed_warning
from stoic.run import decisions as made
from stoic.server.control import ControlPlane
from stoic.services import audit as audits
from tests.conftest import STOIC_BIN, run_cli, run_stoic_process
from tests.test_runner import assert_audit_clean, of_type, only_run, records, write_plan
from tests.test_serve import _free_port

GUARD = 60.0
"""How long a test waits for an effect before it calls the server hung."""

GATED = """
meta: {name: release}
tasks:
  - id: build
    run: ["sh", "-c", "echo built >> steps"]
  - id: deploy
    run: ["sh", "-c", "echo deployed >> steps"]
    depends_on: [build]
    approval: required
  - id: announce
    run: ["sh", "-c", "echo announced >> steps"]
    depends_on: [deploy]
"""


def _until(what: str, check: Callable[[], object]) -> object:
    deadline = time.monotonic() + GUARD
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"still waiting after {GUARD:g} s: {what}"
        time.sleep(0.05)


class Server:
    def __init__(self, process: subprocess.Popen[bytes], port: int, err: Path) -> None:
        self.process, self.port, self.err = process, port, err

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=10)

    def stderr(self) -> str:
        return self.err.read_text()


@contextmanager
def serving(workspace: Path, *extra: str) -> Iterator[Server]:
    port = _free_port()
    err = workspace.parent / f"serve-{port}.err"
    with err.open("wb") as sink:
        process = subprocess.Popen(
            [STOIC_BIN, "-w", str(workspace), "serve", "--port", str(port), *extra],
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    server = Server(process, port, err)
    try:

        def answers() -> bool:
            assert process.poll() is None, server.stderr()
            try:
                return server.get("/healthz").status_code == 200
            except httpx.TransportError:
                return False

        _until("the server answers /healthz", answers)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        process.wait(timeout=GUARD)


def _status(workspace: Path, run_id: str) -> str:
    shown = run_stoic_process("-w", str(workspace), "status", run_id, "--json")
    return str(orjson.loads(shown.stdout)["status"])


def _until_status(workspace: Path, run_id: str, wanted: str) -> None:
    _until(f"run {run_id} {wanted}", lambda: _status(workspace, run_id) == wanted)


def _surveyed_twice(server: Server) -> bool:
    samples = _parse_exposition(server.get("/metrics").text)
    return samples["stoic_control_surveys_total"] >= 2


def _steps(tmp_path: Path) -> list[str]:
    path = tmp_path / "steps"
    return path.read_text().split() if path.is_file() else []


def test_an_approval_from_another_process_continues_the_run_by_itself(
    tmp_path: Path, ws_path: Path
) -> None:
    plan = write_plan(tmp_path, GATED)
    assert run_stoic_process("-w", str(ws_path), "run", str(plan)).returncode == 3
    run_id = only_run(ws_path)
    (created,) = of_type(ws_path, "proposal", "created")
    with serving(ws_path) as server:
        approved = run_stoic_process(
            "-w", str(ws_path), "approve", str(created["proposal_id"]), "--as", "ada"
        )
        assert approved.returncode == 0, approved.stderr
        _until_status(ws_path, run_id, "completed")
        assert f"continuing {run_id}" in server.stderr()
    assert server.process.returncode == 0, server.stderr()
    assert _steps(tmp_path) == ["built", "deployed", "announced"]
    for record in of_type(ws_path, "run_lifecycle"):
        assert not str(record["actor"]).startswith("human:")
    assert_audit_clean(ws_path)


def test_a_run_left_as_it_ended_is_not_taken_up(tmp_path: Path, ws_path: Path) -> None:
    plan = write_plan(tmp_path, GATED)
    assert run_stoic_process("-w", str(ws_path), "run", str(plan)).returncode == 3
    before = of_type(ws_path, "run_lifecycle")
    with serving(ws_path) as server:
        _until("the server surveyed the runs twice", lambda: _surveyed_twice(server))
    assert of_type(ws_path, "run_lifecycle") == before
    assert "continuing" not in server.stderr()


ASK_SCRIPT = """\
if [ -n "$STOIC_GUIDANCE" ]; then echo "$STOIC_GUIDANCE" > guidance.txt; exit 0; fi
cat > "$STOIC_RESULT" <<'JSON'
{"escalate": {"mode": "ambiguity", "question": "Which database should the import use?"}}
JSON
"""
ASKS = """
tasks:
  - id: pick
    run: ["sh", "ask.sh"]
  - id: after
    run: ["sh", "-c", "echo after >> steps"]
    depends_on: [pick]
"""


def test_an_answered_escalation_continues_the_run_by_itself(tmp_path: Path, ws_path: Path) -> None:
    (tmp_path / "ask.sh").write_text(ASK_SCRIPT)
    plan = write_plan(tmp_path, ASKS)
    assert run_stoic_process("-w", str(ws_path), "run", str(plan)).returncode == 3
    run_id = only_run(ws_path)
    with serving(ws_path):
        answered = run_stoic_process(
            "-w", str(ws_path), "escalations", "answer", "ESC-001", "--decision", "routed",
            "--note", "use pg",
        )  # fmt: skip
        assert answered.returncode == 0, answered.stderr
        _until_status(ws_path, run_id, "completed")
    assert (tmp_path / "guidance.txt").read_text().strip() == "use pg"
    assert _steps(tmp_path) == ["after"]
    assert_audit_clean(ws_path)


HELD = """
tasks:
  - id: first
    run: ["sh", "-c", "touch started; while [ ! -f go ]; do sleep 0.05; done"]
  - id: second
    run: ["sh", "-c", "echo second >> steps"]
    depends_on: [first]
"""


def test_a_resumed_workspace_continues_the_run_its_pause_stopped(
    tmp_path: Path, ws_path: Path
) -> None:
    plan = write_plan(tmp_path, HELD)
    runner = subprocess.Popen(
        [STOIC_BIN, "-w", str(ws_path), "run", str(plan)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _until("the first task started", (tmp_path / "started").is_file)
    stop = run_stoic_process("-w", str(ws_path), "stop", "--reason", "checking", "--as", "ada")
    assert stop.returncode == 0, stop.stderr
    (tmp_path / "go").touch()
    runner.wait(timeout=GUARD)
    run_id = only_run(ws_path)
    assert _status(ws_path, run_id) == "paused"
    with serving(ws_path) as server:
        _until("the server surveyed the runs twice", lambda: _surveyed_twice(server))
        assert _parse_exposition(server.get("/metrics").text)["stoic_paused"] == 1
        assert _status(ws_path, run_id) == "paused"  # a paused workspace continues nothing
        resumed = run_stoic_process(
            "-w", str(ws_path), "resume", "--procedure", "smaller-batch", "--batch-size", "5",
            "--reason", "checked", "--as", "ada",
        )  # fmt: skip
        assert resumed.returncode == 0, resumed.stderr
        _until_status(ws_path, run_id, "completed")
    assert _steps(tmp_path) == ["second"]
    assert_audit_clean(ws_path)


FAST = "[recovery]\ntimeout_retry_delay_seconds = 0.1\nunavailable_retry_delay_seconds = 0.1\n"


def _story(ws_path: Path, task: str) -> list[str]:
    lines = (ws_path / "logs" / "decision_log.ndjson").read_bytes().splitlines()
    records = [orjson.loads(line) for line in lines]
    return [
        f"{r['decision_type']}/{r['decision_outcome']}"
        for r in records
        if r.get("task_id") == task and r["decision_type"] in ("execution", "recovery_evaluation")
    ]


def _alive(pid: int) -> bool:
    """Running, or stopped: a killed process nobody has reaped yet (a zombie) is not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize("idempotent", [True, False])
def test_a_run_whose_runner_was_killed_is_continued_per_the_recovery_matrix(
    tmp_path: Path, ws_path: Path, idempotent: bool
) -> None:
    (ws_path / "stoic.toml").write_text(FAST)
    script = "if [ -f done ]; then exit 0; fi; touch done; echo $$ > task.pid; exec sleep 60"
    plan = write_plan(
        tmp_path,
        f'tasks:\n  - id: t\n    run: ["sh", "-c", "{script}"]\n'
        f"    idempotent: {'true' if idempotent else 'false'}\n",
    )
    with serving(ws_path):
        runner = subprocess.Popen(
            [STOIC_BIN, "-w", str(ws_path), "run", str(plan)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        pid_file = tmp_path / "task.pid"
        _until("the task started", lambda: pid_file.is_file() and pid_file.read_text())
        runner.send_signal(signal.SIGKILL)
        runner.wait(timeout=GUARD)
        run_id = only_run(ws_path)
        _until_status(ws_path, run_id, "completed" if idempotent else "failed")
    assert not _alive(int(pid_file.read_text()))
    if idempotent:
        assert _story(ws_path, "t") == [
            "execution/started",
            "execution/interrupted",
            "recovery_evaluation/recovery_applied",
            "execution/started",
            "execution/succeeded",
        ]
    else:  # a person decides: `stoic retry` runs it again, nobody else does
        assert _story(ws_path, "t") == [
            "execution/started",
            "execution/interrupted",
            "recovery_evaluation/recovery_skipped",
        ]
    assert_audit_clean(ws_path)


LONG = """
meta: {name: long}
tasks:
  - id: gate
    run: ["true"]
    approval: required
  - id: long
    run: ["sh", "-c", "touch started; exec sleep 60"]
    idempotent: true
    depends_on: [gate]
"""


def test_sigterm_stops_the_runners_which_record_their_attempts_interrupted(
    tmp_path: Path, ws_path: Path
) -> None:
    plan = write_plan(tmp_path, LONG)
    assert run_stoic_process("-w", str(ws_path), "run", str(plan)).returncode == 3
    run_id = only_run(ws_path)
    (created,) = of_type(ws_path, "proposal", "created")
    with serving(ws_path) as server:
        approved = run_stoic_process("-w", str(ws_path), "approve", str(created["proposal_id"]))
        assert approved.returncode == 0, approved.stderr
        _until("the long task started", (tmp_path / "started").is_file)
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=GUARD) == 0, server.stderr()
    assert "execution/interrupted" in _story(ws_path, "long")
    assert _status(ws_path, run_id) == "interrupted"
    (tmp_path / "started").unlink()
    with serving(ws_path) as again:  # a stop is a decision: a person continues the run
        _until("the server surveyed the runs twice", lambda: _surveyed_twice(again))
    assert _status(ws_path, run_id) == "interrupted"
    assert not (tmp_path / "started").exists()
    assert_audit_clean(ws_path)


def test_two_servers_on_one_workspace_run_a_run_once(tmp_path: Path, ws_path: Path) -> None:
    plan = write_plan(tmp_path, GATED)
    assert run_stoic_process("-w", str(ws_path), "run", str(plan)).returncode == 3
    run_id = only_run(ws_path)
    (created,) = of_type(ws_path, "proposal", "created")
    with serving(ws_path), serving(ws_path):
        approved = run_stoic_process("-w", str(ws_path), "approve", str(created["proposal_id"]))
        assert approved.returncode == 0, approved.stderr
        _until_status(ws_path, run_id, "completed")
    assert _steps(tmp_path) == ["built", "deployed", "announced"]
    deploys = [r for r in of_type(ws_path, "execution", "started") if r["task_id"] == "deploy"]
    assert len(deploys) == 1
    assert_audit_clean(ws_path)


def test_a_second_runner_of_a_held_run_is_refused_by_its_lock(
    tmp_path: Path, ws_path: Path
) -> None:
    plan = write_plan(tmp_path, HELD)
    runner = subprocess.Popen(
        [STOIC_BIN, "-w", str(ws_path), "run", str(plan)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _until("the first task started", (tmp_path / "started").is_file)
        second = run_stoic_process("-w", str(ws_path), "continue", only_run(ws_path))
        assert second.returncode != 0
        assert "being run by another stoic process" in second.stderr
    finally:
        (tmp_path / "go").touch()
        runner.wait(timeout=GUARD)
    assert runner.returncode == 0


def _parse_exposition(text: str) -> dict[str, float]:
    """Prometheus text format 0.0.4: HELP and TYPE before each metric's samples."""
    samples: dict[str, float] = {}
    typed: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("gauge", "counter")
            typed.add(name)
            continue
        name_labels, value = line.rsplit(" ", 1)
        assert name_labels.split("{")[0] in typed, line
        samples[name_labels] = float(value)
    return samples


def test_metrics_are_prometheus_text_and_count_what_the_log_holds(
    tmp_path: Path, ws_path: Path
) -> None:
    plan = write_plan(tmp_path, GATED)
    assert run_stoic_process("-w", str(ws_path), "run", str(plan)).returncode == 3
    with stoic.Workspace.open(ws_path) as workspace:
        assert audits.audit(workspace, actor="human:olga", record=True).report.ok
        last = audits.last_audit(workspace)
    assert last is not None
    with serving(ws_path) as server:
        answer = server.get("/metrics")  # no login: counts only
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
        samples = _parse_exposition(answer.text)
        records = server.get("/healthz").json()["records"]
    assert samples['stoic_runs{status="awaiting_human"}'] == 1
    assert samples['stoic_runs{status="completed"}'] == 0
    assert samples["stoic_pending_proposals"] == 1
    assert samples["stoic_open_escalations"] == 0
    assert samples["stoic_paused"] == 0
    assert samples["stoic_records"] == records
    assert samples["stoic_last_audit_ok"] == 1  # the one the audit page shows
    assert samples["stoic_last_audit_seq"] == last.seq


def test_metrics_are_counted_once_per_log_head_however_many_ask(
    tmp_path: Path, ws_path: Path
) -> None:
    plan = write_plan(tmp_path, GATED)
    assert run_stoic_process("-w", str(ws_path), "run", str(plan)).returncode == 3
    with serving(ws_path) as server, ThreadPoolExecutor(max_workers=20) as pool:
        crowd = [_parse_exposition(a.text) for a in pool.map(server.get, ["/metrics"] * 40)]
        computed = {samples["stoic_metrics_computed_total"] for samples in crowd}
        assert computed == {1}, computed  # each answer after the one count, none before it
        head = {samples["stoic_records"] for samples in crowd}
        added = run_stoic_process("-w", str(ws_path), "users", "add", "ivy", "--role", "admin")
        assert added.returncode == 0
        moved = _parse_exposition(server.get("/metrics").text)
    assert {moved["stoic_records"] - 1} == head  # the head moved: counted again
    assert moved["stoic_metrics_computed_total"] == 2


def test_serving_beyond_loopback_without_tls_warns() -> None:
    assert exposed_warning("127.0.0.1", tls=False, behind_proxy=False) is None
    assert exposed_warning("::1", tls=False, behind_proxy=False) is None
    assert exposed_warning("localhost", tls=False, behind_proxy=False) is None
    assert exposed_warning("0.0.0.0", tls=True, behind_proxy=False) is None
    assert exposed_warning("0.0.0.0", tls=False, behind_proxy=True) is None
    warned = exposed_warning("0.0.0.0", tls=False, behind_proxy=False)
    assert warned is not None and "\n" not in warned and "--tls-cert" in warned


def test_a_tls_certificate_without_its_key_is_refused(ws_path: Path) -> None:
    result = run_cli("-w", str(ws_path), "serve", "--tls-cert", "cert.pem")
    assert result.exit_code != 0
    assert "--tls-cert and --tls-key go together" in result.stderr


FLAKY = """
tasks:
  - id: flaky
    run: ["sh", "-c", "if [ -f fixed ]; then echo flaky >> steps; else exit 1; fi"]
  - id: after
    run: ["sh", "-c", "echo after >> steps"]
    depends_on: [flaky]
"""


def test_a_retry_another_interface_recorded_is_picked_up(tmp_path: Path, ws_path: Path) -> None:
    plan = write_plan(tmp_path, FLAKY)
    assert run_stoic_process("-w", str(ws_path), "run", str(plan)).returncode == 1
    run_id = only_run(ws_path)
    (failed,) = [r for r in of_type(ws_path, "execution", "failed") if r["task_id"] == "flaky"]
    (tmp_path / "fixed").touch()
    with serving(ws_path):
        # What the console records for a person's retry: the decision alone, no runner.
        with stoic.Workspace.open(ws_path) as workspace:
            workspace.record_many(
                [
                    made.retry_decision(
                        run_id,
                        "flaky",
                        "human:ada",
                        "the disk is fixed",
                        attempt=int(str(failed["attempt"])),
                        attempt_id=str(failed["attempt_id"]),
                        failure_kind=None,
                    )
                ]
            )
        _until_status(ws_path, run_id, "completed")
    assert _steps(tmp_path) == ["flaky", "after"]
    assert_audit_clean(ws_path)


def test_the_loop_calls_its_periodic_duties(ws_path: Path) -> None:
    called: list[int] = []
    plane = ControlPlane(ws_path, duties=[lambda: called.append(1)])
    plane.start()
    try:
        _until("the duty was called twice", lambda: len(called) >= 2)
    finally:
        plane.stop()
    assert plane.surveys >= 1


def test_serving_over_tls_with_a_certificate_and_its_key(tmp_path: Path, ws_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made_cert = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        capture_output=True,
        check=False,
    )  # fmt: skip
    assert made_cert.returncode == 0, made_cert.stderr
    port = _free_port()
    server = subprocess.Popen(
        [STOIC_BIN, "-w", str(ws_path), "serve", "--port", str(port),
         "--tls-cert", str(cert), "--tls-key", str(key)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:

        def answers() -> bool:
            assert server.poll() is None
            try:
                url = f"https://127.0.0.1:{port}/healthz"
                trusted = ssl.create_default_context(cafile=str(cert))
                return httpx.get(url, verify=trusted, timeout=10).status_code == 200
            except httpx.TransportError:
                return False

        _until("the server answers over TLS", answers)
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=GUARD) == 0


def _runner_gone(tmp_path: Path, ws_path: Path) -> str:
    """A run whose runner and task were killed with -9: the log leaves it going, no lease held."""
    script = "echo $$ > task.pid; exec sleep 60"
    plan = write_plan(tmp_path, f'tasks:\n  - id: t\n    run: ["sh", "-c", "{script}"]\n')
    runner = subprocess.Popen(
        [STOIC_BIN, "-w", str(ws_path), "run", str(plan)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    pid_file = tmp_path / "task.pid"
    _until("the task started", lambda: pid_file.is_file() and pid_file.read_text())
    runner.send_signal(signal.SIGKILL)
    runner.wait(timeout=GUARD)
    task = int(pid_file.read_text())
    with contextlib.suppress(ProcessLookupError):
        os.kill(task, signal.SIGKILL)
    _until("the task is gone", lambda: not _alive(task))
    return only_run(ws_path)


def test_a_run_its_runners_leave_as_it_was_is_retried_after_a_growing_wait(
    tmp_path: Path, ws_path: Path
) -> None:
    """Every runner of the run exits at once recording nothing (refused, say) while the log
    moves on every turn: the next runner waits 5, 10, 20, 40 s, then 60 at most."""
    run_id = _runner_gone(tmp_path, ws_path)
    clock = [0.0]
    spawned: list[float] = []

    def refused(workspace: Path, run: str) -> list[str]:
        assert run == run_id
        spawned.append(clock[0])
        return [sys.executable, "-c", "raise SystemExit(2)"]

    plane = ControlPlane(ws_path, clock=lambda: clock[0], command=refused)
    plan = write_plan(tmp_path, 'tasks:\n  - {id: other, run: ["true"]}\n', name="other.yaml")
    with stoic.Workspace.open(ws_path) as workspace:
        for second in range(200):
            clock[0] = float(second)
            # Another run's records move the log's head on every turn.
            run_cli(
                "-w",
                str(ws_path),
                "schedule",
                "add",
                f"s{second}",
                "--cron",
                "0 2 * * *",
                str(plan),
                "--as",
                "ann",
            )
            plane.turn(workspace)
            for runner in list(plane.runners.values()):
                runner.process.wait(timeout=GUARD)
    assert spawned == [0.0, 6.0, 17.0, 38.0, 79.0, 140.0]
    assert of_type(ws_path, "run_lifecycle", "continued") == []


def test_stop_signals_the_runners_first_and_waits_no_longer_than_its_grace(ws_path: Path) -> None:
    """A duty that never returns holds the loop: stop() still stops the runner (killed after
    the grace, as it ignores SIGTERM) and returns."""
    plane = ControlPlane(ws_path, grace=0.5)
    entered, release = threading.Event(), threading.Event()

    def blocked() -> None:
        entered.set()
        release.wait()

    plane.duties.append(blocked)
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
    plane.adopt("run-20261202-020000-abc123", [sys.executable, "-c", stubborn])
    (runner,) = plane.runners.values()
    plane.start()
    try:
        assert entered.wait(GUARD)
        stopping = threading.Thread(target=plane.stop, daemon=True)
        stopping.start()
        stopping.join(GUARD)
        assert not stopping.is_alive(), "stop() waited on the loop's blocked duty"
        assert runner.process.poll() is not None
    finally:
        release.set()
        if runner.process.poll() is None:
            runner.process.kill()


def test_a_server_on_a_busy_port_exits_in_one_line_and_records_nothing(
    tmp_path: Path, ws_path: Path
) -> None:
    """Nothing is started before the port is held: no runner is started, or signalled, for
    the run whose runner is gone."""
    _runner_gone(tmp_path, ws_path)
    before = len(records(ws_path))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [STOIC_BIN, "-w", str(ws_path), "serve", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=GUARD,
        )
    assert done.returncode != 0
    assert done.stderr.splitlines() == [
        f"stoic: error: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]
    assert len(records(ws_path)) == before


def test_an_open_pages_live_updates_do_not_hold_back_sigterm(ws_path: Path) -> None:
    """A browser tab left open streams the log's head for 25 s at a time; SIGTERM cuts the
    stream after a short grace, so the runners' stop is not held back by it."""
    from tests.test_access import _login

    added = run_stoic_process(
        "-w", str(ws_path), "users", "add", "ana", "--role", "reviewer", "--as", "root", "--json"
    )
    secret = orjson.loads(added.stdout)["secret"]
    with serving(ws_path) as server:
        client = httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=30)
        with client:
            assert _login(client, data={"name": "ana", "secret": secret}).status_code == 303
            with client.stream("GET", "/events?after=0") as stream:
                assert stream.status_code == 200
                began = time.monotonic()
                server.process.send_signal(signal.SIGTERM)
                server.process.wait(timeout=GUARD)
                stopped = time.monotonic() - began
    assert server.process.returncode == 0, server.stderr()
    assert stopped < 20, f"the open stream held the stop for {stopped:.1f} s"  # it lasts 25 s
