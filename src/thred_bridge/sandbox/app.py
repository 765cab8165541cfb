"""The Thred sandbox as a Starlette app: :func:`create_app` wires the routes to one :class:`Books`.

It behaves like Thred for every endpoint the bridge uses (see :mod:`.routes_auth` and
:mod:`.routes_records` for the routes and response shapes, :mod:`.handling` for the two error bodies,
:mod:`.books` for the rules) and adds sandbox-only controls (:mod:`.routes_sandbox`): injected faults,
a state dump, request counts, and ``POST …/payouts/{payout_id}/reconcile/``.

Paths are Thred's, under ``/v1/platform/`` with a trailing slash; the same path without it is accepted
too (rewritten, not redirected). The app's :class:`Books` is at ``app.state.books``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from thred_bridge.sandbox import handling
from thred_bridge.sandbox.books import Books
from thred_bridge.sandbox.ledger import SandboxError
from thred_bridge.sandbox.routes_auth import auth_routes
from thred_bridge.sandbox.routes_records import record_routes
from thred_bridge.sandbox.routes_sandbox import Controls, Plumbing, sandbox_routes


def create_app(
    *,
    path: str | None = None,
    partners: Mapping[str, str] | None = None,
    auto_create_businesses: bool = True,
    token_ttl: int = 3600,
    clock: Callable[[], datetime] | None = None,
) -> Starlette:
    """A Thred stand-in.

    ``path``: a SQLite file that keeps the state across restarts (created if missing); None keeps it in
    memory. ``partners``: ``{partner_id: api_key}`` accepted by the token endpoint; None accepts any Basic
    credentials. ``auto_create_businesses``: minting a business token for an unknown business id creates
    the business (a sandbox convenience); when False that is 404 ``business_not_found``. ``token_ttl``:
    seconds a token lives. ``clock``: the time source for token expiry and timestamps (default: UTC now).
    """
    if token_ttl < 1:
        raise ValueError("token_ttl must be at least 1 second")
    books = Books(path, clock)
    controls = Controls()
    routes: list[BaseRoute] = [
        *auth_routes(books, partners, auto_create_businesses=auto_create_businesses, token_ttl=token_ttl),
        *record_routes(books),
        *sandbox_routes(books, controls),
    ]

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            books.close()

    app = Starlette(
        routes=routes,
        middleware=[Middleware(Plumbing, routes=routes, controls=controls)],
        exception_handlers={SandboxError: handling.on_sandbox_error, HTTPException: handling.on_http_error},
        lifespan=lifespan,
    )
    app.state.books = books
    app.state.controls = controls
    return app
