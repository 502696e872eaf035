"""The console end to end in a real headless browser: Debian's Chromium (/usr/bin/chromium)
driven by Playwright, against the service served by uvicorn on a free loopback port.

Screenshots of the main pages are written to test-artifacts/screenshots/ (not committed) for a
reviewer to look at; AISOPOD_SCREENSHOTS points them elsewhere.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Browser, Page, expect, sync_playwright

from aisopod_session import (
    SessionFilter,
    SessionPatch,
    SessionStatus,
    SessionStore,
    SlidingWindow,
    StoredMessage,
)
from aisopod_session.service.app import create_app

from .conftest import ADMIN_TOKEN, BOT_TOKEN, UNBROKEN, config_for, key, seed

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(os.environ.get("AISOPOD_SCREENSHOTS", REPO / "test-artifacts" / "screenshots"))
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, dict[str, int]]]:
    database = tmp_path_factory.mktemp("console") / "console.db"
    with SessionStore.open(str(database)) as store:
        ids = seed(store)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(config_for(database)), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the service did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", database, ids
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), (
        "Debian's chromium is needed (scripts/test installs it: apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    opened = context.new_page()
    dialogs: list[str] = []
    opened.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    context.close()
    assert not dialogs, f"a script ran and opened a dialog: {dialogs}"
    assert not errors, f"scripts failed on the page: {errors}"


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def sign_in(page: Page, base: str, token: str, then: str = "/console/") -> None:
    page.goto(f"{base}{then}")
    expect(page).to_have_url(f"{base}/console/login?next={then.replace('/', '%2F')}")
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{base}{then}")


def live_ids(database: Path) -> set[int]:
    with SessionStore.open(str(database)) as store:
        return {s.id for s in store.list_all_sessions(
            SessionFilter(limit=1000, status=tuple(SessionStatus)))}


def test_operator_journey(page: Page, served: tuple[str, Path, dict[str, int]],
                          tmp_path: Path) -> None:
    base, database, ids = served
    sign_in(page, base, ADMIN_TOKEN)
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.locator("figure.chart svg rect").first).to_be_visible()
    shot(page, "overview")

    # Filter the list, then open a session from it.
    page.get_by_role("link", name="Sessions", exact=True).click()
    page.get_by_label("Agent").fill("bot")
    page.get_by_label("Channel").fill("discord")
    page.get_by_label("compacted").check()
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("table.sessions tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("carol")
    page.get_by_label("compacted").uncheck()
    page.get_by_label("active").check()
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(2)
    shot(page, "sessions")
    page.get_by_role("link", name=f"#{ids['long']}").click()
    expect(page).to_have_url(f"{base}/console/sessions/{ids['long']}")

    # The transcript is paged: the newest 50 first, then older pages.
    messages = page.locator("ol.transcript > li.message")
    expect(messages).to_have_count(50)
    expect(messages.last).to_contain_text("message number 120")
    shot(page, "session")
    page.get_by_role("link", name="Older messages").first.click()
    expect(messages.first).to_contain_text("message number 21")
    expect(messages.last).to_contain_text("message number 70")
    page.get_by_role("link", name="Older messages").first.click()
    expect(messages).to_have_count(20)
    expect(messages.first).to_contain_text("message number 1")
    expect(page.get_by_role("link", name="Older messages")).to_have_count(0)
    page.get_by_role("link", name="Newer messages").first.click()
    expect(messages.last).to_contain_text("message number 70")

    # Export: confirm, then a JSON Lines download.
    page.get_by_role("button", name="Export JSON Lines…").click()
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Yes, export").click()
    download = download_info.value
    assert download.suggested_filename == f"session-{ids['long']}.jsonl"
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    lines = [json.loads(line) for line in saved.read_text().splitlines()]
    assert [line["kind"] for line in lines].count("message") == 120

    # Reset: a confirmation page, then the fresh generation with the old one listed.
    page.goto(f"{base}/console/sessions/{ids['long']}")
    page.get_by_role("button", name="Reset…").click()
    expect(page.get_by_role("heading", name=f"Reset session #{ids['long']}?")).to_be_visible()
    shot(page, "confirm-reset")
    page.get_by_role("button", name="Yes, reset").click()
    expect(page.get_by_role("status")).to_contain_text("The session was reset")
    expect(page.get_by_role("heading", name="Generations of this key")).to_be_visible()
    expect(page.locator("table.sessions")).to_contain_text("archived")
    with SessionStore.open(str(database)) as store:
        assert store.get_session_by_id(ids["long"]).status is SessionStatus.ARCHIVED

    # A person across agents: export, then erase.
    page.goto(f"{base}/console/")
    page.get_by_label("Channel").fill("telegram")
    page.get_by_label("Peer id").fill("dana")
    page.get_by_role("button", name="Show their sessions").click()
    expect(page.locator("table.sessions tbody tr")).to_have_count(2)
    shot(page, "person")
    page.get_by_role("button", name="Export everything about them…").click()
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Yes, export").click()
    assert download_info.value.suggested_filename == "person.jsonl"
    page.goto(f"{base}/console/people?channel=telegram&peer_id=dana")
    page.get_by_role("button", name="Erase this person…").click()
    page.get_by_role("button", name="Yes, erase").click()
    expect(page.get_by_role("status")).to_have_text("Deleted 2 sessions and 2 messages.")
    assert not {ids["dana-bot"], ids["dana-other"]} & live_ids(database)


def test_hostile_content_renders_as_wrapped_text(page: Page,
                                                 served: tuple[str, Path, dict[str, int]]
                                                 ) -> None:
    base, _, ids = served
    sign_in(page, base, BOT_TOKEN, f"/console/sessions/{ids['hostile']}")
    first = page.locator("ol.transcript > li.message").first
    expect(first.locator(".content")).to_contain_text('<script>window.__xss = 1; alert("xss")')
    expect(first.locator(".content")).to_contain_text("<b>bold?</b><img src=x onerror=")
    assert page.locator("ol.transcript b, ol.transcript img, ol.transcript script").count() == 0
    assert page.evaluate("window.__xss") is None
    expect(page.locator("dd").filter(has_text="</pre><script>bad()</script>")).to_have_count(1)
    expect(page.get_by_role("heading", name="Key")).to_be_visible()
    expect(page.locator("dl.facts").first).to_contain_text("<i>mallory</i>")
    # The 5,000-character word wraps inside its box: nothing overflows the page sideways.
    long_text = page.locator(".content").filter(has_text=UNBROKEN)
    box = long_text.bounding_box()
    assert box is not None and box["width"] < 1280
    assert long_text.evaluate("e => e.scrollWidth <= e.clientWidth + 1")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    expect(page.locator("details.tool-calls")).to_contain_text("lookup_order")
    shot(page, "hostile-content")


def test_an_agent_token_cannot_reach_another_agents_pages_or_actions(
        page: Page, served: tuple[str, Path, dict[str, int]]) -> None:
    base, database, ids = served
    sign_in(page, base, BOT_TOKEN)
    expect(page.get_by_role("heading", name="Overview · agent bot")).to_be_visible()
    expect(page.get_by_role("link", name="People")).to_have_count(0)
    page.goto(f"{base}/console/sessions")
    expect(page.locator("table.sessions")).not_to_contain_text("erin")
    response = page.goto(f"{base}/console/sessions/{ids['other']}")
    assert response is not None and response.status == 404
    expect(page.get_by_role("alert")).to_contain_text(f"no session with id {ids['other']}")
    response = page.goto(f"{base}/console/sessions?agent=other")
    assert response is not None and response.status == 403
    response = page.goto(f"{base}/console/people?channel=discord&peer_id=erin")
    assert response is not None and response.status == 403
    # A form of its own page, pointed at the other agent's session, is refused too.
    page.goto(f"{base}/console/sessions/{ids['hostile']}")
    page.locator("form[action$='/delete']").evaluate(
        f"form => form.action = '/console/sessions/{ids['other']}/delete'")
    page.get_by_role("button", name="Delete…").click()
    expect(page.get_by_role("alert")).to_contain_text("no session with id")
    assert ids["other"] in live_ids(database)


def test_counts_refresh_live(page: Page, served: tuple[str, Path, dict[str, int]]) -> None:
    base, database, _ = served
    sign_in(page, base, BOT_TOKEN, "/console/sessions")
    idle = page.locator('.counts [data-status="idle"]')
    before = int(idle.inner_text().replace(",", ""))
    with SessionStore.open(str(database)) as store:
        agent = store.for_agent("bot")
        fresh = key("newcomer")
        agent.get_or_create(fresh)
        agent.patch(fresh, SessionPatch(status="idle"))
    # No reload: the page follows the change feed and fetches the counts when a session changes.
    expect(idle).to_have_text(str(before + 1), timeout=5_000)


def test_a_transcript_shows_new_messages_live(
        page: Page, served: tuple[str, Path, dict[str, int]]) -> None:
    base, database, _ = served
    with SessionStore.open(str(database)) as store:
        agent = store.for_agent("bot")
        fresh = key("live-transcript")
        session = agent.get_or_create(fresh)
        agent.append_messages(fresh, [StoredMessage(role="user", content="first")])
    sign_in(page, base, BOT_TOKEN, f"/console/sessions/{session.id}")
    transcript = page.locator("ol.transcript")
    expect(transcript).to_contain_text("first")
    page.wait_for_timeout(300)  # the page's stream is open
    with SessionStore.open(str(database)) as store:
        store.for_agent("bot").append_messages(fresh, [
            StoredMessage(role="assistant", content="<script>alert(1)</script> second")])
    # No reload: the new message arrives through the change feed, escaped like the rest.
    expect(transcript.locator("li.message")).to_have_count(2, timeout=5_000)
    expect(transcript).to_contain_text("<script>alert(1)</script> second")
    note = page.locator("[data-changed-note]")
    expect(note).to_be_hidden()
    with SessionStore.open(str(database)) as store:
        store.for_agent("bot").compact(fresh, SlidingWindow(max_messages=1))
    expect(note).to_be_visible(timeout=5_000)
    shot(page, "live-transcript")
