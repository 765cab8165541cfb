"""Which Adyen reference names which bridge object, for webhooks and settlement reports alike.

External ids are ``adyen_{pspReference}`` (INTERFACE.md); this module picks the pspReference, so that
a webhook and the settlement report that later settles the same money name the same Thred record:

- a payment is its own pspReference: an AUTHORISATION's ``pspReference``, a CAPTURE's
  ``originalReference``, a report row's ``Psp Reference`` (Adyen: "the original authorisation's PSP
  reference", PROCESSORS.md §2.5);
- a refund is the refund modification's pspReference: a REFUND's ``pspReference``, a ``Refunded`` row's
  ``Modification Reference``;
- a dispute is the dispute's pspReference, which "all events related to a dispute" share (Adyen's dispute
  webhook docs), and which a ``Chargeback`` row carries as its ``Modification Reference``. Because the
  chargeback, a second chargeback and a lost pre-arbitration each take money, the later stages get a short
  suffix ("with a short suffix where one processor object becomes two Thred records of the same kind");
- a payout is a settlement batch of a merchant account: ``{merchantAccount}_batch_{n}``.
"""

from __future__ import annotations

from typing import Literal

DisputeStage = Literal["chargeback", "second_chargeback", "prearbitration"]

_STAGE_SUFFIX: dict[DisputeStage, str] = {"second_chargeback": "second_chargeback", "prearbitration": "prearbitration"}

DISPUTE_STAGE_BY_EVENT_CODE: dict[str, DisputeStage] = {
    "CHARGEBACK": "chargeback",
    "CHARGEBACK_REVERSED": "chargeback",
    "SECOND_CHARGEBACK": "second_chargeback",
    "PREARBITRATION_LOST": "prearbitration",
    "PREARBITRATION_WON": "prearbitration",
}
"""A dispute webhook's stage. A reversal (or a won pre-arbitration) books a DisputeCredit, whose external id
the domain suffixes ``_reinstated``, so it shares its stage's id without clashing with the debit's."""


def dispute_object_id(dispute_psp_reference: str, stage: DisputeStage) -> str:
    """``QFQ…`` → ``QFQ…`` (chargeback), ``QFQ…_second_chargeback``, ``QFQ…_prearbitration``."""
    if not dispute_psp_reference:
        raise ValueError("a dispute needs its pspReference")
    suffix = _STAGE_SUFFIX.get(stage)
    return f"{dispute_psp_reference}_{suffix}" if suffix else dispute_psp_reference


def payout_object_id(merchant_account: str, batch_number: int) -> str:
    """A settlement batch's payout: ``WikimediaCOM_batch_3``. Batch numbers count per merchant account."""
    if not merchant_account:
        raise ValueError("a settlement batch needs its merchant account")
    return f"{merchant_account}_batch_{batch_number}"
