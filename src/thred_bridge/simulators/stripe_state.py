"""The simulated Stripe's bookkeeping: objects per account (``None`` = the platform), ids, lists in
Stripe's order, event envelopes, signed deliveries, injected faults and the requests answered.

:class:`~thred_bridge.simulators.stripe_world.StripeWorld` builds on it with the objects that move money.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import random
import string
import time
from collections.abc import Callable
from dataclasses import dataclass

from thred_bridge.simulators.common import Fault
from thred_bridge.simulators.stripe_objects import API_VERSION, Json


@dataclass(frozen=True, slots=True)
class SeenRequest:
    """One request the simulator answered."""

    method: str
    path: str
    account: str | None
    status: int


class StripeState:
    """Stripe's objects per account (``None`` = the platform); reads return copies."""

    def __init__(self, *, seed: int | None = None, clock: Callable[[], int] | None = None) -> None:
        self._rng = random.Random(seed)
        self.clock: Callable[[], int] = clock or (lambda: int(time.time()))
        self._objects: dict[str | None, dict[str, Json]] = {None: {}}
        self._seq: dict[tuple[str | None, str], int] = {}
        self._unsettled: dict[tuple[str | None, str], Json] = {}
        self._uncaptured: dict[tuple[str | None, str], str] = {}  # authorised charge → its settlement currency
        self._rates: dict[tuple[str | None, str], str] = {}  # FX charge → its exchange rate
        self._dispute_bts: dict[tuple[str | None, str], list[str]] = {}
        self._paid_out: dict[tuple[str | None, str], str] = {}  # balance transaction → the payout that swept it
        self._faults: list[Fault] = []
        self.requests: list[SeenRequest] = []
        self.stripe_notice: str | None = None
        """When set, every answer carries it as a ``Stripe-Notice`` header."""

    def new_id(self, prefix: str, length: int = 24) -> str:
        alphabet = string.ascii_letters + string.digits
        return f"{prefix}_{''.join(self._rng.choice(alphabet) for _ in range(length))}"

    def add_account(self, account: str) -> None:
        self._objects.setdefault(account, {})

    @property
    def accounts(self) -> frozenset[str]:
        return frozenset(a for a in self._objects if a is not None)

    def _store(self, obj: Json, account: str | None) -> Json:
        self._objects.setdefault(account, {})[obj["id"]] = obj
        self._seq.setdefault((account, obj["id"]), len(self._seq))
        return self._render(obj, account)

    def _render(self, obj: Json, account: str | None) -> Json:
        found = copy.deepcopy(obj)
        if found.get("object") == "dispute":
            ids = self._dispute_bts.get((account, found["id"]), [])
            found["balance_transactions"] = [copy.deepcopy(self._objects[account][t]) for t in ids]
        return found

    def _live(self, object_id: str, kind: str, account: str | None) -> Json:
        found = self._objects.get(account, {}).get(object_id)
        if found is None or found.get("object") != kind:
            raise KeyError(f"no {kind} {object_id} on {account or 'the platform'}")
        return found

    def get(self, object_id: str, *, account: str | None = None) -> Json | None:
        """A copy of the stored object, or None."""
        found = self._objects.get(account, {}).get(object_id)
        return self._render(found, account) if found is not None else None

    def listed(self, kind: str, *, account: str | None = None, **where: str) -> list[Json]:
        """Copies of every ``kind`` object whose fields equal ``where``, newest first, as Stripe lists them.

        ``payout=po_…`` selects the balance transactions that payout paid out.
        """
        payout = where.pop("payout", None)
        found = [
            o
            for o in self._objects.get(account, {}).values()
            if o.get("object") == kind
            and all(o.get(k) == v for k, v in where.items())
            and (payout is None or self._paid_out.get((account, o["id"])) == payout)
        ]
        found.sort(key=lambda o: (o.get("created", 0), self._seq[(account, o["id"])]), reverse=True)
        return [self._render(o, account) for o in found]

    def reconciliation_of(self, payout_id: str, *, account: str | None = None) -> str | None:
        """The payout's ``reconciliation_status`` (``not_applicable`` for a manual one); None if there is none."""
        found = self._objects.get(account, {}).get(payout_id)
        return str(found["reconciliation_status"]) if found is not None and found.get("object") == "payout" else None

    def event(self, type: str, obj: Json, *, account: str | None = None) -> Json:
        """A snapshot event envelope around ``obj``, as Stripe would post it."""
        envelope: Json = {"id": self.new_id("evt"), "object": "event"}
        if account is not None:
            envelope["account"] = account
        envelope.update(api_version=API_VERSION, created=self.clock(), data={"object": copy.deepcopy(obj)})
        envelope.update(livemode=False, pending_webhooks=1, type=type)
        envelope["request"] = {"id": self.new_id("req", 14), "idempotency_key": self.new_id("k", 32)[2:]}
        return envelope

    def signed_delivery(
        self, event: Json, secret: str, *, timestamp: int | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """The body and headers Stripe would POST for ``event``: pretty-printed UTF-8 JSON, signed."""
        body = json.dumps(event, indent=2, ensure_ascii=False).encode("utf-8")
        t = self.clock() if timestamp is None else timestamp
        mac = hmac.new(secret.encode("utf-8"), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
        return body, {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            "Stripe-Signature": f"t={t},v1={mac}",
        }

    def fail_next(self, path_contains: str, status: int, times: int = 1, retry_after: int | None = None) -> None:
        """The next ``times`` requests whose path contains ``path_contains`` answer ``status``."""
        self._faults.append(Fault(path_contains, status, times, retry_after))

    def take_fault(self, path: str) -> tuple[int, int | None] | None:
        """Consume the first pending fault for ``path``: its status and Retry-After."""
        for fault in self._faults:
            if fault.remaining > 0 and fault.path_contains in path:
                fault.remaining -= 1
                return fault.status, fault.retry_after
        return None
