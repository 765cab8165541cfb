"""Stripe: signature checks and event parsing (``webhook``), Stripe JSON → movements (``translate``),
Stripe's own minor units (``currency``) and the API adapter on the official SDK (``api``)."""
