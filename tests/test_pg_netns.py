"""Workers on hosts of their own, really: each `stoic worker` in a network namespace of its own,
reaching PostgreSQL over TCP through a veth pair, not a local socket; one worker's link cut past
its lease (DESIGN §13). Needs root and `ip netns`.

While its link is down the cut worker is not stopped or told anything: its task runs on and the
call its loop is in hangs until TCP retransmits after the link is back (or gives up, after
`tcp_user_timeout`). Cut past the lease only, that call answers soon after the link comes back;
cut past `tcp_user_timeout`, every connection of the worker is dropped first."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from stoic.store.pg_store import PostgresStore
from tests.postgres import EmbeddedPostgres, started, stopped
from tests.test_pg_workers import (
    Workers,
    _audit_clean,
    _each_attempt_once,
    _ended,
    _records,
    _start,
)

LEASE_S = 2.0


def _ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _why_no_namespaces() -> str | None:
    """Why this machine cannot give workers network namespaces of their own, or None."""
    if os.geteuid() != 0:
        return "network namespaces and veth pairs need root (`ip netns add`); CI runs as root"
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is not installed: no `ip netns` to give each worker a network"
    probe = f"stoic-probe-{secrets.token_hex(3)}"
    try:
        _ip("netns", "add", probe)
    except RuntimeError as exc:
        return f"`ip netns` is unavailable here: {exc}"
    with contextlib.suppress(RuntimeError):
        _ip("netns", "del", probe)
    return None


@dataclass(frozen=True)
class Host:
    """A network namespace joined to the root one by a veth pair on a /30 of its own: the
    server's side is `server_address`, the worker's `address`."""

    netns: str
    outside: str
    """The veth end in the root namespace (the server's side)."""
    inside: str
    server_address: str
    address: str

    def cut(self) -> None:
        """The wire goes: the root namespace's end down, so nothing passes either way and the
        worker's end sees no carrier (no reset, no error: packets vanish)."""
        _ip("link", "set", self.outside, "down")

    def mend(self) -> None:
        _ip("link", "set", self.outside, "up")


def _free_prefix() -> str:
    """A 10.N. prefix no address or route of this machine is in."""
    taken = _ip("-4", "addr", "show") + _ip("-4", "route", "show", "table", "all")
    for _ in range(100):
        prefix = f"10.{secrets.randbelow(150) + 100}."
        if prefix not in taken:
            return prefix
    raise RuntimeError("no free 10.N.0.0/16 on this machine")


@pytest.fixture
def hosts() -> Iterator[list[Host]]:
    """Two worker hosts, their namespaces and links named uniquely for this run and removed
    afterwards whatever happened."""
    why = _why_no_namespaces()
    if why is not None:
        pytest.skip(why)
    tag = secrets.token_hex(3)
    prefix = _free_prefix()
    made: list[Host] = []
    try:
        for number, letter in enumerate("ab", start=1):
            host = Host(
                f"stoic-{tag}-{letter}",
                f"sto{tag}{letter}",
                f"sti{tag}{letter}",
                f"{prefix}{number}.1",
                f"{prefix}{number}.2",
            )
            _ip("netns", "add", host.netns)
            made.append(host)
            _ip("link", "add", host.outside, "type", "veth", "peer", "name", host.inside)
            _ip("link", "set", host.inside, "netns", host.netns)
            _ip("addr", "add", f"{host.server_address}/30", "dev", host.outside)
            _ip("link", "set", host.outside, "up")
            _ip("-n", host.netns, "addr", "add", f"{host.address}/30", "dev", host.inside)
            _ip("-n", host.netns, "link", "set", host.inside, "up")
            _ip("-n", host.netns, "link", "set", "lo", "up")
        yield made
    finally:
        for host in made:  # a link never made, or gone with its namespace, is no error
            for args in (("link", "del", host.outside), ("netns", "del", host.netns)):
                with contextlib.suppress(RuntimeError):
                    _ip(*args)


@pytest.fixture
def server(hosts: list[Host]) -> Iterator[EmbeddedPostgres]:
    """A server of this test's own, on its socket and on each host's link (the session's one
    listens on its socket only, and the links did not exist when it started)."""
    postgres = started(
        listen=[host.server_address for host in hosts],
        clients=[f"{host.address}/32" for host in hosts],
    )
    try:
        yield postgres
    finally:
        stopped(postgres)


@pytest.fixture
def db(server: EmbeddedPostgres) -> str:
    url = server.new_database()
    PostgresStore.migrate(url)
    return url


class HostWorkers(Workers):
    """`stoic worker` processes, each in its host's namespace, reaching the server over TCP."""

    def __init__(self, server: EmbeddedPostgres, url: str, folder: Path) -> None:
        super().__init__(url, folder)
        self.server = server
        self.database = urlsplit(url).path.lstrip("/")

    def start_on(self, host: Host) -> int:
        url = self.server.tcp_url(host.server_address, self.database)
        prefix = ("ip", "netns", "exec", host.netns)
        return self.start(lease=LEASE_S, poll=0.2, concurrency=2, url=url, prefix=prefix)

    def stop_all(self, wait_s: float = 45.0) -> None:
        super().stop_all(wait_s)  # one blocked on a dead link answers when TCP gives up


@pytest.fixture
def workers(server: EmbeddedPostgres, db: str, tmp_path: Path) -> Iterator[HostWorkers]:
    group = HostWorkers(server, db, tmp_path)
    try:
        yield group
    finally:
        group.stop_all()


def _record_where(
    url: str,
    run_id: str,
    what: Callable[[dict[str, object]], bool],
    workers: HostWorkers,
    timeout: float = 30.0,
) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in _records(url, run_id):
            if what(record):
                return record
        time.sleep(0.05)
    said = "\n".join(f"worker {i}:\n{workers.said(i)}" for i in range(len(workers.procs)))
    raise AssertionError(f"no such record of {run_id} in {timeout}s; the workers said:\n{said}")


def _started(attempt: int) -> Callable[[dict[str, object]], bool]:
    return lambda r: (
        r["decision_type"] == "execution"
        and r["decision_outcome"] == "started"
        and r["attempt"] == attempt
    )


def _inputs(record: dict[str, object]) -> dict[str, object]:
    inputs = record["decision_inputs"]
    return inputs if isinstance(inputs, dict) else {}


def _worker_of(record: dict[str, object]) -> str:
    return str(_inputs(record)["worker"])


PAST_THE_LEASE = 2 * LEASE_S
"""At least this long, and until the other worker has started the retry."""
PAST_THE_SOCKETS = 34.0
"""Longer than `tcp_user_timeout` (30 s, `stoic.store.pg_driver.CONNECTION`): every connection
of the cut worker, its LISTEN one too, is dropped by its kernel before the link comes back."""


@pytest.mark.parametrize(
    "cut_s",
    [
        pytest.param(PAST_THE_LEASE, id="past-the-lease"),
        pytest.param(PAST_THE_SOCKETS, id="past-the-sockets"),
    ],
)
def test_a_worker_cut_off_past_its_lease_is_taken_over_and_its_late_end_refused(
    cut_s: float, hosts: list[Host], db: str, workers: HostWorkers, tmp_path: Path
) -> None:
    side = tmp_path / "executions"
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "meta: {name: cut}\ntasks:\n"
        "  - id: slow\n"
        "    idempotent: true\n"
        f"    run: [sh, -c, 'echo $STOIC_ATTEMPT >> {side}; sleep 8; echo done >> {side}']\n"
    )
    run_id = _start(db, plan)
    first = workers.start_on(hosts[0])
    started = _record_where(db, run_id, _started(1), workers)
    assert f" pid {workers.procs[first].pid} " in _worker_of(started)
    hosts[0].cut()  # the worker is left as it is: its task runs on, its calls hang
    cut_at = time.monotonic()
    try:
        second = workers.start_on(hosts[1])
        retried = _record_where(db, run_id, _started(2), workers)
        assert f" pid {workers.procs[second].pid} " in _worker_of(retried)
        time.sleep(max(0.0, cut_at + cut_s - time.monotonic()))
    finally:
        hosts[0].mend()
    fence = _inputs(started)["fence"]
    late = workers.procs[first]
    deadline = time.monotonic() + 45  # a call on the cut link answers at TCP's next retry
    while (
        "refused: the end of" not in workers.said(first)
        and late.poll() is None
        and time.monotonic() < deadline
    ):
        time.sleep(0.2)
    said = workers.said(first)
    assert f"refused: the end of {run_id} slow attempt 1 (fence {fence})" in said, said
    end = _ended(db, run_id, timeout=30)
    assert end["decision_outcome"] == "completed"
    records = _records(db, run_id)
    _each_attempt_once(records)
    interrupted = [r for r in records if r["decision_outcome"] == "interrupted"]
    assert len(interrupted) == 1 and interrupted[0]["attempt"] == 1
    fenced = [r for r in records if _inputs(r).get("fence") == fence]
    assert [r["decision_outcome"] for r in fenced] == ["started", "interrupted"]
    assert _worker_of(interrupted[0]) == _worker_of(started)  # the late end: never recorded
    assert "ran out" in str(interrupted[0]["decision_reason"])
    evaluation = next(r for r in records if r["decision_type"] == "recovery_evaluation")
    assert evaluation["decision_outcome"] == "recovery_applied"  # idempotent: one retry
    assert f"took over {run_id} slow attempt 1" in workers.said(second)
    succeeded = [r for r in records if r["decision_outcome"] == "succeeded"]
    assert [(r["attempt"], _worker_of(r)) for r in succeeded] == [(2, _worker_of(retried))]
    time.sleep(max(0.0, cut_at + 8.5 - time.monotonic()))  # attempt 1 would have ended by now
    assert side.read_text().split() == ["1", "2", "done"], "attempt 1 was stopped by its worker"
    assert f"lost the lease of {run_id} slow attempt 1" in said  # by its own clock, while cut
    time.sleep(0.5)  # the worker's loop goes round once more with the link back
    assert late.poll() is None, f"a cut link stops no worker:\n{workers.said(first)}"
    _audit_clean(db)
