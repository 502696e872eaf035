"""The console over HTTP: sign-in, CSRF, escaping, agent isolation, filters, paging and the
actions, without a browser (tests/console/test_browser.py drives the same in Chromium)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient

from aisopod_session import SessionFilter, SessionStatus, StoredMessage
from aisopod_session.service.app import create_app

from .conftest import (
    ADMIN_TOKEN,
    BOT_TOKEN,
    HOSTILE,
    OTHER_TOKEN,
    UNBROKEN,
    config_for,
    csrf_of,
    key,
    page,
    seed_tool_session,
    sign_in,
    store_at,
)

ROOT = Path(__file__).resolve().parents[2]


def live_ids(database: Path) -> set[int]:
    with store_at(database) as store:
        return {s.id for s in store.list_all_sessions(SessionFilter(limit=1000))}


def replace_cookie(client: TestClient, value: str) -> None:
    client.cookies.clear()
    client.cookies.set("aisopod_console", value)


# --- sign-in -----------------------------------------------------------------------------------


def test_every_page_and_action_needs_a_sign_in(client: TestClient, seeded: dict[str, int],
                                               database: Path) -> None:
    for url in ("/console/", "/console/sessions?channel=discord",
                f"/console/sessions/{seeded['long']}", "/console/people", "/console/counts",
                "/console/audit", "/console/webhooks"):
        response = client.get(url)
        assert response.status_code == 303, url
        assert response.headers["location"].startswith("/console/login?next=%2Fconsole%2F")
    before = live_ids(database)
    response = client.post(f"/console/sessions/{seeded['long']}/delete",
                           data={"confirmed": "yes"})
    assert response.status_code == 303
    assert live_ids(database) == before


def test_sign_in_cookie_is_http_only_same_site_and_holds_no_token(client: TestClient) -> None:
    login = page(client, "/console/login")
    assert 'type="password"' in login
    response = client.post("/console/login", data={"token": ADMIN_TOKEN,
                                                   "next": "/console/sessions"})
    assert response.status_code == 303
    assert response.headers["location"] == "/console/sessions"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/console" in cookie
    assert ADMIN_TOKEN not in cookie
    assert "admin" in page(client, "/console/")


def test_a_wrong_token_is_refused_and_sets_no_cookie(client: TestClient) -> None:
    response = client.post("/console/login", data={"token": "guess", "next": "/console/"})
    assert response.status_code == 401
    assert "That token is not valid." in response.text
    assert "set-cookie" not in response.headers
    assert client.get("/console/").status_code == 303


def test_sign_in_never_redirects_off_the_console(client: TestClient) -> None:
    for target in ("https://evil.example/", "//evil.example/x", "/v1/admin/stats",
                   "/console/\\evil", "javascript:alert(1)"):
        response = client.post("/console/login", data={"token": BOT_TOKEN, "next": target})
        assert response.headers["location"] == "/console/", target


def test_a_forged_or_expired_cookie_is_a_sign_in_again(client: TestClient) -> None:
    sign_in(client, BOT_TOKEN)
    value = client.cookies.get("aisopod_console")
    assert value
    body, signature = value.split(".")
    replace_cookie(client, f"{body}.{'0' * len(signature)}")
    assert client.get("/console/").status_code == 303
    cookies = client.app.state.console_cookies  # type: ignore[attr-defined]
    expired = cookies.issue(next(iter(cookies._tokens._by_id)), now=0)
    replace_cookie(client, expired)
    assert client.get("/console/").status_code == 303


def test_removing_a_token_signs_its_cookies_out(database: Path, seeded: dict[str, int]) -> None:
    with TestClient(create_app(config_for(database)), follow_redirects=False) as first:
        sign_in(first, BOT_TOKEN)
        cookie = first.cookies.get("aisopod_console")
    fewer = [{"token": ADMIN_TOKEN, "role": "admin"}]
    with TestClient(create_app(config_for(database, fewer)), follow_redirects=False) as second:
        replace_cookie(second, cookie or "")
        assert second.get("/console/").status_code == 303
    # The same configuration on another replica accepts it.
    with TestClient(create_app(config_for(database)), follow_redirects=False) as replica:
        replace_cookie(replica, cookie or "")
        assert replica.get("/console/").status_code == 200


def test_sign_out_needs_csrf_and_ends_the_sign_in(client: TestClient) -> None:
    sign_in(client, BOT_TOKEN)
    assert client.post("/console/logout", data={"csrf": ""}).status_code == 403
    token = csrf_of(page(client, "/console/"))
    response = client.post("/console/logout", data={"csrf": token})
    assert response.status_code == 303
    assert 'aisopod_console=""' in response.headers["set-cookie"]


def test_without_tokens_the_console_is_open_but_still_csrf_protected(
        database: Path, seeded: dict[str, int]) -> None:
    with TestClient(create_app(config_for(database, [])), follow_redirects=False) as client:
        response = client.get("/console/login?next=/console/sessions")
        assert response.headers["location"] == "/console/sessions"
        assert "listens on loopback only" in page(client, "/console/sessions")
        before = live_ids(database)
        target = f"/console/sessions/{seeded['long']}/delete"
        assert client.post(target, data={"confirmed": "yes"}).status_code == 403
        assert live_ids(database) == before


# --- CSRF and origin ---------------------------------------------------------------------------


def test_state_changes_need_the_csrf_token_and_the_same_origin(
        client: TestClient, seeded: dict[str, int], database: Path) -> None:
    sign_in(client, ADMIN_TOKEN)
    target = f"/console/sessions/{seeded['long']}/reset"
    token = csrf_of(page(client, f"/console/sessions/{seeded['long']}"))
    refused = [
        client.post(target, data={"confirmed": "yes"}),
        client.post(target, data={"confirmed": "yes", "csrf": "0" * 64}),
        client.post(target, data={"confirmed": "yes", "csrf": token},
                    headers={"Origin": "https://evil.example"}),
        client.post(target, data={"confirmed": "yes", "csrf": token},
                    headers={"Origin": "null"}),
    ]
    assert [r.status_code for r in refused] == [403, 403, 403, 403]
    assert "text/html" in refused[0].headers["content-type"]
    with store_at(database) as store:
        assert store.get_session_by_id(seeded["long"]).status is not SessionStatus.ARCHIVED
    # JSON instead of a form is refused too (a cross-site fetch cannot send a form + cookie).
    response = client.post(target, content=json.dumps({"csrf": token}),
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 415


def test_another_sign_in_csrf_token_does_not_work(client: TestClient, database: Path,
                                                  seeded: dict[str, int]) -> None:
    with TestClient(create_app(config_for(database)), follow_redirects=False) as attacker:
        sign_in(attacker, ADMIN_TOKEN)
        foreign = csrf_of(page(attacker, "/console/"))
    sign_in(client, ADMIN_TOKEN)
    response = client.post(f"/console/sessions/{seeded['long']}/delete",
                           data={"confirmed": "yes", "csrf": foreign})
    assert response.status_code == 403


# --- escaping ----------------------------------------------------------------------------------


def test_untrusted_content_is_escaped_everywhere(client: TestClient,
                                                 seeded: dict[str, int]) -> None:
    sign_in(client, ADMIN_TOKEN)
    response = client.get(f"/console/sessions/{seeded['hostile']}")
    html = response.text
    assert "<script>window" not in html and "<script>bad" not in html
    assert "<script>x()" not in html and "<img src=x" not in html and "<i>mallory" not in html
    assert "&lt;script&gt;window.__xss = 1; alert(&#34;xss&#34;)&lt;/script&gt;" in html
    assert "&lt;/pre&gt;&lt;script&gt;bad()&lt;/script&gt;" in html
    assert "&lt;i&gt;mallory&lt;/i&gt;" in html
    assert UNBROKEN in html  # whole, wrapped by CSS (checked in the browser test)
    assert HOSTILE not in html
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    listing = page(client, "/console/sessions?agent=bot")
    assert "&lt;i&gt;mallory&lt;/i&gt;" in listing and "<i>mallory" not in listing


def test_every_console_answer_carries_the_security_headers(client: TestClient) -> None:
    """Static files and 404s too, which no console view renders (issue 19)."""
    for path in ("/console/static/console.js", "/console/static/console.css",
                 "/console/static/missing.js", "/console/no-such-page", "/console/login"):
        response = client.get(path, follow_redirects=False)
        assert "default-src 'none'" in response.headers["content-security-policy"], path
        assert response.headers["x-content-type-options"] == "nosniff", path
        assert response.headers["referrer-policy"] == "same-origin", path


# --- isolation ---------------------------------------------------------------------------------


def test_an_agent_token_sees_only_its_agent(client: TestClient, seeded: dict[str, int],
                                            database: Path) -> None:
    sign_in(client, BOT_TOKEN)
    listing = page(client, "/console/sessions")
    assert "long-talker" in listing and "erin" not in listing
    assert "dana talks" not in listing
    assert page(client, "/console/sessions?agent=other", 403)
    assert page(client, "/console/counts?agent=other", 403)
    assert page(client, "/console/people?channel=telegram&peer_id=dana", 403)
    other_page = client.get(f"/console/sessions/{seeded['other']}")
    missing_page = client.get("/console/sessions/999999")
    assert other_page.status_code == missing_page.status_code == 404
    assert "secret of other" not in other_page.text
    token = csrf_of(page(client, "/console/"))
    before = live_ids(database)
    for action in ("reset", "compact", "delete", "export"):
        response = client.post(f"/console/sessions/{seeded['other']}/{action}",
                               data={"csrf": token, "confirmed": "yes", "max_messages": "1"})
        assert response.status_code == 404, action
        assert "secret of other" not in response.text
    for action in ("forget", "export"):
        response = client.post(f"/console/people/{action}", data={
            "csrf": token, "confirmed": "yes", "channel": "telegram", "peer_id": "dana"})
        assert response.status_code == 403
    assert live_ids(database) == before
    overview = page(client, "/console/")
    assert "agent bot" in overview and "People" not in overview


def test_live_counts_follow_the_scope(client: TestClient) -> None:
    sign_in(client, BOT_TOKEN)
    counts = client.get("/console/counts").json()
    assert counts == {"active": 4, "idle": 0, "compacted": 1, "archived": 0}
    sign_in(client, ADMIN_TOKEN)
    assert client.get("/console/counts").json()["active"] == 7
    assert client.get("/console/counts?agent=other").json()["active"] == 3


# --- lists and pages ---------------------------------------------------------------------------


def test_filters_and_cursor_paging(client: TestClient, database: Path) -> None:
    with store_at(database) as store:
        agent = store.for_agent("bot")
        for n in range(60):
            agent.get_or_create(key(f"bulk-{n:02d}", channel="slack"))
    sign_in(client, ADMIN_TOKEN)
    first = page(client, "/console/sessions?agent=bot&channel=slack&status=active")
    assert first.count("bulk-") == 50 and "long-talker" not in first
    next_url = first.split('rel="next"')[0].rsplit('href="', 1)[1].split('"')[0]
    second = page(client, next_url.replace("&amp;", "&"))
    assert second.count("bulk-") == 10
    assert "First page" in second
    assert page(client, "/console/sessions?channel=slack&status=idle").count("bulk-") == 0
    later = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    assert page(client, f"/console/sessions?channel=slack&updated_after={later}"
                ).count("bulk-") == 0
    assert page(client, f"/console/sessions?channel=slack&updated_before={later}"
                ).count("bulk-") == 50
    bad = page(client, "/console/sessions?updated_after=yesterday", 422)
    assert "updated_after" in bad and "expected a date and time" in bad
    assert "status: &#39;gone&#39; is not one of active, idle, compacted, archived" in page(
        client, "/console/sessions?status=gone", 422)


def test_session_page_shows_state_and_a_paged_transcript(client: TestClient,
                                                         seeded: dict[str, int]) -> None:
    sign_in(client, BOT_TOKEN)
    html = page(client, f"/console/sessions/{seeded['long']}")
    assert "message number 120" in html and "message number 71" in html
    assert "message number 70<" not in html
    assert "Older messages" in html and "Newer messages" not in html
    older = page(client, f"/console/sessions/{seeded['long']}?older=50")
    assert "message number 70<" in older and "message number 21<" in older
    assert "message number 71<" not in older and "Newer messages" in older
    oldest = page(client, f"/console/sessions/{seeded['long']}?older=100")
    assert "message number 1<" in oldest and "Older messages" not in oldest
    compacted = page(client, f"/console/sessions/{seeded['compacted']}")
    assert compacted.count("compacted-badge") == 4
    assert "Compactions</dt><dd>1" in compacted
    tools = page(client, f"/console/sessions/{seeded['hostile']}")
    assert "lookup_order" in tools and "Tool calls" in tools and "role-tool" in tools
    assert page(client, "/console/sessions/0", 404)
    assert page(client, "/console/sessions/abc", 400)


def test_overview_counts_and_usage_chart(client: TestClient) -> None:
    sign_in(client, ADMIN_TOKEN)
    html = page(client, "/console/")
    assert "<svg" in html and "Messages per day" in html and "Tokens per day" in html
    today = datetime.now(UTC).date().isoformat()
    assert f"<title>{today} bot: 131</title>" in html  # 120 + 4 + 6 + 1 messages...
    assert f"<title>{today} bot: 360</title>" in html  # ...and 120 x 3 tokens
    assert f"<title>{today} other: 2</title>" in html
    assert 'data-status="active">7<' in html
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    assert f"<title>{yesterday} bot: 15</title>" in html  # 5 x (1 + 7 % 5)
    assert f"<title>{yesterday} other: 240</title>" in html  # 2 x 3 messages x 40 tokens


# --- actions -----------------------------------------------------------------------------------


def test_reset_compact_delete_ask_first_then_act(client: TestClient, seeded: dict[str, int],
                                                 database: Path) -> None:
    sign_in(client, BOT_TOKEN)
    session = seeded["long"]
    token = csrf_of(page(client, f"/console/sessions/{session}"))
    asked = client.post(f"/console/sessions/{session}/reset", data={"csrf": token})
    assert asked.status_code == 200 and "Yes, reset" in asked.text
    with store_at(database) as store:
        assert store.get_session_by_id(session).status is SessionStatus.ACTIVE
    done = client.post(f"/console/sessions/{session}/reset",
                       data={"csrf": token, "confirmed": "yes"})
    assert done.status_code == 303
    fresh = page(client, done.headers["location"])
    assert "The session was reset" in fresh and "Generations of this key" in fresh
    with store_at(database) as store:
        assert store.get_session_by_id(session).status is SessionStatus.ARCHIVED
    archived = page(client, f"/console/sessions/{session}")
    assert "Reset…" not in archived and "Compact…" not in archived
    assert client.post(f"/console/sessions/{session}/reset",
                       data={"csrf": token, "confirmed": "yes"}).status_code == 409

    target = seeded["compacted"]
    asked = client.post(f"/console/sessions/{target}/compact",
                        data={"csrf": token, "strategy": "sliding_window", "max_messages": "1"})
    assert "newest 1 messages" in asked.text
    assert client.post(f"/console/sessions/{target}/compact", data={
        "csrf": token, "strategy": "sliding_window", "max_messages": "1",
        "confirmed": "yes"}).status_code == 303
    with store_at(database) as store:
        assert store.get_session_by_id(target).message_count == 1
    bad = client.post(f"/console/sessions/{target}/compact",
                      data={"csrf": token, "max_messages": "lots", "confirmed": "yes"})
    assert bad.status_code == 422 and "max_messages" in bad.text

    assert client.post(f"/console/sessions/{target}/delete",
                       data={"csrf": token}).status_code == 200
    assert target in live_ids(database)
    gone = client.post(f"/console/sessions/{target}/delete",
                       data={"csrf": token, "confirmed": "yes"})
    assert gone.status_code == 303
    assert "were deleted" in page(client, gone.headers["location"])
    assert target not in live_ids(database)
    assert client.post(f"/console/sessions/{target}/frobnicate",
                       data={"csrf": token, "confirmed": "yes"}).status_code == 404


def test_export_downloads_the_session_as_importable_json_lines(
        client: TestClient, seeded: dict[str, int], tmp_path: Path) -> None:
    sign_in(client, BOT_TOKEN)
    token = csrf_of(page(client, "/console/"))
    response = client.post(f"/console/sessions/{seeded['hostile']}/export",
                           data={"csrf": token, "confirmed": "yes"})
    assert response.status_code == 200
    assert response.headers["content-disposition"] == (
        f'attachment; filename="session-{seeded["hostile"]}.jsonl"')
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert [line["kind"] for line in lines] == ["aisopod-session-export", "session"] + \
        ["message"] * 4
    assert lines[2]["content"] == HOSTILE
    with store_at(tmp_path / "restored.db") as restored:
        result = restored.import_jsonl(response.text.splitlines())
        assert (result.sessions, result.messages) == (1, 4)


def test_person_page_lists_across_agents_exports_and_erases(
        client: TestClient, seeded: dict[str, int], database: Path) -> None:
    sign_in(client, ADMIN_TOKEN)
    html = page(client, "/console/people?channel=telegram&peer_id=dana")
    assert f"#{seeded['dana-bot']}" in html and f"#{seeded['dana-other']}" in html
    token = csrf_of(html)
    exported = client.post("/console/people/export", data={
        "csrf": token, "confirmed": "yes", "channel": "telegram", "peer_id": "dana"})
    assert exported.status_code == 200
    kinds = [json.loads(line)["kind"] for line in exported.text.splitlines()]
    assert kinds.count("session") == 2 and kinds.count("message") == 2
    asked = client.post("/console/people/forget", data={
        "csrf": token, "channel": "telegram", "peer_id": "dana"})
    assert "Yes, erase" in asked.text
    assert seeded["dana-bot"] in live_ids(database)
    erased = client.post("/console/people/forget", data={
        "csrf": token, "confirmed": "yes", "channel": "telegram", "peer_id": "dana"})
    assert erased.status_code == 200
    assert "Deleted 2 sessions and 2 messages" in erased.text
    assert not {seeded["dana-bot"], seeded["dana-other"]} & live_ids(database)
    with store_at(database) as store:
        actions = [(r.actor, r.action) for r in store.audit_log()]
    assert ("console:admin", "forget_peer") in actions
    assert ("console:admin", "export_peer") in actions
    bad = page(client, "/console/people?channel=telegram&peer_id=%20", 422)
    assert "peer_id" in bad


def test_each_agent_token_sees_its_own_side(client: TestClient, seeded: dict[str, int]) -> None:
    sign_in(client, OTHER_TOKEN)
    listing = page(client, "/console/sessions")
    assert "erin" in listing and "long-talker" not in listing
    assert "secret of other" in page(client, f"/console/sessions/{seeded['other']}")
    assert page(client, f"/console/sessions/{seeded['long']}", 404)


def test_a_session_page_shows_its_run_and_inbox(client: TestClient, database: Path,
                                                seeded: dict[str, int]) -> None:
    sign_in(client, ADMIN_TOKEN)
    url = f"/console/sessions/{seeded['long']}"
    assert "<dt>Run</dt><dd class=\"wrap\">none</dd>" in page(client, url)
    with store_at(database) as store:
        bot = store.for_agent("bot")
        run = bot.start_run(key("long-talker"), "<b>replica</b>", ttl=600)
        bot.enqueue(key("long-talker"), [StoredMessage.user("waiting 1"),
                                         StoredMessage.user("waiting 2")])
    shown = page(client, url)
    assert f"#{run.fence} held by &lt;b&gt;replica&lt;/b&gt;" in shown  # escaped
    assert "2 waiting" in shown



# --- first use (issue 19) -----------------------------------------------------------------------


def _messages_span(html: str) -> tuple[int, int]:
    """Where the transcript's first message starts and its last one ends in the page."""
    starts = [m.start() for m in re.finditer(r'<li class="message ', html)]
    assert starts, "no messages on the page"
    return starts[0], html.index("</li>", starts[-1])


