"""`stoic serve` killed with -9 while a decision is in flight: the decision is on record whole or
not at all, and a restarted server continues what was decided."""

from __future__ import annotations

import contextlib
import random
import signal
import threading
from pathlib import Path

import httpx
import orjson

from tests.conftest import run_stoic_process
from tests.test_access import _login as login
from tests.test_runner import assert_audit_clean, of_type
from tests.test_serve_control import _until, _until_status, serving

ROUNDS = 8


def _gated(folder: Path, index: int) -> Path:
    plan = folder / f"release-{index}.yaml"
    plan.write_text(
        f"meta: {{name: release-{index}}}\ntasks:\n  - {{id: build, run: ['true']}}\n"
        "  - {id: deploy, run: ['true'], depends_on: [build], approval: required}\n",
        encoding="utf-8",
    )
    return plan


def _login(client: httpx.Client, secret: str) -> str:
    """Log in through the login form; the CSRF token of the session."""
    assert login(client, data={"name": "ana", "secret": secret}).status_code == 303
    token: str = client.get("/api/session").json()["csrf"]
    return token


def test_a_server_killed_mid_decision_records_it_whole_or_not_and_continues_it(
    tmp_path: Path, ws_path: Path
) -> None:
    settings = ws_path / "stoic.toml"
    text = settings.read_text()
    assert "# min_read_seconds = 3.0" in text
    settings.write_text(text.replace("# min_read_seconds = 3.0", "min_read_seconds = 0"))
    added = run_stoic_process(
        "-w", str(ws_path), "users", "add", "ana", "--role", "reviewer", "--as", "root", "--json"
    )
    secret = orjson.loads(added.stdout)["secret"]
    chance = random.Random(1515)
    runs: dict[str, str] = {}  # run id → its proposal id
    for index in range(ROUNDS):
        started = run_stoic_process("-w", str(ws_path), "run", str(_gated(tmp_path, index)),
                                    "--json")  # fmt: skip
        assert started.returncode == 3, started.stderr
        document = orjson.loads(started.stdout)
        runs[document["run_id"]] = document["proposal_ids"][0]
    for proposal_id in runs.values():
        with serving(ws_path) as server:
            client = httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=10)
            with client:
                csrf = _login(client, secret)
                shown = client.get(f"/api/proposals/{proposal_id}").json()["shown"]

                sender = threading.Thread(target=_decide, args=(client, proposal_id, shown, csrf))
                sender.start()
                threading.Event().wait(chance.uniform(0.0, 0.006))
                server.process.send_signal(signal.SIGKILL)
                sender.join(timeout=30)
    approvals = {str(r["proposal_id"]) for r in of_type(ws_path, "proposal", "approved")}
    assert len(of_type(ws_path, "proposal", "approved")) == len(approvals)  # none twice
    assert_audit_clean(ws_path)
    with serving(ws_path):
        for run_id, proposal_id in runs.items():
            if proposal_id in approvals:
                _until_status(ws_path, run_id, "completed")
    for run_id, proposal_id in runs.items():
        if proposal_id not in approvals:
            _until(f"{run_id} still waits", lambda r=run_id: _waits(ws_path, r))
    assert_audit_clean(ws_path)


def _decide(client: httpx.Client, proposal_id: str, shown: dict[str, str], csrf: str) -> None:
    with contextlib.suppress(httpx.TransportError):  # the server dies under it: the point
        client.post(
            f"/api/proposals/{proposal_id}/decision",
            json={"decision": "approve", **shown},
            headers={"X-CSRF-Token": csrf},
        )


def _waits(ws_path: Path, run_id: str) -> bool:
    shown = run_stoic_process("-w", str(ws_path), "status", run_id, "--json")
    return bool(orjson.loads(shown.stdout)["status"] == "awaiting_human")
