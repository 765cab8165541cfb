"""Sandbox-only controls under ``/_sandbox/`` (no authentication; Thred has nothing like them).

- ``POST /_sandbox/faults`` with ``{"path_contains": "/invoices/payments/", "status": 503, "times": 2,
  "retry_after": 1, "method": "POST", "when": "before"}``: the next ``times`` requests whose path contains
  ``path_contains`` (and whose method is ``method``, if given) fail with ``status`` and a guide-shaped body
  (``error_code`` ``rate_limited`` for 429, ``server_error`` for 5xx, else ``sandbox_fault``). A 429
  carries ``Retry-After`` (``retry_after``, default 1); other statuses carry it only when asked.
  ``when: "before"`` (the default) fails the request before the sandbox sees it; ``"after"`` lets the
  sandbox process it and then loses the response, as a timeout after commit would. Answers 201 with the
  pending faults; ``GET`` lists them, ``DELETE`` clears them (204).
- ``GET /_sandbox/state``: every record of every business in public form.
- ``GET /_sandbox/requests/count``: ``{"<METHOD> <route template>": n}`` for every request under ``/v1/``
  (faulted ones included); ``DELETE`` resets the counts.

:class:`Plumbing` is the ASGI middleware in front of the app: it adds the trailing slash Thred's paths end
with when a client leaves it off, counts requests and injects the faults.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from thred_bridge.sandbox import handling
from thred_bridge.sandbox.books import Books
from thred_bridge.sandbox.schemas import RequestBody


class Fault(RequestBody):
    path_contains: str = ""
    status: Annotated[int, Field(ge=400, le=599)] = 503
    times: Annotated[int, Field(ge=1)] = 1
    retry_after: Annotated[int, Field(ge=0)] | None = None
    method: str | None = None
    when: Literal["before", "after"] = "before"


@dataclass
class Controls:
    """The sandbox's mutable test controls (in memory only, never persisted)."""

    faults: list[dict[str, Any]] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)

    def take_fault(self, method: str, path: str) -> dict[str, Any] | None:
        for fault in self.faults:
            if fault["path_contains"] in path and fault["method"] in {None, method}:
                fault["times"] -= 1
                if fault["times"] == 0:
                    self.faults.remove(fault)
                return fault
        return None


def sandbox_routes(books: Books, controls: Controls) -> list[Route]:
    async def faults(request: Request) -> Response:
        if request.method == "POST":
            fault = await handling.body(request, Fault)
            controls.faults.append(fault.model_dump() | {"method": fault.method and fault.method.upper()})
            return JSONResponse({"faults": controls.faults}, status_code=201)
        if request.method == "DELETE":
            controls.faults.clear()
            return Response(status_code=204)
        return JSONResponse({"faults": controls.faults})

    async def state(_request: Request) -> Response:
        return JSONResponse(books.state())

    async def counts(request: Request) -> Response:
        if request.method == "DELETE":
            controls.counts.clear()
            return Response(status_code=204)
        return JSONResponse(dict(sorted(controls.counts.items())))

    return [
        Route("/_sandbox/faults", faults, methods=["GET", "POST", "DELETE"]),
        Route("/_sandbox/state", state, methods=["GET"]),
        Route("/_sandbox/requests/count", counts, methods=["GET", "DELETE"]),
    ]


class Plumbing:
    """Trailing slashes, request counts and injected faults, in front of the routes."""

    def __init__(self, app: ASGIApp, routes: list[BaseRoute], controls: Controls) -> None:
        self.app = app
        self.routes = routes
        self.controls = controls

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        if not scope["path"].endswith("/"):
            scope = {**scope, "path": scope["path"] + "/"}
            if scope.get("raw_path"):
                scope["raw_path"] += b"/"
        method = scope["method"]
        self.controls.counts[f"{method} {self._template(scope)}"] += 1
        fault = self.controls.take_fault(method, scope["path"])
        if fault is None:
            await self.app(scope, receive, send)
            return
        if fault["when"] == "after":

            async def lose(_message: Message) -> None:
                return None

            await self.app(scope, receive, lose)
        await _send_fault(send, fault)

    def _template(self, scope: Scope) -> str:
        partial = None
        for route in self.routes:
            match, _ = route.matches(scope)
            if match is Match.FULL and isinstance(route, Route):
                return route.path
            if match is Match.PARTIAL and isinstance(route, Route) and partial is None:
                partial = route.path
        return partial or str(scope["path"])


async def _send_fault(send: Send, fault: dict[str, Any]) -> None:
    status = int(fault["status"])
    code = "rate_limited" if status == 429 else "server_error" if status >= 500 else "sandbox_fault"
    body = json.dumps({"error": f"Injected fault (sandbox): HTTP {status}", "error_code": code, "details": {}})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    retry_after = fault["retry_after"] if fault["retry_after"] is not None else (1 if status == 429 else None)
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body.encode()})