def test_the_transcript_reads_oldest_to_newest_with_older_above(
        client: TestClient, seeded: dict[str, int]) -> None:
    """Like a chat: the newest page first, read top to bottom, "Older messages" above it and
    "Newer messages" below; the page and the README say the same."""
    sign_in(client, BOT_TOKEN)
    url = f"/console/sessions/{seeded['long']}"
    newest = page(client, url)
    first, last = _messages_span(newest)
    assert newest.index("message number 71<") < newest.index("message number 120<")
    assert "Newest last" not in newest
    assert "Oldest at the top, newest at the bottom" in newest
    assert [m.start() for m in re.finditer("Older messages", newest)] < [first]
    assert "Newer messages" not in newest
    middle = page(client, f"{url}?older=50")
    first, last = _messages_span(middle)
    assert all(at < first for at in [m.start() for m in re.finditer("Older messages", middle)])
    newer = [m.start() for m in re.finditer("Newer messages", middle)]
    assert newer and all(at > last for at in newer)
    assert "Newest messages" not in middle  # the newer page is the newest
    deeper = page(client, f"{url}?older=100")
    assert "Newest messages" in deeper[_messages_span(deeper)[1]:]  # back in one click
    readme = (ROOT / "README.md").read_text("utf-8")
    console = readme[readme.index("## The operator console"):]
    console = " ".join(console[:console.index("\n## ")].split())
    assert "oldest at the top, newest at the bottom" in console
    assert "newest 50 messages first" not in console


