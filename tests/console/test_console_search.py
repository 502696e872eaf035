"""The console's search over HTTP: the header's box on every page, hits with their matched terms
in <mark> and everything else escaped, filters and paging, a malformed query, an agent token
that never sees another agent's hits, and a hit's link to its message in a long transcript."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from aisopod_session import SearchDisabledError, StoredMessage

from .conftest import ADMIN_TOKEN, BOT_TOKEN, OTHER_TOKEN, key, page, sign_in, store_at


def hits(html: str) -> list[str]:
    """Each hit's snippet as shown, its marks kept."""
    return re.findall(r'<p class="content snippet">(.*?)</p>', html, flags=re.DOTALL)


def links(html: str) -> list[str]:
    return re.findall(r'href="(/console/sessions/\d+\?around=\d+#m\d+)"', html)


def test_every_page_has_the_search_box(client: TestClient, seeded: dict[str, int]) -> None:
    sign_in(client, BOT_TOKEN)
    for url in ("/console/", "/console/sessions", f"/console/sessions/{seeded['long']}",
                "/console/search"):
        html = page(client, url)
        assert 'action="/console/search"' in html and 'name="q"' in html, url
    assert hits(page(client, "/console/search")) == []  # no query: only the form


def test_hits_mark_the_matched_terms_and_escape_the_rest(client: TestClient) -> None:
    sign_in(client, ADMIN_TOKEN)
    html = page(client, "/console/search?q=alert+xss")
    (snippet,) = hits(html)
    # the hostile message's text, escaped; only the matched terms are marked
    assert "<script" not in snippet and "&lt;script&gt;window.__<mark>xss</mark>" in snippet
    assert "<mark>alert</mark>(&#34;<mark>xss</mark>&#34;)" in snippet
    assert re.sub(r"</?mark>", "", snippet).count("<") == 0
    assert "&lt;i&gt;mallory&lt;/i&gt;" in html and "<i>mallory" not in html  # the peer id
    assert 'value="alert xss"' not in page(client, "/console/sessions")  # not kept elsewhere
    assert 'value="alert xss"' in html


def test_an_agent_token_never_sees_another_agents_hits(client: TestClient,
                                                       seeded: dict[str, int]) -> None:
    sign_in(client, ADMIN_TOKEN)
    everyone = page(client, "/console/search?q=dana+talks")
    assert len(hits(everyone)) == 2
    assert len(hits(page(client, "/console/search?q=dana+talks&agent=other"))) == 1
    assert hits(page(client, "/console/search?q=secret")) == ["<mark>secret</mark> of other"]
    client.cookies.clear()
    sign_in(client, BOT_TOKEN)
    mine = page(client, "/console/search?q=dana+talks")
    assert hits(mine) == ["<mark>dana</mark> <mark>talks</mark> to bot"]
    assert 'name="agent"' not in mine  # no agent filter to try
    assert hits(page(client, "/console/search?q=secret")) == []
    assert hits(page(client, "/console/search?q=secret&include_archived=1"
                             "&include_compacted=1")) == []
    assert "may not see agent" in page(client, "/console/search?q=secret&agent=other", 403)
    # the other agent's hit's link is a session it cannot open
    client.cookies.clear()
    sign_in(client, OTHER_TOKEN)
    (link,) = links(page(client, "/console/search?q=secret"))
    client.cookies.clear()
    sign_in(client, BOT_TOKEN)
    assert page(client, link, 404)
    assert f"/sessions/{seeded['other']}?" in link


