"""The console end to end in a real headless browser: Debian's Chromium (/usr/bin/chromium)
driven by Playwright, against the service served by uvicorn on a free loopback port.

Screenshots of the main pages are written to test-artifacts/screenshots/ (not committed) for a
reviewer to look at; AISOPOD_SCREENSHOTS points them elsewhere.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

from aisopod_session import (
    SessionFilter,
    SessionPatch,
    SessionStatus,
    SessionStore,
    SlidingWindow,
    StoredMessage,
)
from aisopod_session.service.app import create_app

from .conftest import (
    ADMIN_TOKEN,
    BOT_TOKEN,
    UNBROKEN,
    config_for,
    key,
    seed,
    seed_tool_session,
)

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


DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    yield from _opened(browser, DESKTOP)


@pytest.fixture
def phone(browser: Browser) -> Iterator[Page]:
    """A page as wide as a phone's screen (390 CSS pixels, an iPhone 12 to 15)."""
    yield from _opened(browser, PHONE)


def _opened(browser: Browser, viewport: dict[str, int]) -> Iterator[Page]:
    context = browser.new_context(viewport=viewport,  # type: ignore[arg-type]
                                  accept_downloads=True)
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

    # The transcript is paged: the newest 50 first, read oldest to newest down the page like a
    # chat, so "Older messages" sits above them and "Newer messages" below.
    messages = page.locator("ol.transcript > li.message")
    expect(messages).to_have_count(50)
    expect(messages.first).to_contain_text("message number 71")
    expect(messages.last).to_contain_text("message number 120")
    expect(page.locator(".transcript-order")).to_contain_text("Oldest at the top")
    older, newer = (page.get_by_role("link", name="Older messages"),
                    page.get_by_role("link", name="Newer messages"))
    expect(older).to_have_count(1)
    expect(newer).to_have_count(0)
    assert _top(older) < _top(messages.first)
    shot(page, "session")
    older.click()
    expect(messages.first).to_contain_text("message number 21")
    expect(messages.last).to_contain_text("message number 70")
    expect(older).to_have_count(1)
    expect(newer).to_have_count(1)
    assert _top(older) < _top(messages.first) < _top(messages.last) < _top(newer)
    older.click()
    expect(messages).to_have_count(20)
    expect(messages.first).to_contain_text("message number 1")
    expect(older).to_have_count(0)
    newer.click()
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
    # The archived generation's page says what it is, and counts its messages as history.
    page.goto(f"{base}/console/sessions/{ids['long']}")
    state = page.locator("dl.facts.state")
    expect(state).to_contain_text("archived")
    expect(state).to_contain_text("Messages in the archived history")
    expect(state).not_to_contain_text("Live messages")
    expect(page.get_by_role("button", name="Reset…")).to_have_count(0)
    shot(page, "session-archived")

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

    # The audit log has both, newest first: who, what, how much (never whom in clear).
    page.get_by_role("link", name="Audit log").click()
    expect(page).to_have_url(f"{base}/console/audit")
    rows = page.locator("table.audit tbody tr")
    expect(rows.first).to_contain_text("forget_peer")
    expect(rows.first).to_contain_text("console:admin")
    expect(rows.nth(1)).to_contain_text("export_peer")
    expect(page.locator("table.audit")).not_to_contain_text("dana")
    shot(page, "audit")


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
    expect(page.get_by_role("link", name="Audit log")).to_have_count(0)
    response = page.goto(f"{base}/console/audit")
    assert response is not None and response.status == 403
    expect(page.get_by_role("alert")).to_contain_text("only an admin token")
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
    # At the bottom, where the newest belongs, and tool traffic arrives collapsed like the rest.
    with SessionStore.open(str(database)) as store:
        store.for_agent("bot").append_messages(fresh, [
            StoredMessage.assistant("", tool_calls=[{"id": "call_live", "type": "function",
                                                     "function": {"name": "live_tool",
                                                                  "arguments": "{}"}}]),
            StoredMessage.tool({"tool_call_id": "call_live", "output": "live result"})])
    items = transcript.locator("li.message")
    expect(items).to_have_count(4, timeout=5_000)
    expect(items.nth(1)).to_contain_text("second")
    expect(items.nth(2).locator("details.tool-calls summary")).to_contain_text("live_tool")
    expect(items.last.locator("details.tool-result summary")).to_contain_text("call_live")
    assert page.evaluate(
        "[...document.querySelectorAll('ol.transcript details')].every(d => !d.open)")
    expect(items.last.locator("details.tool-result pre")).to_be_hidden()
    note = page.locator("[data-changed-note]")
    expect(note).to_be_hidden()
    with SessionStore.open(str(database)) as store:
        store.for_agent("bot").compact(fresh, SlidingWindow(max_messages=1))
    expect(note).to_be_visible(timeout=5_000)
    shot(page, "live-transcript")


def _top(locator: Locator) -> float:
    box = locator.bounding_box()
    assert box is not None, locator
    return float(box["y"])


def _inside(inner: Locator, outer: Locator) -> bool:
    small, big = inner.bounding_box(), outer.bounding_box()
    assert small is not None and big is not None
    return (big["x"] <= small["x"] and small["x"] + small["width"] <= big["x"] + big["width"]
            and big["y"] <= small["y"]
            and small["y"] + small["height"] <= big["y"] + big["height"])


def _fits(page: Page, what: str) -> None:
    """Nothing overflows the page sideways, and the header holds its Sign out control."""
    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"{what}: the page is {widths[0]} px wide in {widths[1]}"
    header = page.locator("header.top")
    sign_out = header.get_by_role("button", name="Sign out")
    if sign_out.count():
        assert _inside(sign_out, header), f"{what}: Sign out lies outside the header"


