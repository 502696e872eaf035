"""Strict JSON values: what can be stored and read back unchanged.

Python's ``json`` module silently turns tuples into lists, non-string keys into strings and
writes ``NaN``, none of which would read back equal. The store only accepts values that survive
the round trip exactly, and says where the first bad one is.
"""

from __future__ import annotations

import json
import math
from typing import Any

from aisopod_session.limits import MAX_JSON_DEPTH

__all__ = ["JsonError", "check_json", "dumps", "loads"]



class JsonError(ValueError):
    """A value is not plain JSON; the message names the path to the offending part."""


def check_json(value: Any, path: str = "") -> Any:
    """Return ``value`` if it is plain JSON (dict/list/str/int/float/bool/None), else raise.

    Tuples are not accepted: they would come back as lists and compare unequal.
    """
    _walk(value, path, 0)
    return value


def _walk(value: Any, path: str, depth: int) -> None:
    if depth > MAX_JSON_DEPTH:
        raise JsonError(f"{path or 'value'}: nested deeper than {MAX_JSON_DEPTH} levels")
    kind = type(value)
    if kind is str:
        if not value.isascii():
            _check_encodable(value, path)
        return
    if value is None or kind is bool or kind is int:
        return
    if kind is float:
        if not math.isfinite(value):
            raise JsonError(f"{path or 'value'}: {value!r} is not a JSON number")
        return
    if kind is list:
        for index, item in enumerate(value):
            _walk(item, f"{path}[{index}]", depth + 1)
        return
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise JsonError(f"{path or 'value'}: object key {key!r} is not a string")
            _check_encodable(key, path)
            _walk(item, f"{path}.{key}" if path else key, depth + 1)
        return
    raise JsonError(f"{path or 'value'}: {kind.__name__} is not a JSON value")


def _check_encodable(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise JsonError(f"{path or 'value'}: text contains a lone surrogate") from None


# One encoder for every call: json.dumps with options builds a new one each time (~3 µs).
_ENCODE = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


def dumps(value: Any) -> str:
    """Compact, deterministic-enough JSON text for storage (key order is kept as given)."""
    return _ENCODE(value)


loads = json.loads
