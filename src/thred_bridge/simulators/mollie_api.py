"""A simulated Mollie API: in-memory payments, refunds, chargebacks, captures, settlements and balance
transactions (:class:`MollieWorld`) served over HTTP with Mollie's ``/v2`` routes, bearer auth (profile
API key vs organization access token), HAL lists with ``from`` paging and error JSON (:func:`create_app`).
Used by tests (``thred_bridge.testing``).

It shares no code with ``processors/mollie``: amounts and signatures are written here again, so that a
mistake in the bridge's Mollie code is not mirrored by the stand-in it is tested against. The state is in
``mollie_world``, the routes in ``mollie_routes``; this module is their public face.
"""

from __future__ import annotations

from thred_bridge.simulators.common import ticking_clock
from thred_bridge.simulators.mollie_routes import create_app
from thred_bridge.simulators.mollie_world import Json, MollieWorld, SeenRequest, amount, minor_of

__all__ = ["Json", "MollieWorld", "SeenRequest", "amount", "create_app", "minor_of", "ticking_clock"]
