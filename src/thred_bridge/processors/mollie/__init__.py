"""Mollie: amounts as decimal strings (``money``), classic and next-gen webhook deliveries (``webhook``),
readers shared by the translators (``fields``), and Mollie JSON → movements: payments (``translate``),
refunds and chargebacks (``translate_refunds``), settlements (``translate_settlements``).

Everything here is pure (no network, database, clock or settings); the API adapter is written apart.
"""
