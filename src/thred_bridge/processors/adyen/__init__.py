"""Adyen: Standard-webhook items and their per-item HMAC (``notification``), Adyen's own minor units
(``currency``), the settlement details report (``report``, rows; ``batch``, one batch's summary), which
Adyen reference names which bridge object (``references``), and Adyen data → movements (``translate``,
``translate_payouts``). All pure: no I/O, no SDK."""
