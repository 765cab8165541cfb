"""A stand-in for Adyen's report download host, and a settlement details report builder.

``create_app(host)`` serves ``GET /reports/download/MerchantAccount/{merchant}/{file}`` from the CSV bytes
put in a :class:`ReportFiles`, behind HTTP Basic auth (the report user), as Adyen's Customer Area does;
an unknown file is 404, missing or wrong credentials 401, and ``fail_next`` makes the next downloads
answer an error status (e.g. 503) first.

:class:`SettlementReport` writes a settlement details report in the legacy 30-column layout or the newer
one that appends Adyen's 2023+ columns, from rows given in minor units, and ends it with the batch's
MerchantPayout row, so a test can make a report of any size without writing CSV by hand. A row can be
processed in another currency than the batch's (``processed=(currency, minor, rate)``): its gross is then in
that currency with the ``Exchange Rate``, and its net in the batch's, as Adyen converts a payment.
"""

from __future__ import annotations

import base64
import csv
import hmac
import io
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from thred_bridge.domain.money import iso_exponent

LEGACY_COLUMNS: tuple[str, ...] = (
    "Company Account", "Merchant Account", "Psp Reference", "Merchant Reference", "Payment Method",
    "Creation Date", "TimeZone", "Type", "Modification Reference", "Gross Currency", "Gross Debit (GC)",
    "Gross Credit (GC)", "Exchange Rate", "Net Currency", "Net Debit (NC)", "Net Credit (NC)", "Commission (NC)",
    "Markup (NC)", "Scheme Fees (NC)", "Interchange (NC)", "Payment Method Variant",
    "Modification Merchant Reference", "Batch Number", "Reserved4", "Reserved5", "Reserved6", "Reserved7",
    "Reserved8", "Reserved9", "Reserved10",
)  # fmt: skip
"""The legacy 30-column header (PROCESSORS.md §2.5)."""

NEW_COLUMNS: tuple[str, ...] = (
    *LEGACY_COLUMNS,
    "Booking Date", "Booking Date TimeZone", "Metadata", "Balance Currency", "Net Debit (BC)", "Net Credit (BC)",
    "Payment Fees (NC)", "DCC Markup (NC)", "Funds Destination", "Balance Platform Debit",
    "Balance Platform Credit", "Shopper Country", "Clearing Network", "Merchant Order Reference",
    "Dispute Reference", "ARN", "Settlement Flow", "Authorisation Code", "Gross Fees (NC)",
)  # fmt: skip
"""The newer layout: the legacy columns and the ones Adyen appends since 2023."""


@dataclass
class ReportFiles:
    """What the report host serves, who may download, and what it was asked."""

    username: str
    password: str
    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[tuple[str, int]] = field(default_factory=list)
    faults: list[int] = field(default_factory=list)

    def fail_next(self, status: int, times: int = 1) -> None:
        self.faults.extend([status] * times)


def _authorised(request: Request, files: ReportFiles) -> bool:
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("basic "):
        return False
    try:
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except ValueError:
        return False
    return hmac.compare_digest(user, files.username) and hmac.compare_digest(password, files.password)


def create_app(files: ReportFiles) -> Starlette:
    async def download(request: Request) -> Response:
        name = request.path_params["file"]
        if not _authorised(request, files):
            answer: Response = PlainTextResponse("unauthorized", 401, {"WWW-Authenticate": 'Basic realm="Adyen"'})
        elif files.faults:
            answer = PlainTextResponse("fault", files.faults.pop(0))
        elif name not in files.files:
            answer = PlainTextResponse("not found", 404)
        else:
            answer = Response(files.files[name], media_type="text/csv")
        files.requests.append((request.url.path, answer.status_code))
        return answer

    return Starlette(routes=[Route("/reports/download/MerchantAccount/{merchant}/{file}", download)])


Processed = tuple[str, int, str]
"""(processing currency, amount in its minor units, exchange rate to the batch's currency)."""


def converted(processed: Processed, currency: str) -> int:
    """A processed amount in ``currency``'s minor units at its rate, rounded half up (as the report shows it)."""
    source, minor, rate = processed
    value = Decimal(minor).scaleb(-iso_exponent(source)) * Decimal(rate)
    return int(
        value.quantize(Decimal(1).scaleb(-iso_exponent(currency)), rounding=ROUND_HALF_UP).scaleb(
            iso_exponent(currency)
        )
    )


def _amount(minor: int | None, currency: str) -> str:
    if minor is None:
        return ""
    return f"{Decimal(minor).scaleb(-iso_exponent(currency)):f}"


