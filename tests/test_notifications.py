"""Notifications (DESIGN §11) against a real local HTTP server, and completion summaries."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stoic.core.summaries import summarize
from tests.conftest import log_path, run_cli
from tests.test_recovery_runs import audit_clean, records_of


class Hook(BaseHTTPRequestHandler):
    """Answers POSTs by the path: /ok → 200, /fail → 500, /hang → never (until released)."""

    received: ClassVar[list[tuple[str, dict[str, object]]]] = []
    release = threading.Event()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        Hook.received.append((self.path, orjson.loads(body)))
        if self.path == "/hang":
            Hook.release.wait(120)
            return
        self.send_response(500 if self.path == "/fail" else 200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        del format, args


@pytest.fixture
def hook_url() -> Iterator[str]:
    Hook.received.clear()
    Hook.release.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    Hook.release.set()
    server.shutdown()
    server.server_close()


def configure(ws: Path, notifiers: str) -> None:
    (ws / "stoic.toml").write_text(notifiers)


def run(ws: Path, folder: Path, plan: str) -> tuple[int, str, str]:
    (folder / "plan.yaml").write_text(plan)
    result = run_cli("-w", str(ws), "run", str(folder / "plan.yaml"))
    return result.exit_code, result.stdout, result.stderr


FAILING = (
    "tasks:\n  - {id: build, run: ['false']}\n"
    "  - {id: test, run: ['true'], depends_on: [build]}\n"
    "  - {id: ship, run: ['true'], depends_on: [test]}\n"
)


def notices(ws: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in (ws / "notices.ndjson").read_bytes().splitlines()]


def test_a_failed_run_notifies_with_the_blocked_list(tmp_path: Path, ws_path: Path) -> None:
    configure(ws_path, '[[notifiers]]\nkind = "file"\npath = "notices.ndjson"\n')
    assert run(ws_path, tmp_path, FAILING)[0] == 1
    (notice,) = notices(ws_path)
    assert notice["event"] == "run_failed"
    assert notice["data"]["blocked"] == {"test": ["build"], "ship": ["build"]}  # type: ignore[index]
    assert "ship is blocked by build" in notice["lines"]  # type: ignore[operator]
    (sent,) = [
        r
        for r in map(orjson.loads, log_path(ws_path).read_bytes().splitlines())
        if r["decision_type"] == "notification"
    ]
    assert sent["decision_outcome"] == "sent"
    audit_clean(ws_path)


def test_a_slack_webhook_gets_a_slack_payload(tmp_path: Path, ws_path: Path, hook_url: str) -> None:
    configure(
        ws_path,
        f'[[notifiers]]\nkind = "webhook"\nurl = "{hook_url}/ok"\nformat = "slack"\n'
        'events = ["run_completed"]\n',
    )
    assert run(ws_path, tmp_path, "tasks:\n  - {id: a, run: ['true']}\n")[0] == 0
    ((path, body),) = Hook.received
    assert path == "/ok"
    assert str(body["text"]).startswith(":white_check_mark: run completed: Run run-")
    assert body["blocks"][0]["type"] == "section"  # type: ignore[index]


def test_events_are_filtered(tmp_path: Path, ws_path: Path, hook_url: str) -> None:
    configure(
        ws_path, f'[[notifiers]]\nkind = "webhook"\nurl = "{hook_url}/ok"\nevents = ["paused"]\n'
    )
    assert run(ws_path, tmp_path, "tasks:\n  - {id: a, run: ['true']}\n")[0] == 0
    assert Hook.received == []
    assert run_cli("-w", str(ws_path), "stop", "--reason", "checking the deploy").exit_code == 0
    ((_, body),) = Hook.received
    assert body["event"] == "paused" and "checking the deploy" in str(body["text"])


def test_a_webhook_that_answers_500_is_recorded_and_the_run_goes_on(
    tmp_path: Path, ws_path: Path, hook_url: str
) -> None:
    configure(ws_path, f'[[notifiers]]\nkind = "webhook"\nurl = "{hook_url}/fail"\n')
    assert run(ws_path, tmp_path, FAILING)[0] == 1
    (failed,) = records_of_type(ws_path, "notification", "failed")
    assert "the webhook answered HTTP 500" in str(failed["decision_reason"])
    audit_clean(ws_path)


def test_a_webhook_that_never_answers_costs_only_its_timeout(
    tmp_path: Path, ws_path: Path, hook_url: str
) -> None:
    configure(ws_path, f'[[notifiers]]\nkind = "webhook"\nurl = "{hook_url}/hang"\ntimeout = 0.5\n')
    started = time.monotonic()
    assert run(ws_path, tmp_path, "tasks:\n  - {id: a, run: ['true']}\n")[0] == 0
    assert time.monotonic() - started < 60  # not the 120 s the server would have taken
    (failed,) = records_of_type(ws_path, "notification", "failed")
    assert "ReadTimeout" in str(failed["decision_reason"]) or "no answer" in str(
        failed["decision_reason"]
    )


def test_a_missing_notifier_command_is_recorded(tmp_path: Path, ws_path: Path) -> None:
    configure(ws_path, '[[notifiers]]\nkind = "command"\ncommand = ["no-such-notifier-xyz"]\n')
    assert run(ws_path, tmp_path, "tasks:\n  - {id: a, run: ['true']}\n")[0] == 0
    (failed,) = records_of_type(ws_path, "notification", "failed")
    assert "command not found: no-such-notifier-xyz" in str(failed["decision_reason"])


def test_a_command_notifier_gets_the_notice_on_stdin(tmp_path: Path, ws_path: Path) -> None:
    out = tmp_path / "got.json"
    configure(
        ws_path,
        f'[[notifiers]]\nkind = "command"\ncommand = ["sh", "-c", "cat > {out}"]\n'
        'events = ["run_completed"]\n',
    )
    assert run(ws_path, tmp_path, "tasks:\n  - {id: a, run: ['true']}\n")[0] == 0
    assert orjson.loads(out.read_bytes())["event"] == "run_completed"


def test_escalations_suggestions_and_pauses_are_notified(tmp_path: Path, ws_path: Path) -> None:
    configure(ws_path, '[[notifiers]]\nkind = "file"\npath = "notices.ndjson"\n')
    assert (
        run_cli(
            "-w", str(ws_path), "escalate", "--mode", "ambiguity", "--question", "Which one?"
        ).exit_code
        == 0
    )
    (tmp_path / "x").write_text("x")
    code = run_cli(
        "-w", str(ws_path), "propose", "--title", "T", "--reasoning", "R", "--", "true"
    ).exit_code
    assert code == 0
    assert run_cli("-w", str(ws_path), "stop", "--reason", "r").exit_code == 0
    assert (
        run_cli(
            "-w", str(ws_path), "resume", "--procedure", "manual-verification", "--reason", "ok"
        ).exit_code
        == 0
    )
    assert [n["event"] for n in notices(ws_path)] == [
        "escalation_raised",
        "suggestion_created",
        "paused",
        "resumed",
    ]


def test_an_audit_failure_is_notified(ws_path: Path) -> None:
    configure(ws_path, '[[notifiers]]\nkind = "file"\npath = "notices.ndjson"\n')
    run_cli("-w", str(ws_path), "escalate", "--mode", "ambiguity", "--question", "Which one?")
    log = log_path(ws_path)
    log.write_bytes(log.read_bytes().replace(b"Which one?", b"Which two?"))
    assert run_cli("-w", str(ws_path), "audit").exit_code == 1
    assert "audit_failed" in [n["event"] for n in notices(ws_path)]


def test_the_default_console_notifier_prints_escalations(ws_path: Path) -> None:
    result = run_cli("-w", str(ws_path), "escalate", "--mode", "infeasible", "--question", "Q?")
    assert "stoic: notice: escalation_raised: ESC-001 (infeasible): Q?" in result.stderr
    assert records_of_type(ws_path, "notification", "sent") == []  # console is not recorded


def records_of_type(ws: Path, kind: str, outcome: str) -> list[dict[str, object]]:
    return [
        r
        for r in map(orjson.loads, log_path(ws).read_bytes().splitlines())
        if r["decision_type"] == kind and r["decision_outcome"] == outcome
    ]


# -- completion summaries ------------------------------------------------------------------

INCIDENT_DOC = """# Checkout returns 500 for EU cards

