"""The console in a real browser: Debian's chromium driven by Playwright against a real server
on loopback. Hostile text stays text (no script of it runs), a proposal is approved with the
keyboard and is on record as the logged-in person, and the screenshots the README shows are
taken here (into `$STOIC_SCREENSHOTS` when it names a folder, `docs/` for the README)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

import stoic
from stoic.server import auth
from stoic.services import escalations
from tests.conftest import run_stoic_process
from tests.console_server import RunningConsole, running_console
from tests.test_serve_control import serving

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HOSTILE = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">'
WAITS = "meta: {name: deploy}\ntasks:\n  - {id: build, run: ['true']}\n" + (
    "  - {id: deploy, run: ['true'], approval: required, depends_on: [build]}\n"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"no chromium at {CHROMIUM}: `apt-get install -y chromium` (.ci/run does)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # pragma: no cover - a dev dependency
        pytest.skip(f"playwright is not installed: {exc}")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def served(ws_path: Path) -> Iterator[RunningConsole]:
    with running_console(ws_path) as running:
        yield running


@pytest.fixture
def contexts(browser: Any) -> Iterator[list[Any]]:
    """The browser contexts a test opens, closed before its server stops."""
    opened: list[Any] = []
    yield opened
    for context in opened:
        context.close()


def _page_as(browser: Any, served: RunningConsole, contexts: list[Any], name: str) -> Any:
    """A browser page whose cookie is a live session of `name`."""
    _, session = served.login(name)
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    contexts.append(context)
    context.add_cookies([{"name": auth.COOKIE, "value": session.token, "url": served.url}])
    return context.new_page()


def _screenshot(page: Any, tmp_path: Path, name: str) -> None:
    shot = tmp_path / f"console-{name}.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 0
    wanted = os.environ.get("STOIC_SCREENSHOTS")
    if wanted:
        Path(wanted).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, Path(wanted) / shot.name)


def test_hostile_text_in_a_proposal_is_shown_and_never_runs(
    browser: Any, served: RunningConsole, contexts: list[Any], ws_path: Path
) -> None:
    (ws_path / "javascript:window.pwned=3").write_text("")
    with stoic.Workspace.open(ws_path) as workspace:
        proposal = workspace.propose(
            title=HOSTILE,
            reasoning_trace=[HOSTILE],
            sources=["javascript:window.pwned=3"],
            action=["echo", HOSTILE],
            summary=HOSTILE,
            by="agent:ops",
        )
    page = _page_as(browser, served, contexts, "ana")
    page.goto(f"{served.url}/queue")
    assert page.evaluate("typeof window.pwned") == "undefined"
    page.goto(f"{served.url}/proposals/{proposal.id}")
    assert page.locator("#proposal-title").inner_text() == HOSTILE
    assert page.locator(".summary").inner_text() == HOSTILE
    page.get_by_text("javascript:window.pwned=3").click()
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert page.locator("a[href^='javascript:']").count() == 0
    with stoic.Workspace.open(ws_path) as workspace:
        raised = escalations.raise_(
            workspace,
            escalations.request("ambiguity", f"Which one of {HOSTILE}?", HOSTILE),
            actor="agent:ops",
        )
    page.goto(f"{served.url}/escalations/{raised.id}")
    assert f"Which one of {HOSTILE}?" in page.locator("#briefing").inner_text()
    assert page.evaluate("typeof window.pwned") == "undefined"


def test_the_whole_path_log_in_approve_with_the_keyboard_and_the_run_finishes_by_itself(
    browser: Any, contexts: list[Any], ws_path: Path, tmp_path: Path
) -> None:
    """A real `stoic serve`: log in through the login page, open the batch, open the proposal,
    approve it with the keyboard, watch the run continue by itself and finish, read its
    timeline."""
    issued = orjson.loads(
        run_stoic_process(
            "-w", str(ws_path), "users", "add", "ana", "--role", "reviewer", "--as", "root",
            "--json",
        ).stdout
    )  # fmt: skip
    plan = tmp_path / "deploy.yaml"
    plan.write_text(WAITS)
    with stoic.Workspace.open(ws_path) as workspace:
        report = workspace.run(plan)
        approval_id = next(r.proposal_id for r in workspace.records(decision_type="proposal"))
        workspace.propose(
            title="Rotate the web server's logs",
            reasoning_trace=["/var/log is 91% full", "the logs are shipped nightly"],
            action=["logrotate", "-f", "/etc/logrotate.d/nginx"],
            rollback=["true"],
            confidence=0.72,
            trade_off="the last hour of logs is compressed early",
            by="agent:ops",
        )
    assert report.status == "awaiting_human"
    from playwright.sync_api import expect

    with serving(ws_path) as server:
        url = f"http://127.0.0.1:{server.port}"
        context = browser.new_context(viewport={"width": 1200, "height": 800})
        contexts.append(context)
        page = context.new_page()
        page.goto(f"{url}/queue")
        page.wait_for_url("**/login")
        page.fill("input[name=name]", "ana")
        page.fill("input[name=secret]", issued["secret"])
        page.click("button[type=submit]")
        page.wait_for_url("**/queue")
        assert page.locator("tr.proposal").count() == 2
        _screenshot(page, tmp_path, "queue")
        page.keyboard.press("Enter")
        page.wait_for_url(f"**/proposals/{approval_id}")
        assert page.locator("#sha256").inner_text()
        _screenshot(page, tmp_path, "proposal")
        page.keyboard.press("a")
        page.wait_for_url("**/queue?decided=*", timeout=90_000)
        assert page.locator("#decided").inner_text() == f"{approval_id} decided."
        page.goto(f"{url}/runs/{report.run_id}")
        # The page reloads itself as the run's records come (live updates from the log).
        expect(page.locator("#run-status")).to_have_text("completed", timeout=60_000)
        _screenshot(page, tmp_path, "run-timeline")
        context.close()
        contexts.remove(context)
    with stoic.Workspace.open(ws_path) as workspace:
        approved = [
            r
            for r in workspace.records(decision_type="proposal")
            if r.decision_outcome == "approved"
        ]
        assert [(r.proposal_id, r.actor) for r in approved] == [(approval_id, "human:ana")]
        assert "read_seconds" in approved[0].decision_inputs
        assert workspace.audit().ok


def test_the_queue_shows_a_new_proposal_by_itself(
    browser: Any, served: RunningConsole, contexts: list[Any], ws_path: Path
) -> None:
    page = _page_as(browser, served, contexts, "ana")
    page.goto(f"{served.url}/queue")
    assert page.locator("tr.proposal").count() == 0
    page.wait_for_function("document.body.dataset.live !== undefined")
    with stoic.Workspace.open(ws_path) as workspace:
        proposal = workspace.propose(
            title="Arrived while the page was open", reasoning_trace=["new"], by="agent:ops"
        )
    page.wait_for_selector(f"tr.proposal[data-id='{proposal.id}']")


def test_the_queue_moves_with_j_and_rejects_with_r_asking_the_reason(
    browser: Any, served: RunningConsole, contexts: list[Any], ws_path: Path
) -> None:
    with stoic.Workspace.open(ws_path) as workspace:
        first, second = (
            workspace.propose(title=title, reasoning_trace=["why"], by="agent:ops")
            for title in ("First", "Second")
        )
    page = _page_as(browser, served, contexts, "ana")
    page.goto(f"{served.url}/queue")
    page.keyboard.press("j")
    assert page.locator("tr.proposal.current").get_attribute("data-id") == second.id
    page.once("dialog", lambda dialog: dialog.accept("duplicate of the first"))
    page.keyboard.press("r")
    page.wait_for_url("**/queue?decided=*", timeout=90_000)
    with stoic.Workspace.open(ws_path) as workspace:
        rejected = [
            r
            for r in workspace.records(decision_type="proposal")
            if r.decision_outcome == "rejected"
        ]
    assert [(r.proposal_id, r.actor, r.decision_reason) for r in rejected] == [
        (second.id, "human:ana", "duplicate of the first")
    ]
    assert page.locator("tr.proposal").count() == 1
    assert page.locator("tr.proposal").get_attribute("data-id") == first.id


def test_a_live_update_during_a_decision_does_not_cancel_its_answer(
    browser: Any, served: RunningConsole, contexts: list[Any], ws_path: Path
) -> None:
    """A record lands while the page's decision is on its way (the route holds the request):
    the live update must not reload the page, which would cancel the answer's navigation."""
    with stoic.Workspace.open(ws_path) as workspace:
        first = workspace.propose(title="First", reasoning_trace=["why"], by="agent:ops")
    page = _page_as(browser, served, contexts, "ana")
    page.goto(f"{served.url}/queue")
    page.wait_for_selector(f"tr.proposal.current[data-id='{first.id}']")
    # The live stream is open and has seen the log's head: a later record is announced.
    page.wait_for_function("() => document.body.hasAttribute('data-live')")

    def held(route: Any) -> None:
        with stoic.Workspace.open(ws_path) as workspace:
            workspace.propose(title="Arrived meanwhile", reasoning_trace=["new"], by="agent:ops")
        time.sleep(1.5)  # the stream polls every 0.2 s: its event comes meanwhile
        route.continue_()

    page.route("**/proposals/*/decide", held)
    page.keyboard.press("a")
    page.wait_for_url("**/queue?decided=*", timeout=30_000)
    assert first.id in page.url
