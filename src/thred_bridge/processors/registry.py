"""REGISTRY: the processors the bridge knows, by name. A new processor is one more entry here."""

from __future__ import annotations

from thred_bridge.processors.adyen.download import DEFAULT_REPORT_HOSTS
from thred_bridge.processors.adyen.sync import AdyenProcessor
from thred_bridge.processors.base import Processor
from thred_bridge.processors.mollie.api import DEFAULT_BASE_URL as MOLLIE_API_BASE
from thred_bridge.processors.mollie.sync import MollieProcessor
from thred_bridge.processors.stripe.sync import StripeProcessor


def registry(
    *,
    stripe_api_base: str,
    adyen_report_hosts: str = DEFAULT_REPORT_HOSTS,
    mollie_api_base: str = MOLLIE_API_BASE,
) -> dict[str, Processor]:
    """Every processor, configured with its API base (Adyen: the hosts reports may be downloaded from)."""
    return {
        "stripe": StripeProcessor(stripe_api_base),
        "adyen": AdyenProcessor(adyen_report_hosts),
        "mollie": MollieProcessor(mollie_api_base),
    }
