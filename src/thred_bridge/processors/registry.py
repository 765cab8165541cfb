"""REGISTRY: the processors the bridge knows, by name. A new processor is one more entry here."""

from __future__ import annotations

from thred_bridge.processors.base import Processor
from thred_bridge.processors.stripe.sync import StripeProcessor


def registry(*, stripe_api_base: str) -> dict[str, Processor]:
    """Every processor, configured with its API base."""
    return {"stripe": StripeProcessor(stripe_api_base)}
