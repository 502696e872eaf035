"""The published OpenAPI document against what the server really does, where a client generated
from it would otherwise trip (issue 19): the ``thread`` peer id format, control characters in ids,
``confirm`` on destructive admin routes, ``Allow`` on 405, and bodies that are not JSON (415).

Each test reads the rule from ``/openapi.json`` and checks the server on values the rule accepts
and values it refuses."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from aisopod_session.service.app import create_app
from tests.service.conftest import (
    Api,
    assert_problem,
    encode_part,
    message,
    service_config,
    serving,
    session_path,
)

SESSION = "/v1/agents/{agent_id}/sessions/{channel}/{account_id}/{peer_kind}/{peer_id}"
ERASE = "/v1/admin/peers/{channel}/{peer_id}"
CLEAR = "/v1/admin/sessions"
METHODS = ("GET", "PUT", "POST", "PATCH", "DELETE")

pytestmark = pytest.mark.anyio
SAMPLE_PARTS = {"agent_id": "bot", "channel": "discord", "account_id": "acct", "peer_kind": "dm",
                "peer_id": "alice", "session_id": "1"}


@pytest.fixture
async def api(sqlite_url: str) -> AsyncIterator[Api]:
    async with serving(create_app(service_config(sqlite_url, {}))) as client:
        yield client


async def _document(api: Api) -> dict[str, Any]:
    response = await api.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def _parameter(document: dict[str, Any], path: str, method: str, name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [p for p in document["paths"][path][method]["parameters"]
                                   if p["name"] == name]
    assert len(found) == 1, (path, method, name)
    return found[0]


def _matches(pattern: str, value: str) -> bool:
    # The document's patterns use only what ECMA-262 and Python's re read alike (\xHH, \uHHHH,
    # character classes): Python's re is a faithful stand-in for a client's validator.
    return re.search(pattern, value) is not None


# --- the thread peer id -------------------------------------------------------------------------

THREAD_PEER_IDS = [
    "g/t1", "g/t/1", "g%2Fx/t1", "g%25/t1", "%25%2F/t", " g/t1 ", "grüße/fädén", "g h/t 1",
    "t1", "g/", "/t1", "/", "g%/t1", "g%2f/t1", "g%2/t1", "g /t1", "g/ t1", "g\u3000/t1",
    "g/t1\u2028x", "g\x85/t1", "g/t\x9f1", "%/t", "g%252F/t",
]


async def test_the_thread_peer_id_format_is_published_and_is_what_the_server_takes(
        api: Api) -> None:
    document = await _document(api)
    for method in ("get", "put", "patch", "delete"):
        schema = _parameter(document, SESSION, method, "peer_id")["schema"]
        pattern = schema["x-thread-pattern"]
        assert "%25" in schema["description"]
        assert "%2F" in schema["description"]
    accepted = []
    for peer_id in THREAD_PEER_IDS:
        response = await api.put(session_path(kind="thread", peer=peer_id))
        assert response.status_code in (200, 422), response.text
        if response.status_code == 422:
            assert_problem(response, 422)
        expected = _matches(pattern, peer_id) and _matches(schema["pattern"], peer_id)
        assert (response.status_code == 200) is expected, (peer_id, response.text)
        accepted.append(response.status_code == 200)
    assert any(accepted)
    assert not all(accepted)
    # what the document says a group id with a "/" looks like is the key for_thread builds
    body = (await api.put(session_path(kind="thread", peer="a%2Fb%25c/t"))).json()
    assert body["key"]["peer_id"] == "a%2Fb%25c/t"


# --- control characters (C0, DEL and C1) in ids --------------------------------------------------

CONTROLS = ["\x00", "\x01", "\x1f", "\x7f", "\x80", "\x85", "\x9f"]
NOT_CONTROLS = ["\u200b", "é", "\xa0x", "\ufeff", "\xad"]


def _id_rules(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every documented id the server checks for control characters, with its schema."""
    schemas = document["components"]["schemas"]
    rules = {f"path {name}": _parameter(document, SESSION, "put", name)["schema"]
             for name in ("agent_id", "channel", "account_id", "peer_id")}
    rules["query owner"] = _parameter(document, SESSION + "/runs", "post", "owner")["schema"]
    rules["query actor"] = _parameter(document, ERASE, "delete", "actor")["schema"]
    rules["body external_id"] = next(branch for branch in
                                     schemas["NewMessage"]["properties"]["external_id"]["anyOf"]
                                     if branch.get("type") == "string")
    for part in ("agent_id", "channel", "account_id", "peer_id"):
        rules[f"SessionKey {part}"] = schemas["SessionKey"]["properties"][part]
    return rules


def _rule(schema: dict[str, Any], name: str) -> Any:
    """A string constraint, given on the schema or on its string branch (an optional value)."""
    branches = [schema, *(b for b in schema.get("anyOf", []) if b.get("type") == "string")]
    return next(branch[name] for branch in branches if name in branch)


