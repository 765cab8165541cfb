"""External-id rules: `{processor}_{processor object id}`, with a suffix where one object becomes two
records of the same kind (INTERFACE.md). One processor object is one Thred record.
"""

from __future__ import annotations

import hashlib

MAX_EXTERNAL_ID = 255


def external_id(processor: str, object_id: str, suffix: str | None = None) -> str:
    """``stripe`` + ``ch_1`` → ``stripe_ch_1``; with suffix ``line`` → ``stripe_ch_1_line``."""
    if not object_id:
        raise ValueError("an external id needs a processor object id")
    value = f"{processor}_{object_id}" + (f"_{suffix}" if suffix else "")
    if len(value) > MAX_EXTERNAL_ID:
        digest = hashlib.sha256(value.encode()).hexdigest()[:16]
        value = value[: MAX_EXTERNAL_ID - 17] + "_" + digest
    return value


def customer_external_id(processor: str, party_key: str, account: str | None) -> str:
    """A customer per processor customer; ``walkin`` and billing digests are scoped to a Connect account."""
    if account and not party_key.startswith("cus_"):
        return external_id(processor, f"{account}_{party_key}")
    return external_id(processor, party_key)
