"""schemathesis over Thred's published API document, against the Thred sandbox on a real loopback server.

The document (``fixtures/thred/openapi.yaml``, a verbatim copy of the reconstructed contract kept beside the
product; refresh it by copying the contract again) describes more of Thred than the bridge uses; the
operations the sandbox implements are fuzzed, everything else is left out. Every generated request, valid or
not, must get an answer that is not a server error, in JSON, with a status the sandbox means; one without a
valid token must be refused (401/403) and change nothing. Authorized cases run against one business with a
real token, so they reach the sandbox's validation and books, not only its authentication.

The bridge's own document (``/api/openapi.json``) is fuzzed against a ``serve`` process in
``tests/e2e/test_fuzz_bridge.py``.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from thred_bridge.sandbox import create_app

DOCUMENT = Path(__file__).resolve().parents[2] / "fixtures" / "thred" / "openapi.yaml"
BUSINESS = "biz-fuzz"


def _served() -> set[tuple[str, str]]:
    """(method, path) of every route the sandbox serves, from the app itself."""
    served: set[tuple[str, str]] = set()
    for route in create_app().routes:
        for method in getattr(route, "methods", None) or ():
            if method != "HEAD":
                served.add((method, getattr(route, "path", "")))
    return served


SERVED = _served()
SCHEMA = schemathesis.openapi.from_path(DOCUMENT).include(
    lambda ctx: (ctx.operation.method.upper(), ctx.operation.path) in SERVED
)
EXAMPLES = settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))


class Sandbox:
    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        config = uvicorn.Config(create_app(), host="127.0.0.1", port=self.port, log_level="error")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="sandbox", daemon=True)
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.token = ""
        self.http = httpx.Client(base_url=self.base_url, timeout=10)  # one client: each new one builds TLS state

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the sandbox did not start")
            time.sleep(0.02)
        partner = self.http.post("/v1/platform/oauth2/token/", auth=("fuzz-partner", "fuzz-key"))
        bearer = {"Authorization": f"Bearer {partner.json()['access_token']}"}
        business = self.http.post(f"/v1/platform/{BUSINESS}/oauth2/token/", headers=bearer)
        self.token = business.json()["access_token"]

    def stop(self) -> None:
        self.http.close()
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def state(self) -> Any:
        return self.http.get("/_sandbox/state").json()


def _running() -> Iterator[Sandbox]:
    running = Sandbox()
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    yield from _running()


@pytest.fixture(scope="module")
def untouched() -> Iterator[Sandbox]:
    """A sandbox that only ever sees requests without a valid token: its state must stay as it started."""
    yield from _running()


def _answered_in_json(response: Any) -> None:
    if response.status_code in (204, 304):
        return
    kind = response.headers.get("content-type", "")
    kind = kind[0] if isinstance(kind, list) else kind
    assert kind.startswith("application/json"), f"{response.status_code} answered as {kind!r}"


def test_the_sandbox_operations_are_fuzzed() -> None:
    """The filter keeps what the sandbox serves (so a renamed path cannot quietly empty the run)."""
    operations = {(op.method.upper(), op.path) for op in (r.ok() for r in SCHEMA.get_all_operations())}  # type: ignore[union-attr]
    assert len(operations) >= 15, operations
    assert ("POST", "/v1/platform/businesses/{business_id}/invoices/payments/") in operations
    assert ("POST", "/v1/platform/businesses/{business_id}/payouts/") in operations


@SCHEMA.parametrize()
@EXAMPLES
def test_authorized_requests_never_break_the_sandbox(case: schemathesis.Case[Any], sandbox: Sandbox) -> None:
    if "business_id" in (case.path_parameters or {}):
        case.path_parameters = {**(case.path_parameters or {}), "business_id": BUSINESS}
    headers = {"Authorization": f"Bearer {sandbox.token}"}
    if case.path in ("/v1/platform/oauth2/token/",):
        headers = {}  # the partner endpoint takes Basic auth: the generated credentials, any accepted
    response = case.call(base_url=sandbox.base_url, headers=headers, timeout=10)
    case.validate_response(response, checks=[not_a_server_error])
    _answered_in_json(response)


@SCHEMA.parametrize()
@EXAMPLES
def test_unauthorized_requests_are_refused_and_change_nothing(case: schemathesis.Case[Any], untouched: Sandbox) -> None:
    if case.path in ("/v1/platform/oauth2/token/",):
        return  # the token endpoint is where a partner without a token starts
    before = untouched.state()
    response = case.call(base_url=untouched.base_url, headers={"Authorization": "Bearer not-a-token"}, timeout=10)
    case.validate_response(response, checks=[not_a_server_error])
    refusals = (401, 403) if case.method.upper() == case.operation.method.upper() else (401, 403, 405)
    assert response.status_code in refusals, (case.method, response.status_code, response.text[:200])
    assert untouched.state() == before


def test_the_authorized_cases_reached_the_books(sandbox: Sandbox) -> None:
    """Runs after the authorized fuzzing (file order): some of its requests were valid enough to be booked,
    so the fuzzing went past authentication and validation into the sandbox's books."""
    books = sandbox.state()["businesses"].get(BUSINESS, {})
    assert sum(len(books.get(kind, [])) for kind in ("customers", "invoices")) > 0, books.keys()