async def _send(api: Api, where: str, value: str, number: int) -> int:
    peer = f"p{number}"
    if where.startswith("path "):
        parts = {"agent_id": "bot", "channel": "discord", "account_id": "acct",
                 "peer_id": peer} | {where.removeprefix("path "): value}
        return (await api.put(session_path(agent=parts["agent_id"], channel=parts["channel"],
                                           account=parts["account_id"],
                                           peer=parts["peer_id"]))).status_code
    if where == "query owner":
        await api.put_session(peer=peer)
        return (await api.post(session_path(peer=peer, suffix="/runs"),
                               params={"owner": value})).status_code
    if where == "query actor":
        return (await api.delete(f"/v1/admin/peers/discord/{peer}",
                                 params={"confirm": "true", "actor": value})).status_code
    if where == "body external_id":
        await api.put_session(peer=peer)
        return (await api.post(session_path(peer=peer, suffix="/messages"),
                               json={"messages": [message("hi", external_id=value)]})).status_code
    if where.startswith("SessionKey "):  # a run's key in the body of runs/finish
        await api.put_session(peer=peer)
        run = (await api.post(session_path(peer=peer, suffix="/runs"),
                              params={"owner": "me"})).json()
        run["key"][where.removeprefix("SessionKey ")] = value
        return (await api.post(session_path(peer=peer, suffix="/runs/finish"),
                               json=run)).status_code
    raise AssertionError(where)


async def test_ids_with_control_characters_are_refused_as_the_document_says(api: Api) -> None:
    rules = _id_rules(await _document(api))
    number = 0
    for where, schema in rules.items():
        assert _rule(schema, "minLength") == 1, where
        assert _rule(schema, "maxLength") == 256, where
        for control in CONTROLS:
            value = f"a{control}b"
            assert not _matches(schema["pattern"], value), (where, value)
            number += 1
            assert await _send(api, where, value, number) == 422, (where, value)
        for blank in (" ", "\u3000"):
            assert not _matches(schema["pattern"], blank), where
            number += 1
            assert await _send(api, where, blank, number) == 422, (where, blank)
        if where.startswith("SessionKey "):
            continue  # a changed key is refused anyway: it is not this session's key
        for fine in NOT_CONTROLS:
            value = f"a{fine}b"
            assert _matches(schema["pattern"], value), (where, value)
            number += 1
            assert await _send(api, where, value, number) == 200, (where, value)


# --- confirm on destructive admin routes ---------------------------------------------------------


async def test_confirm_is_required_true_as_documented_on_both_destructive_routes(
        api: Api) -> None:
    document = await _document(api)
    for path in (CLEAR, ERASE):
        confirm = _parameter(document, path, "delete", "confirm")
        assert confirm["required"] is True, path
        assert confirm["schema"]["type"] == "boolean"
        assert confirm["schema"]["enum"] == [True], path
        assert "default" not in confirm["schema"], path

    await api.put_session(peer="alice")
    erase = "/v1/admin/peers/discord/alice"
    for refused in ({}, {"confirm": "false"}, {"confirm": "0"}):
        for path in (erase, CLEAR):
            response = await api.delete(path, params=refused)
            assert response.status_code in (400, 422), (path, refused, response.text)
            assert_problem(response, response.status_code)
            assert "confirm" in response.text
    assert (await api.get(session_path(peer="alice"))).status_code == 200  # nothing erased
    erased = await api.delete(erase, params={"confirm": "true"})
    assert erased.status_code == 200, erased.text
    assert erased.json()["sessions"] == 1
    assert (await api.delete(CLEAR, params={"confirm": "true"})).status_code == 200


# --- Allow on 405 --------------------------------------------------------------------------------


def _concrete(template: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: encode_part(SAMPLE_PARTS[m.group(1)]), template)


def _template_regex(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(template)) + "$")


async def test_a_405_lists_in_allow_every_method_the_document_gives_the_path(api: Api) -> None:
    document = await _document(api)
    templates = {path: {method.upper() for method in methods}
                 for path, methods in document["paths"].items()}
    checked = 0
    for template in templates:
        url = _concrete(template)
        documented = set().union(*(methods for other, methods in templates.items()
                                   if _template_regex(other).match(url)))
        for method in METHODS:
            if method in documented:
                continue
            response = await api.request(method, url)
            assert_problem(response, 405)
            allowed = {m.strip() for m in response.headers["allow"].split(",")}
            assert allowed == documented, (method, url, allowed)
            checked += 1
    assert checked > 100
    # a key part holding a "/" (sent as %2F) is routed the same way
    response = await api.post(session_path(peer="a/b"))
    assert_problem(response, 405)
    assert set(response.headers["allow"].split(", ")) == {"GET", "PUT", "PATCH", "DELETE"}


# --- bodies that are not JSON ---------------------------------------------------------------------


async def test_a_json_body_sent_as_anything_else_is_refused_with_415(api: Api) -> None:
    document = await _document(api)
    await api.put_session()
    operations = [(method.upper(), path) for path, methods in document["paths"].items()
                  for method, operation in methods.items()
                  if "application/json" in operation.get("requestBody", {}).get("content", {})]
    assert len(operations) >= 8
    for method, path in operations:
        assert "415" in document["paths"][path][method.lower()]["responses"], path
        url = _concrete(path)
        for headers in ({}, {"content-type": "text/plain"},
                        {"content-type": "application/x-www-form-urlencoded"}):
            response = await api.request(method, url, content=b'{"messages": []}',
                                         headers=headers)
            body = assert_problem(response, 415)
            assert "application/json" in body["detail"], body
            if method in ("POST", "PATCH"):
                assert response.headers[f"accept-{method.lower()}"] == "application/json"
    # JSON with a charset, or a +json type, is JSON
    for content_type in ("application/json; charset=utf-8", "application/merge-patch+json"):
        response = await api.patch(session_path(), content=b'{"token_usage": 3}',
                                   headers={"content-type": content_type})
        assert response.status_code == 200, response.text
    # no body at all needs no content type (the route says what is missing)
    assert_problem(await api.post(session_path(suffix="/messages")), 422)