@dataclass
class SettlementReport:
    """One payable batch's settlement details report, built row by row (amounts in ISO minor units)."""

    batch: int
    merchant_account: str = "TestMerchant"
    currency: str = "EUR"
    company: str = "TestCompany"
    created: str = "2026-03-02 10:00:00"
    timezone: str = "CET"
    rows: list[dict[str, str]] = field(default_factory=list)
    net_total: int = 0

    def _row(self, kind: str, *, psp: str = "", modification: str = "", reference: str = "", method: str = "",
             gross_debit: int | None = None, gross_credit: int | None = None, net_debit: int | None = None,
             net_credit: int | None = None, commission: int | None = None,
             processed: Processed | None = None) -> None:  # fmt: skip
        money = gross_debit is not None or gross_credit is not None
        c = self.currency
        gc, rate = (processed[0], processed[2]) if processed is not None else (c, "1")
        self.rows.append(
            {
                "Company Account": self.company, "Merchant Account": self.merchant_account, "Psp Reference": psp,
                "Merchant Reference": reference, "Payment Method": method, "Creation Date": self.created,
                "TimeZone": self.timezone, "Type": kind, "Modification Reference": modification,
                "Gross Currency": gc if money else "", "Gross Debit (GC)": _amount(gross_debit, gc),
                "Gross Credit (GC)": _amount(gross_credit, gc), "Exchange Rate": rate if money else "",
                "Net Currency": c, "Net Debit (NC)": _amount(net_debit, c), "Net Credit (NC)": _amount(net_credit, c),
                "Commission (NC)": _amount(commission, c), "Payment Fees (NC)": _amount(commission, c),
                "Payment Method Variant": method, "Batch Number": str(self.batch),
            }
        )  # fmt: skip
        self.net_total += (net_credit or 0) - (net_debit or 0)

    def _gross(self, gross: int | None, processed: Processed | None) -> tuple[int, int]:
        """(the gross as the row states it, in its gross currency; the same in the batch's currency)."""
        if processed is None:
            if gross is None:
                raise ValueError("a gross amount, or what was processed")
            return gross, gross
        return processed[1], converted(processed, self.currency)

    def settled(self, psp: str, gross: int | None, fee: int, *, reference: str = "", method: str = "visa",
                processed: Processed | None = None) -> None:  # fmt: skip
        """A captured payment settled: ``gross`` in (or ``processed`` converted), ``fee`` kept."""
        stated, settled = self._gross(gross, processed)
        self._row("Settled", psp=psp, modification=psp + "C", reference=reference, method=method,
                  gross_credit=stated, net_credit=settled - fee, commission=fee or None,
                  processed=processed)  # fmt: skip

    def refunded(self, psp: str, refund: str, gross: int | None, fee: int = 0, *, method: str = "visa",
                 processed: Processed | None = None) -> None:  # fmt: skip
        """Refund ``refund`` of payment ``psp``: ``gross`` out (or ``processed`` converted), plus ``fee``."""
        stated, settled = self._gross(gross, processed)
        self._row("Refunded", psp=psp, modification=refund, method=method,
                  gross_debit=stated, net_debit=settled + fee, commission=fee or None,
                  processed=processed)  # fmt: skip

    def chargeback(self, psp: str, dispute: str, gross: int | None, fee: int = 0, *, method: str = "visa",
                   processed: Processed | None = None) -> None:  # fmt: skip
        """Chargeback ``dispute`` on payment ``psp``: ``gross`` out (or ``processed`` converted), plus the
        chargeback ``fee``."""
        stated, settled = self._gross(gross, processed)
        self._row("Chargeback", psp=psp, modification=dispute, method=method,
                  gross_debit=stated, net_debit=settled + fee, commission=fee or None,
                  processed=processed)  # fmt: skip

    def fee(self, amount: int, text: str = "Transaction Fees") -> None:
        """A fee row: ``amount`` out of the balance."""
        self._row("Fee", modification=text, net_debit=amount)

    def csv(self, layout: str = "legacy", *, payout: bool = True) -> bytes:
        """The file: header, rows, and (``payout``) the MerchantPayout row paying out the whole balance."""
        columns = NEW_COLUMNS if layout == "new" else LEGACY_COLUMNS
        rows = list(self.rows)
        if payout:
            rows.append(
                {
                    "Company Account": self.company, "Merchant Account": self.merchant_account,
                    "Creation Date": self.created, "TimeZone": self.timezone, "Type": "MerchantPayout",
                    "Modification Reference": f"TX{self.batch:08d}XT batch {self.batch}, {self.merchant_account}",
                    "Net Currency": self.currency, "Net Debit (NC)": _amount(self.net_total, self.currency),
                    "Batch Number": str(self.batch),
                }
            )  # fmt: skip
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([row.get(name, "") for name in columns])
        return out.getvalue().encode("utf-8")
