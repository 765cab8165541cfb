"""A simulated Stripe API: in-memory charges, balance transactions, customers, PaymentIntents, refunds,
disputes and payouts (:class:`StripeWorld`) served over HTTP with Stripe's routes, auth,
``Stripe-Account`` scoping, error and list envelopes (:func:`create_app`). Used by ``thred-bridge demo``
and by tests.

It shares no code with ``processors/stripe``: minor units, fees and signatures are written here
again, so that a mistake in the bridge's Stripe code is not mirrored by the stand-in it is tested
against. The state is in ``stripe_world``, the object shapes in ``stripe_objects``, the routes in
``stripe_routes``; this module is their public face.
"""

from __future__ import annotations

from thred_bridge.simulators.stripe_objects import API_VERSION, Json, default_fee, mask_key
from thred_bridge.simulators.stripe_routes import create_app
from thred_bridge.simulators.stripe_world import SeenRequest, StripeWorld

__all__ = ["API_VERSION", "Json", "SeenRequest", "StripeWorld", "create_app", "default_fee", "mask_key"]