**Root Need:** EU customers must be able to pay with 3-D Secure cards.

## Summary

Payments for EU cards failed after the gateway upgrade. This doc tracks the fix.

## Root Cause

The gateway client sent amounts in cents to an endpoint that expects decimal strings, e.g.
"12.50". It only hit cards that go through 3-D Secure.

## Verification Log

- 2026-11-20 — reproduced with tests/test_checkout.py::test_eu_card (fails)
- 2026-11-21 — fix committed in 4f2a9c1: amounts are formatted by the client
- 2026-11-22 — staging checkout with a test EU card succeeds
"""

NEED_DOC = """# Faster search

**Root Need:** Support agents need search results in under a second.

## Notes
We tried an index.
"""

SUMMARY_DOC = """# Date format

## Summary

Dates now follow the user's locale everywhere. Also fixed a typo.

## Verification
1. Checked the settings page.
2. Commit 9e8d7c6b adds the locale tests.
"""


def test_summaries_come_from_the_documents_structure() -> None:
    incident = summarize(INCIDENT_DOC)
    assert incident.source == "Root Cause"
    assert incident.what == (
        "The gateway client sent amounts in cents to an endpoint that expects decimal strings,"
        ' e.g. "12.50".'
    )
    assert (
        incident.fix == "2026-11-21 — fix committed in 4f2a9c1: amounts are formatted by the client"
    )
    need = summarize(NEED_DOC)
    assert (need.source, need.what, need.fix) == (
        "Root Need",
        "Support agents need search results in under a second.",
        None,
    )
    dated = summarize(SUMMARY_DOC)
    assert dated.what == "Dates now follow the user's locale everywhere."
    assert dated.fix == "Commit 9e8d7c6b adds the locale tests."
    assert summarize("# Nothing here\n\nJust text.\n").text() is None


def test_a_task_summary_reaches_its_record_the_run_summary_and_notifications(
    tmp_path: Path, ws_path: Path
) -> None:
    configure(ws_path, '[[notifiers]]\nkind = "file"\npath = "notices.ndjson"\n')
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "checkout.md").write_text(INCIDENT_DOC)
    plan = (
        "tasks:\n  - {id: fix-checkout, run: ['true'], doc: docs/checkout.md}\n"
        "  - {id: other, run: ['true'], doc: docs/missing.md}\n"
    )
    code, out, _ = run(ws_path, tmp_path, plan)
    assert code == 0
    (ended,) = records_of(ws_path, "fix-checkout", "execution", "succeeded")
    summary = str(ended["details"]["summary"])
    assert summary.startswith("The gateway client sent amounts in cents")
    assert "Fix: 2026-11-21 — fix committed in 4f2a9c1" in summary
    assert f"fix-checkout: {summary}" in out
    assert "other: no summary (" in out and "missing.md" in out
    (notice,) = notices(ws_path)
    assert notice["data"]["summaries"]["fix-checkout"] == summary  # type: ignore[index]
    run_id = next((ws_path / "runs").iterdir()).name
    state = orjson.loads((ws_path / "runs" / run_id / "state.json").read_bytes())
    assert state["tasks"]["fix-checkout"]["summary"] == summary


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("logs/decision_log.ndjson", "is one of stoic's own files"),
        ("../outside.ndjson", "must stay inside the workspace"),
        ("/tmp/notices.ndjson", "must stay inside the workspace"),
    ],
)
def test_a_file_notifier_cannot_write_into_stoics_own_files(
    ws_path: Path, path: str, message: str
) -> None:
    configure(ws_path, f'[[notifiers]]\nkind = "file"\npath = "{path}"\n')
    result = run_cli("-w", str(ws_path), "status")
    assert result.exit_code == 2 and message in result.stderr
    assert "stoic.toml" in result.stderr


@given(st.text(max_size=400))
def test_summarize_never_fails_on_any_text(text: str) -> None:
    summary = summarize(text)
    assert summary.what is None or summary.source in ("Root Cause", "Root Need", "Summary")


words = (
    st.text(alphabet="bdghj ", min_size=1, max_size=30)  # spells no abbreviation ("cf.")
    .map(lambda text: " ".join(text.split()))
    .filter(lambda text: len(text.rsplit(" ", 1)[-1]) > 1)  # "Plan B." reads as an initial
)


@given(st.lists(words, min_size=1, max_size=4), st.lists(words, max_size=3))
def test_the_root_cause_is_its_first_sentence(sentences: list[str], noise: list[str]) -> None:
    body = " ".join(f"{sentence.capitalize()}." for sentence in sentences)
    doc = "\n".join(
        ["# Doc", "", "## Summary", "", "Other text.", "", "## Root Cause", "", body, ""]
        + [f"- {line}" for line in noise]
    )
    assert summarize(doc).what == f"{sentences[0].capitalize()}."


def test_a_notice_asked_for_under_the_lock_is_delivered_once_it_is_released(
    ws_path: Path, hook_url: str
) -> None:
    """A slow notifier must never keep other writers waiting on the workspace lock."""
    configure(ws_path, f'[[notifiers]]\nkind = "webhook"\nurl = "{hook_url}/ok"\n')
    import stoic
    from stoic.core.notifications import Event

    with stoic.Workspace.open(ws_path) as ws:
        with ws.log.locked():
            with ws.log.locked():  # nested, as a read-decide-append section can be
                ws.announce(Event.PAUSED, "paused under the lock")
            assert Hook.received == []  # not while the lock is held …
        assert [body["text"] for _, body in Hook.received] == ["paused under the lock"]  # … after
        ws.announce(Event.RESUMED, "no lock held")
        assert len(Hook.received) == 2  # at once when no lock is held


def test_a_store_handle_without_a_deliverer_is_refused_and_one_given_gets_every_notice(
    tmp_path: Path,
) -> None:
    """A notice is never dropped because nobody was there to deliver it."""
    from stoic.core.notifications import Event, Notice
    from stoic.exceptions import UsageError
    from stoic.store.workspace import Workspace as StoreWorkspace

    where = tmp_path / "bare"
    with pytest.raises(UsageError, match="deliver its notices"):
        StoreWorkspace.init(where)
    assert not where.exists()  # refused before anything was created
    got: list[Notice] = []
    with StoreWorkspace.init(where, deliverer=lambda _ws, notice: got.append(notice)) as ws:
        ws.announce(Event.PAUSED, "paused by hand")
    with pytest.raises(UsageError, match="deliver its notices"):
        StoreWorkspace.open(where)
    assert [(n.event, n.text) for n in got] == [(Event.PAUSED, "paused by hand")]


def test_with_a_public_url_each_notice_links_to_its_console_page(
    tmp_path: Path, ws_path: Path, hook_url: str
) -> None:
    """`serve.public_url` set: a notice links to the proposal, escalation, run or pause it is
    about — in the file's JSON, the Slack body and the console line alike."""
    configure(
        ws_path,
        '[serve]\npublic_url = "https://stoic.example.org/"\n'
        '[[notifiers]]\nkind = "file"\npath = "notices.ndjson"\n'
        f'[[notifiers]]\nkind = "webhook"\nurl = "{hook_url}/ok"\nformat = "slack"\n'
        'events = ["run_completed"]\n',
    )
    escalated = run_cli("-w", str(ws_path), "escalate", "--mode", "ambiguity", "--question", "?")
    proposed = run_cli("-w", str(ws_path), "propose", "--title", "T", "--reasoning", "R", "--",
                       "true")  # fmt: skip
    assert run_cli("-w", str(ws_path), "stop", "--reason", "r").exit_code == 0
    assert run_cli(
        "-w", str(ws_path), "resume", "--procedure", "manual-verification", "--reason", "ok"
    ).exit_code == 0  # fmt: skip
    code, _, _ = run(ws_path, tmp_path, "tasks:\n  - {id: a, run: ['true']}\n")
    assert code == 0
    base = "https://stoic.example.org"
    links = {str(n["event"]): n["link"] for n in notices(ws_path)}
    run_id = next(str(n["run_id"]) for n in notices(ws_path) if n["event"] == "run_completed")
    assert links == {
        "escalation_raised": f"{base}/escalations/{escalated.stdout.strip()}",
        "suggestion_created": f"{base}/proposals/{proposed.stdout.strip()}",
        "paused": f"{base}/pause",
        "resumed": f"{base}/pause",
        "run_completed": f"{base}/runs/{run_id}",
    }
    ((_, body),) = Hook.received
    assert f"<{base}/runs/{run_id}|Open in the console>" in str(body["blocks"])


def test_without_a_public_url_notices_carry_no_link(tmp_path: Path, ws_path: Path) -> None:
    configure(ws_path, '[[notifiers]]\nkind = "file"\npath = "notices.ndjson"\n')
    assert run(ws_path, tmp_path, "tasks:\n  - {id: a, run: ['true']}\n")[0] == 0
    assert [n["link"] for n in notices(ws_path)] == [None]


def test_a_public_url_that_is_not_a_web_address_is_refused(ws_path: Path) -> None:
    configure(ws_path, '[serve]\npublic_url = "javascript:alert(1)"\n')
    result = run_cli("-w", str(ws_path), "status")
    assert result.exit_code == 2
    assert "public_url" in result.stderr
