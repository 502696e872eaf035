"""Routing on the path as the client encoded it: a ``%2F`` stays inside its part, every part is
read back exactly, and a part that is not UTF-8 is refused after authentication."""

from __future__ import annotations

from urllib.parse import quote_from_bytes, unquote_to_bytes

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from aisopod_session.service._paths import routing_path
from tests.service.conftest import BOT, Api, assert_problem, session_path


@pytest.mark.parametrize(("raw", "routed"), [
    (b"/v1/agents/bot/sessions", None),
    (b"/v1/agents/b%C3%A9/sessions/%25/x%3Ay", None),  # the server's decoding loses nothing
    (b"/v1/agents/team%2fbot/sessions", "/v1/agents/team%2Fbot/sessions"),
    (b"/a%2Fb/%25/%C3%A9", "/a%2Fb/%25/\u00e9"),
    (b"/x/%FF%C3/%ED%A0%80", "/x/%FF%C3/%ED%A0%80"),  # not UTF-8 (a lone surrogate neither)
    (b"/%EE%80%80%2F", "/\ue000%2F"),  # a client's own private-use character is just that
])
def test_routing_path(raw: bytes, routed: str | None) -> None:
    assert routing_path(raw) == routed


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=12), min_size=1, max_size=6),
       st.sampled_from(["", "/", "%:@"]))
@example([b"/", b"%", b"\xff", b"%2F"], "")
def test_routing_path_keeps_every_segment(segments: list[bytes], safe: str) -> None:
    raw = b"/" + b"/".join(quote_from_bytes(s, safe=safe.replace("/", "")).encode("ascii")
                           for s in segments)
    routed = routing_path(raw)
    if routed is None:
        return  # routed on the server's own decoding, which then loses nothing
    assert [unquote_to_bytes(part) for part in routed.split("/")[1:]] == segments


@pytest.mark.anyio
async def test_a_redirect_keeps_the_client_s_encoding(shared_api: Api) -> None:
    """A trailing slash is redirected to the same parts, not to a decoded look-alike."""
    for path in ("/v1/agents/team%2Fbot/sessions", "/v1/agents/bot/sessions/a%2Fb/acct/dm/%C3"):
        response = await shared_api.get(path + "/")
        assert response.status_code == 307
        assert response.headers["location"].endswith(path)


@pytest.mark.anyio
@pytest.mark.parametrize(("headers", "agent", "status"), [
    ({"Authorization": ""}, "bot", 401),
    (BOT, "other", 403),
    (BOT, "bot", 422),
])
async def test_a_part_that_is_not_utf8_is_refused_after_authentication(
        shared_api: Api, headers: dict[str, str], agent: str, status: int) -> None:
    path = session_path(agent=agent).rsplit("/", 1)[0] + "/%FF"
    problem = assert_problem(await shared_api.get(path, headers=headers), status)
    if status == 422:
        assert problem["errors"] == [{"field": "peer_id",
                                      "message": "is not valid UTF-8 once percent-decoded"}]
