"""Property-based: schemathesis generates requests for every operation of /openapi.json — valid
ones and ones that break the schema — and checks every response against the document.

The app is loaded through its own ``/openapi.json`` (``schemathesis.openapi.from_asgi``, which
also runs the app's lifespan, opening the database) and called with the admin token. Every
schemathesis check runs except ``positive_data_acceptance``: it wants every schema-valid request
accepted, but some rules cannot be written in JSON Schema (a ``thread`` key's peer id is
``<group>/<thread>``; a cursor must be one the server issued; a name that is 256 characters
before lower-casing may be longer after), so those requests rightly get 422.

``AISOPOD_FUZZ_EXAMPLES`` raises the number of examples per operation for a longer hunt.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.python import asgi as schemathesis_asgi

from aisopod_session.service.app import create_app
from aisopod_session.service.config import ServiceConfig
from tests.service.conftest import ADMIN

EXAMPLES = int(os.environ.get("AISOPOD_FUZZ_EXAMPLES", "20"))

# The import body is JSON Lines: the generated string is sent as it is.
schemathesis.serializer.alias("application/x-ndjson", "text/plain")

OPERATIONS = [
    f"{method.upper()} {path}"
    for path, methods in create_app().openapi()["paths"].items()
    for method in methods
]
STREAMS = [label for label in OPERATIONS if label.endswith("/changes/stream")]
"""A valid request to a stream never ends: tests/service/test_changes_api.py covers them."""


def test_the_document_lists_every_route() -> None:
    from aisopod_session.service import app as service

    app = create_app()
    served = {f"{method} {route.path}"
              for router in (service.agents, service.details, service.runs, service.admin,
                             service.probes, service.agent_changes, service.admin_changes,
                             service.agent_search, service.admin_search,
                             service.webhooks, service._routes_tools.tools_routes)
              for route in router.routes
              if isinstance(route, APIRoute) and route.include_in_schema
              for method in route.methods}
    assert served == set(OPERATIONS)
    assert len(OPERATIONS) >= 26
    document = app.openapi()
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer",
        "description": document["components"]["securitySchemes"]["bearer"]["description"]}
    for label in OPERATIONS:
        method, path = label.split(" ", 1)
        responses = document["paths"][path][method.lower()]["responses"]
        problems = [status for status in responses if status.startswith(("4", "5"))]
        if path.startswith("/v1/"):
            assert {"400", "401", "403", "404", "409", "413", "422", "503"} <= set(problems)
        for status in problems:
            content = responses[status]["content"]
            assert list(content) == ["application/problem+json"], (label, status)


@pytest.mark.parametrize("label", [label for label in OPERATIONS if label not in STREAMS])
def test_operation_conforms(config: ServiceConfig, label: str) -> None:
    method, path = label.split(" ", 1)
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(config))
    operation = schema[path][method]
    # The token is fixed at generation, so a negative case never "breaks" the Authorization
    # header only to have it replaced by a valid one (the ignored_auth check still sends
    # requests without it and with a wrong one).
    strategy = st.one_of(*(operation.as_strategy(mode, headers=dict(ADMIN))
                           for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)))

    @given(case=strategy)
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        case.call_and_validate(excluded_checks=[schemathesis.checks.positive_data_acceptance])

    try:
        run()
    finally:
        schemathesis_asgi.shutdown_lifespans()  # closes the app's store