def test_tool_calls_and_results_start_collapsed(client: TestClient, database: Path,
                                                seeded: dict[str, int]) -> None:
    with store_at(database) as store:
        session = seed_tool_session(store)
    sign_in(client, BOT_TOKEN)
    html = page(client, f"/console/sessions/{session}")
    opened = re.findall(r"<details[^>]*>", html)
    assert len(opened) == 30 and not [tag for tag in opened if "open" in tag]
    summaries = re.findall(r"<summary>(.*?)</summary>", html, flags=re.DOTALL)
    assert any("2 tool calls" in s and "search_orders" in s and "call_0_0" in s
               for s in summaries)
    assert any("Tool result" in s and "call_9_1" in s for s in summaries)
    # Live appends (console.js) get the same markup.
    fragment = client.get(f"/console/sessions/{session}/messages?after_id=0").text
    assert fragment.count("<details") == 30 and " open" not in fragment
    # Hostile tool names and ids are escaped in the summary too.
    hostile = page(client, f"/console/sessions/{seeded['hostile']}")
    assert "lookup_order" in hostile and "call_1" in hostile
    assert "<script>x()" not in hostile
    with store_at(database) as store:
        store.for_agent("bot").append_messages(key("tool-user"), [
            StoredMessage.assistant("", tool_calls=[{"name": "<img src=x>", "id": "<b>c</b>"}]),
            StoredMessage.tool({"tool_call_id": "<i>c</i>", "output": "<script>y()</script>"})])
    summaries = re.findall(r"<summary>(.*?)</summary>",
                           page(client, f"/console/sessions/{session}"), flags=re.DOTALL)
    assert summaries[-2:] == [
        "1 tool call: &lt;img src=x&gt; (&lt;b&gt;c&lt;/b&gt;) · 43 B",
        "Tool result for &lt;i&gt;c&lt;/i&gt; · 62 B · &lt;script&gt;y()&lt;/script&gt;"]


