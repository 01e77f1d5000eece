"""Console benchmarks (`stoic serve`); prints one JSON document.

- with N pending proposals (1,000 by default), the queue page's server time — the app called
  in-process through Starlette's TestClient, no socket — and its HTTP round trip on a real
  uvicorn on 127.0.0.1, next to the 300 ms target;
- an approval through the JSON API on that uvicorn (the POST only; its GET is the showing):
  its HTTP round trip from an httpx client, and its server time (from the request reaching the
  app to its response sent, taken by an ASGI wrapper around the app), next to the same
  approval through the Python API in the same run, interleaved with them so the disk is the
  same for both: the same decision (`ReviewSession.decide` with the seconds it was read: one
  record, in a review session, the rubber-stamping check and the pause asked after it) and the
  bare `queue.decide`; the ratios next to the 2x target.

Usage: python benchmarks/bench_console.py [--proposals N] [--decisions N]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.testclient import TestClient

import stoic
from stoic.server import auth
from stoic.server.app import ServerConfig, create_app
from stoic.server.sessions import Person, Role
from stoic.services import queue, users
from stoic.services.review import ReviewSession


class ServerTime:
    """An ASGI wrapper that times each HTTP request from its call to its last body sent."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.samples: list[float] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()

        async def timed_send(message: Any) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.samples.append(time.perf_counter() - start)

        await self.app(scope, receive, timed_send)


def _propose(ws: stoic.Workspace, count: int) -> list[str]:
    return [
        ws.propose(title=f"Clean cache {n}", reasoning_trace=["disk above 90%"], action=["true"]).id
        for n in range(count)
    ]


def _median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 3)


def _timed(call: Any, repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--proposals", type=int, default=1000)
    parser.add_argument("--decisions", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="stoic-bench-console-") as folder:
        root = Path(folder) / "ws"
        stoic.Workspace.init(root).close()
        (root / "stoic.toml").write_text("[review]\nmin_read_seconds = 0\n")
        with stoic.Workspace.open(root) as ws:
            ids = _propose(ws, args.proposals + 3 * args.decisions)
            users.add(ws, "bench", role="reviewer", actor="human:admin")
        app = create_app(ServerConfig(workspace=root))
        session = app.state.sessions.open(Person("bench", Role.REVIEWER))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        timing = ServerTime(app)
        server = uvicorn.Server(
            uvicorn.Config(timing, host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.02)
        cookies = {auth.COOKIE: session.token}
        try:
            with (
                httpx.Client(base_url=f"http://127.0.0.1:{port}", cookies=cookies) as http,
                TestClient(app, cookies=cookies) as local,
            ):
                local.get("/queue").raise_for_status()  # templates compiled, caches warm
                in_app = _timed(lambda: local.get("/queue").raise_for_status(), 10)
                round_trip = _timed(lambda: http.get("/queue").raise_for_status(), 10)
                api, server_side, same, bare = [], [], [], []
                with stoic.Workspace.open(root) as ws:
                    review = ReviewSession.start(ws, "human:bench")
                    for n in range(args.decisions):
                        by_api, by_review, by_queue = ids[3 * n : 3 * n + 3]
                        shown = http.get(f"/api/proposals/{by_api}").json()["shown"]
                        body = {"decision": "approve", **shown}
                        start = time.perf_counter()
                        http.post(
                            f"/api/proposals/{by_api}/decision",
                            json=body,
                            headers={auth.CSRF_HEADER: session.csrf},
                        ).raise_for_status()
                        api.append(time.perf_counter() - start)
                        server_side.append(timing.samples[-1])
                        queue.get(ws, by_review)  # what the API reads first, as a page shows it
                        start = time.perf_counter()
                        review.decide(by_review, "approved", seconds_spent=5.0)
                        same.append(time.perf_counter() - start)
                        start = time.perf_counter()
                        queue.decide(ws, by_queue, "approved", by="human:bench")
                        bare.append(time.perf_counter() - start)
        finally:
            server.should_exit = True
            thread.join(timeout=30)
            app.state.console.close()
    api_ms, server_ms = _median_ms(api), _median_ms(server_side)
    same_ms, bare_ms = _median_ms(same), _median_ms(bare)
    print(
        json.dumps(
            {
                "pending": args.proposals,
                "queue_page": {
                    "server_ms_median": _median_ms(in_app),
                    "server_time_is": "the app in-process via Starlette's TestClient",
                    "http_round_trip_ms_median": _median_ms(round_trip),
                    "target_ms": 300,
                },
                "approve": {
                    "api_http_round_trip_ms_median": api_ms,
                    "api_server_ms_median": server_ms,
                    "python_same_decision_ms_median": same_ms,
                    "python_queue_decide_ms_median": bare_ms,
                    "ratio_server_to_same_decision": round(server_ms / same_ms, 2),
                    "ratio_round_trip_to_same_decision": round(api_ms / same_ms, 2),
                    "ratio_round_trip_to_queue_decide": round(api_ms / bare_ms, 2),
                    "target_ratio": 2,
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
