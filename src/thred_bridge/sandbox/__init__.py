"""The Thred sandbox: a local stand-in for Thred's Partner API that the bridge talks to over HTTP.

Dry runs, the demo and the end-to-end tests point the bridge at it. It keeps Thred's routes, token flow,
``external_id`` and ``Idempotency-Key`` idempotency, ordering errors and payout arithmetic, and adds
sandbox-only controls (fault injection, a state dump). It imports nothing from the bridge but the pure
money helpers, so a mistake in the bridge's reading of Thred is not repeated here.

    app = create_app(path="thred-sandbox.db")  # any ASGI server; app.state.books holds the Books
"""

from thred_bridge.sandbox.app import create_app
from thred_bridge.sandbox.books import Books

__all__ = ["Books", "create_app"]