def test_filters_order_and_paging(client: TestClient, database: Path) -> None:
    sign_in(client, BOT_TOKEN)
    first = page(client, "/console/search?q=message+number&order=newest")
    assert len(hits(first)) == 20
    assert hits(first)[0].endswith("<mark>number</mark> 120")
    next_url = re.search(r'href="([^"]+)" rel="next"', first)
    assert next_url
    second = page(client, next_url.group(1).replace("&amp;", "&"))
    assert hits(second)[0].endswith("<mark>number</mark> 100")
    assert "First page" in second and "order=newest" in next_url.group(1)
    assert not set(hits(first)) & set(hits(second))
    assert hits(page(client, "/console/search?q=message+number&role=assistant")) == []
    assert len(hits(page(client, "/console/search?q=old&include_compacted=1"))) == 6
    assert len(hits(page(client, "/console/search?q=old"))) == 2  # the live ones
    assert hits(page(client, "/console/search?q=dana&channel=discord")) == []
    assert len(hits(page(client, "/console/search?q=dana&channel=telegram&peer_id=dana"))) == 1
    with store_at(database) as store:
        store.for_agent("bot").reset(key("carol"))
    assert hits(page(client, "/console/search?q=old")) == []
    assert len(hits(page(client, "/console/search?q=old&status=archived"))) == 2
    assert len(hits(page(client, "/console/search?q=old&include_archived=1"))) == 2


def test_a_malformed_query_says_what_is_wrong(client: TestClient) -> None:
    sign_in(client, BOT_TOKEN)
    html = page(client, "/console/search?q=%22unbalanced", 422)
    assert "unbalanced quote" in html and 'role="alert"' in html
    assert "only exclusions" in page(client, "/console/search?q=-refund", 422)
    assert "order" in page(client, "/console/search?q=refund&order=worst", 422)
    assert "cursor" in page(client, "/console/search?q=refund&cursor=nope", 422)
    assert "role" in page(client, "/console/search?q=refund&role=robot", 422)


def test_a_hit_links_to_its_message_marked_in_a_long_transcript(
        client: TestClient, seeded: dict[str, int], database: Path) -> None:
    sign_in(client, BOT_TOKEN)
    (link,) = links(page(client, '/console/search?q="message number 7"'))
    message_id = int(link.rsplit("#m", 1)[1])
    html = page(client, link.split("#")[0])
    # the newest page (71-120) does not hold it: this page does, in its middle, marked
    assert "message number 7<" in html and "message number 120<" not in html
    found = re.findall(r'<li class="message [^"]*\bfound\b[^"]*" id="m(\d+)"', html)
    assert found == [str(message_id)]
    shown = [int(n) for n in re.findall(r"message number (\d+)<", html)]
    assert shown == list(range(1, 33))  # 25 newer after it; the oldest ones before
    assert "Newer messages" in html and "The message the search found is marked" in html
    # the pager pages on from there
    newer = re.search(r'href="([^"]+)#transcript" rel="next"', html)
    assert newer
    assert "message number 33<" in page(client, newer.group(1).replace("&amp;", "&"))
    # in the middle of a longer history, the page is centred on it
    with store_at(database) as store:
        bot = store.for_agent("bot")
        bot.append_messages(key("long-talker"), [StoredMessage.user(f"later {n}")
                                                 for n in range(200)])
    middle = page(client, link.split("#")[0].replace(f"around={message_id}",
                                                    f"around={message_id + 40}"))
    shown = [int(n) for n in re.findall(r"message number (\d+)<", middle)]
    assert shown == list(range(23, 73))
    # a message that is gone: the newest page, saying so
    gone = page(client, f"/console/sessions/{seeded['long']}?around=999999")
    assert "no longer in this session" in gone and "later 199<" in gone
    # another session's message is not looked for in this one
    other = page(client, f"/console/sessions/{seeded['hostile']}?around={message_id}")
    assert "no longer in this session" in other


def test_search_turned_off_says_so(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    async def turned_off(*args: object, **kwargs: object) -> None:
        raise SearchDisabledError("search is turned off for this store (search=False)")

    monkeypatch.setattr(client.app.state.store, "search_all", turned_off)  # type: ignore[attr-defined]
    sign_in(client, BOT_TOKEN)
    html = page(client, "/console/search?q=refund", 409)
    assert "Search is turned off for this database." in html and 'role="alert"' in html
