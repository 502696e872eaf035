"""Path parameters exactly as the client percent-encoded them.

A key part may hold any character, ``/`` and ``%`` included: a client sends ``a/b`` as ``a%2Fb``
and that stays one part. The server decodes the path before routing, though (``scope["path"]``
of ``/x/a%2Fb`` is ``/x/a/b``), and a URL template convertor cannot undo that: a ``{part:path}``
parameter would swallow the rest of the path, and every part of a key (not only the last one) may
hold a ``/`` (``/v1/agents/team%2Fbot/sessions/slack%2Feu/…/a%2Fb/messages``). So, when the
decoded path would lose information (an encoded ``/``, or bytes that are not UTF-8 once
decoded), :class:`RouteOnEncodedSlashes` has routing see the path split on the client's own
``/`` only, each segment decoded except for ``%``, ``/`` and undecodable bytes, which stay
percent-encoded. That text is unambiguous, so :class:`DecodedPathRoute` turns each matched
parameter back into exactly what the client sent, and FastAPI validates the route's own path
parameters on those values. A parameter that is not UTF-8 gets the server's usual decoding
(``U+FFFD`` for the bad bytes) and is named in the scope: the dependency that reads it refuses it
with :func:`check_decoded`, after authentication, as a 422 naming the parameter.

Requests whose path needs none of this (nearly all) are routed on the server's path untouched.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import unquote_to_bytes

from fastapi import Request
from fastapi.routing import APIRoute
from starlette.routing import Match

from aisopod_session.errors import InvalidInputError

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ENCODED_PARAMS = "aisopod.encoded_path_params"
"""Scope flag: routing saw :class:`RouteOnEncodedSlashes`' path, so parameters are encoded."""
UNDECODABLE = "aisopod.undecodable_path_params"
"""Scope entry: the names of the matched path parameters that are not UTF-8 once decoded."""

_LOSSY = re.compile("[/\udc80-\udcff]")  # a decoded "/" or an undecodable byte (surrogateescape)
_KEPT_ENCODED = re.compile("[%/\udc80-\udcff]")


def _percent(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"%{code - 0xDC00 if code >= 0xDC00 else code:02X}"


def routing_path(raw_path: bytes) -> str | None:
    """The path to route on for this raw path (query excluded), or None when the server's
    decoding of it loses nothing."""
    segments = [unquote_to_bytes(segment).decode("utf-8", "surrogateescape")
                for segment in raw_path.split(b"/")]
    if not any(_LOSSY.search(segment) for segment in segments):
        return None
    return "/".join(_KEPT_ENCODED.sub(_percent, segment) for segment in segments)


class RouteOnEncodedSlashes:
    """ASGI middleware: route on the raw path, so that ``%2F`` inside a part does not split it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = scope.get("raw_path") if scope["type"] == "http" else None
        if isinstance(raw, bytes):
            path = routing_path(raw.split(b"?", 1)[0])
            if path is not None:
                scope = dict(scope)
                scope["path"] = path
                scope[ENCODED_PARAMS] = True
        await self.app(scope, receive, send)


class DecodedPathRoute(APIRoute):
    """A route whose path parameters are the client's exact text, ``/`` and ``%`` included,
    when routing saw :class:`RouteOnEncodedSlashes`' path."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is Match.NONE or not scope.get(ENCODED_PARAMS):
            return match, child
        params = dict(child["path_params"])
        undecodable = set()
        for name in self.param_convertors:
            value = params.get(name)
            if not isinstance(value, str):
                continue
            encoded = unquote_to_bytes(value)
            try:
                params[name] = encoded.decode("utf-8")
            except UnicodeDecodeError:
                params[name] = encoded.decode("utf-8", "replace")
                undecodable.add(name)
        child["path_params"] = params
        child[UNDECODABLE] = frozenset(undecodable)
        return match, child


def check_decoded(request: Request, *names: str) -> None:
    """Refuse the first of these path parameters that is not UTF-8 once percent-decoded."""
    undecodable = request.scope.get(UNDECODABLE, ())
    for name in names:
        if name in undecodable:
            raise InvalidInputError.for_field(name, "is not valid UTF-8 once percent-decoded")