def test_every_page_fits_a_phone(phone: Page, served: tuple[str, Path, dict[str, int]]) -> None:
    """At 390 px the header wraps and wide tables scroll in their own box (issue 19)."""
    base, database, ids = served
    with SessionStore.open(str(database)) as store:
        tools = seed_tool_session(store, "phone-tools")
    sign_in(phone, base, ADMIN_TOKEN)
    for name, url in (
            ("overview", "/console/"),
            ("sessions", "/console/sessions"),
            ("session", f"/console/sessions/{ids['hostile']}"),
            ("session-tools", f"/console/sessions/{tools}"),
            ("session-long", f"/console/sessions/{ids['long']}?older=50"),
            ("person", "/console/people?channel=discord&peer_id=carol"),
            ("webhooks", "/console/webhooks"),
            ("audit", "/console/audit"),
            ("search", "/console/search?q=message+number&include_compacted=1")):
        response = phone.goto(f"{base}{url}")
        assert response is not None and response.status == 200, url
        expect(phone.get_by_role("button", name="Sign out")).to_be_visible()
        _fits(phone, url)
        shot(phone, f"{name}-390")
    # The wide table keeps its columns and scrolls inside its own box.
    phone.goto(f"{base}/console/sessions")
    scroller = phone.locator(".table-scroll").first
    assert scroller.evaluate("e => e.scrollWidth > e.clientWidth")
    assert scroller.evaluate("e => getComputedStyle(e).overflowX") == "auto"
    # Opened tool calls and a confirmation page fit as well.
    phone.goto(f"{base}/console/sessions/{tools}")
    phone.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
    _fits(phone, "tool calls opened")
    phone.get_by_role("button", name="Delete…").click()
    expect(phone.get_by_role("button", name="Yes, delete")).to_be_visible()
    _fits(phone, "confirm delete")
    shot(phone, "confirm-390")
    phone.get_by_role("button", name="Sign out").click()
    expect(phone.get_by_label("Token")).to_be_visible()
    _fits(phone, "sign-in")
    shot(phone, "login-390")


def test_tool_traffic_is_collapsed_and_the_page_stays_short(
        page: Page, served: tuple[str, Path, dict[str, int]]) -> None:
    """Tool calls and results start as one-line summaries (issue 19: a 50-message session was an
    8,800 px page of JSON)."""
    base, database, _ = served
    with SessionStore.open(str(database)) as store:
        session = seed_tool_session(store)
    sign_in(page, base, ADMIN_TOKEN, f"/console/sessions/{session}")
    messages = page.locator("ol.transcript > li.message")
    expect(messages).to_have_count(50)
    details = page.locator("ol.transcript details")
    expect(details).to_have_count(30)  # 10 messages calling tools, 20 results
    assert page.evaluate(
        "[...document.querySelectorAll('ol.transcript details')].every(d => !d.open)")
    calls = messages.nth(1).locator("details.tool-calls summary")
    expect(calls).to_contain_text("2 tool calls")
    expect(calls).to_contain_text("search_orders")
    expect(calls).to_contain_text("lookup_customer")
    expect(messages.nth(2).locator("details.tool-result summary")).to_contain_text("call_0_0")
    shot(page, "session-tools")
    # Closed, a message is its meta line and one line of text or summary: at most four lines
    # of body text tall with its padding, however much JSON it holds.
    line = page.evaluate("parseFloat(getComputedStyle(document.body).lineHeight)")
    heights = messages.evaluate_all("items => items.map(i => i.getBoundingClientRect().height)")
    assert max(heights) <= 4 * line, (max(heights), line)
    collapsed = page.evaluate("document.documentElement.scrollHeight")
    # Open, each of the 30 holds 10 to 40 lines of JSON: the page is over twice as tall.
    page.evaluate("document.querySelectorAll('ol.transcript details').forEach(d => d.open = 1)")
    expanded = page.evaluate("document.documentElement.scrollHeight")
    assert collapsed * 2 < expanded, (collapsed, expanded)
    # One click opens one.
    page.evaluate("document.querySelectorAll('ol.transcript details').forEach(d => d.open = 0)")
    calls.click()
    expect(messages.nth(1).locator("details.tool-calls pre")).to_contain_text('"call_0_1"')
    expect(messages.nth(2).locator("details.tool-result pre")).to_be_hidden()


def test_a_search_from_the_header_leads_to_the_message(
        page: Page, served: tuple[str, Path, dict[str, int]]) -> None:
    """The header's box, a hit with its terms marked, and its link: the transcript page that
    holds the message, scrolled to it and marked, although it is not on the newest page.

    Its own session: the module's other tests reset and delete the seeded ones (search looks
    at live history), whatever order they run in."""
    base, database, _ = served
    searched = key("searched-talker")
    with SessionStore.open(str(database)) as store:
        bot = store.for_agent("bot")
        session_id = bot.get_or_create(searched).id
        bot.append_messages(searched, [StoredMessage.user(f"searchable line {n}")
                                       for n in range(1, 121)])
    sign_in(page, base, BOT_TOKEN)
    box = page.get_by_role("searchbox", name="Search messages")
    box.fill('"searchable line 7"')
    box.press("Enter")
    hit = page.locator("ol.hits li.hit")
    expect(hit).to_have_count(1)
    expect(hit.locator("mark")).to_have_text("searchable line 7")
    shot(page, "search")
    hit.get_by_role("link").click()
    expect(page).to_have_url(re.compile(rf"/console/sessions/{session_id}\?around=\d+#m\d+$"))
    found = page.locator("li.message.found")
    expect(found).to_have_count(1)
    expect(found).to_contain_text("searchable line 7")
    expect(found).to_be_in_viewport()
    shot(page, "search-hit")
