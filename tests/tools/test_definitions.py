"""The tools' specifications: valid JSON Schema (Draft 2020-12), within OpenAI's function-calling
strict mode, and what ``call`` accepts is what they describe."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from aisopod_session.tools import TOOL_NAMES, ToolPolicy, definitions

STRICT_KEYWORDS = {
    # what strict mode supports (anything else is refused by the API)
    "type", "description", "properties", "required", "additionalProperties", "items", "enum",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minItems",
    "maxItems", "pattern", "format", "anyOf", "$ref", "$defs", "const",
}
STRICT_TYPES = {"string", "number", "integer", "boolean", "object", "array", "null"}


def strict_mode_problems(schema: dict[str, Any], where: str = "parameters") -> list[str]:
    problems = [f"{where}: keyword {word!r}" for word in schema if word not in STRICT_KEYWORDS]
    kinds = schema.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds] if kinds else []
    problems += [f"{where}: type {kind!r}" for kind in kinds if kind not in STRICT_TYPES]
    if "object" in kinds:
        properties = schema.get("properties", {})
        if schema.get("additionalProperties") is not False:
            problems.append(f"{where}: additionalProperties must be false")
        if sorted(schema.get("required", [])) != sorted(properties):
            problems.append(f"{where}: every property must be required")
        for name, sub in properties.items():
            problems += strict_mode_problems(sub, f"{where}.{name}")
    if "array" in kinds and "items" in schema:
        problems += strict_mode_problems(schema["items"], f"{where}[]")
    return problems


@pytest.mark.parametrize("policy", [ToolPolicy(), ToolPolicy(max_list=7, max_wait_seconds=0)],
                         ids=["default", "bounded"])
def test_every_definition_is_json_schema_in_strict_mode(policy: ToolPolicy) -> None:
    specs = definitions(policy)
    assert [spec["name"] for spec in specs] == list(TOOL_NAMES)
    for spec in specs:
        assert spec["type"] == "function" and spec["strict"] is True
        assert spec["description"]
        jsonschema.Draft202012Validator.check_schema(spec["parameters"])
        assert spec["parameters"]["type"] == "object"
        assert strict_mode_problems(spec["parameters"]) == [], spec["name"]


def test_the_strict_mode_check_finds_what_strict_mode_refuses() -> None:
    loose = {"type": "object", "properties": {"a": {"type": "string", "default": "x"},
                                               "b": {"type": "object", "properties": {}}},
             "required": ["b"]}
    assert strict_mode_problems(loose) == [
        "parameters: additionalProperties must be false",
        "parameters: every property must be required",
        "parameters.a: keyword 'default'",
        "parameters.b: additionalProperties must be false",
    ]


def test_disabled_tools_are_not_defined() -> None:
    policy = ToolPolicy(tools={"sessions_send": False, "sessions_search": False})
    assert [spec["name"] for spec in definitions(policy)] == [
        "sessions_list", "sessions_history", "session_status"]


EXAMPLES: dict[str, dict[str, Any]] = {
    "sessions_list": {"kinds": ["dm"], "channel": None, "agent_id": None,
                      "active_minutes": 60, "limit": 5, "include_preview": True},
    "sessions_history": {"session_key": None, "limit": 10, "offset": 0, "include_tools": False},
    "sessions_search": {"query": "invoice", "session_key": None, "limit": None},
    "session_status": {"session_key": None},
    "sessions_send": {"session_key": "agent:bot:web:main:dm:x", "message": "hi",
                      "timeout_seconds": None},
}


@pytest.mark.parametrize("name", TOOL_NAMES)
def test_a_model_s_strict_arguments_validate(name: str) -> None:
    spec = next(spec for spec in definitions() if spec["name"] == name)
    jsonschema.validate(EXAMPLES[name], spec["parameters"])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**EXAMPLES[name], "surprise": 1}, spec["parameters"])