def test_an_archived_session_is_not_called_live(client: TestClient, database: Path,
                                                seeded: dict[str, int]) -> None:
    sign_in(client, BOT_TOKEN)
    session = seeded["long"]
    live = page(client, f"/console/sessions/{session}")
    assert "Messages in the live history</dt><dd>120" in live
    with store_at(database) as store:
        store.for_agent("bot").reset(key("long-talker"))
    archived = page(client, f"/console/sessions/{session}")
    assert "Live messages" not in archived and "live history" not in archived
    assert "Messages in the archived history</dt><dd>120" in archived
    assert re.search(r"<dt>Status</dt><dd>.*archived.*read-only", archived)


def test_the_audit_log_page_shows_console_actions_to_admins_only(
        client: TestClient, database: Path, seeded: dict[str, int]) -> None:
    sign_in(client, ADMIN_TOKEN)
    assert 'href="/console/audit"' in page(client, "/console/")
    assert "No audited operation yet." in page(client, "/console/audit")
    token = csrf_of(page(client, "/console/people?channel=telegram&peer_id=dana"))
    erased = client.post("/console/people/forget", data={
        "csrf": token, "confirmed": "yes", "channel": "telegram", "peer_id": "dana"})
    assert erased.status_code == 200
    with store_at(database) as store:
        store.forget_peer("discord", "nobody", actor="<b>api</b>")
        record = store.audit_log(1)[0]
    html = page(client, "/console/audit")
    rows = html.split("<tbody>")[1].split("</tbody>")[0].split("<tr>")[1:]
    assert len(rows) == 2
    assert "&lt;b&gt;api&lt;/b&gt;" in rows[0] and "<b>api" not in html  # escaped, newest first
    assert "console:admin" in rows[1] and "forget_peer" in rows[1]
    assert re.search(r'class="num">2</td>\s*<td class="num">2</td>', rows[1])
    assert record.subject is not None and record.subject[:24] in rows[0]
    assert "dana" not in html.split("<tbody>")[1]  # a hash, never the person's id
    limited = page(client, "/console/audit?limit=1")
    assert limited.count("<tr>") == 2 and "Show more" in limited  # header row + one record
    assert page(client, "/console/audit?limit=0", 400)
    assert page(client, "/console/audit?limit=abc", 400)
    for token_of_agent in (BOT_TOKEN, OTHER_TOKEN):
        sign_in(client, token_of_agent)
        refused = page(client, "/console/audit", 403)
        assert "only an admin token" in refused and "console:admin" not in refused
        assert 'href="/console/audit"' not in page(client, "/console/")
