"""`thred-bridge`: argparse in, a service call, rich or JSON out.

Exit codes: 0 done; 1 the command ran and found a problem; 2 bad usage or configuration.
Expected failures print one line in the operator's terms, never a traceback.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from pydantic import ValidationError

from thred_bridge import __version__
from thred_bridge.entrypoints.output import fail
from thred_bridge.errors import BridgeError, ConfigError, SchemaOutdatedError, UnknownConnectionError
from thred_bridge.malloc import return_large_blocks
from thred_bridge.settings import Settings

Handler = Callable[[argparse.Namespace, Settings], int]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="thred-bridge", description="Stripe, Adyen and Mollie activity into Thred's books, to the cent."
    )
    parser.add_argument("--version", action="version", version=f"thred-bridge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
        return p

    serve = command("serve", "webhooks, health, metrics, and BRIDGE_WORKERS in-process workers")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    command("worker", "a worker process only (run as many as you like against one Postgres)")
    command("migrate", "create or upgrade the database schema")
    sandbox = command("sandbox", "the Thred-compatible sandbox as its own server")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=8100)
    sandbox.add_argument("--path", default=None, help="keep the books in this SQLite file (default: memory)")
    command("demo", "the whole product on embedded defaults with simulated Stripe, Adyen and Mollie traffic")

    conns = command("connections", "add, list, show and remove processor connections")
    csub = conns.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = csub.add_parser("add", help="connect a processor account")
    add.add_argument("--json", action="store_true")
    asub = add.add_subparsers(dest="processor", required=True, metavar="PROCESSOR")
    stripe = asub.add_parser("stripe", help="a Stripe account (or a Connect platform's connected account)")
    stripe.add_argument("--json", action="store_true")
    stripe.add_argument("--business-id", required=True, help="the Thred business that books this account")
    stripe.add_argument("--api-key", required=True, help="secret or restricted key (sk_… / rk_…)")
    stripe.add_argument("--webhook-secret", action="append", required=True, help="whsec_…; repeat during rotation")
    stripe.add_argument("--account", default=None, help="connected account acct_… (Stripe Connect)")
    stripe.add_argument("--label", default=None)
    adyen = asub.add_parser("adyen", help="an Adyen merchant account (Standard webhook, settlement reports)")
    adyen.add_argument("--json", action="store_true")
    adyen.add_argument("--business-id", required=True, help="the Thred business that books this account")
    adyen.add_argument("--merchant-account", required=True, help="the Adyen merchant account code")
    adyen.add_argument("--hmac-key", action="append", required=True, help="the webhook's hex HMAC key; repeat")
    adyen.add_argument("--report-user", default=None, help="report user (report@Company.…) for settlement reports")
    adyen.add_argument("--report-password", default=None)
    adyen.add_argument("--webhook-user", default=None, help="the Basic auth username set on the Adyen webhook")
    adyen.add_argument("--webhook-password", default=None)
    adyen.add_argument(
        "--capture", choices=("delayed", "immediate"), default="delayed",
        help="delayed (default): a CAPTURE webhook books the payment; immediate: a successful AUTHORISATION does",
    )  # fmt: skip
    adyen.add_argument(
        "--settlement-currency", default=None,
        help="the currency the merchant account settles in; payments in others are booked from the settlement report",
    )  # fmt: skip
    adyen.add_argument("--label", default=None)
    mollie = asub.add_parser("mollie", help="a Mollie website profile (classic or next-gen webhooks, settlements)")
    mollie.add_argument("--json", action="store_true")
    mollie.add_argument("--business-id", required=True, help="the Thred business that books this profile")
    mollie.add_argument("--api-key", required=True, help="the profile API key (live_… / test_…)")
    mollie.add_argument(
        "--webhook-secret", action="append", default=[], help="next-gen webhook signing secret; repeat during rotation"
    )
    mollie.add_argument(
        "--organization-token", default=None, help="organization access token (access_…): turns on settlements"
    )
    mollie.add_argument("--label", default=None)
    for action in ("list",):
        p = csub.add_parser(action, help="list connections")
        p.add_argument("--json", action="store_true")
        p.add_argument("--all", action="store_true", help="include removed connections")
    for action in ("show", "remove"):
        p = csub.add_parser(action, help=f"{action} one connection")
        p.add_argument("--json", action="store_true")
        p.add_argument("id")

    status = command("status", "per connection: events received, synced, waiting, failed")
    status.add_argument("id", nargs="?")
    backfill = command("backfill", "import history (payments, refunds, disputes, payouts): resumable, rate-limited")
    backfill.add_argument("id")
    backfill.add_argument("--since", type=_date, default=None, help="YYYY-MM-DD (Stripe, Mollie: required)")
    backfill.add_argument("--until", type=_date, default=None, help="YYYY-MM-DD, exclusive (default: now)")
    backfill.add_argument("--rate", type=float, default=25.0, help="API requests per second (default 25)")
    backfill.add_argument("--parallel", type=int, default=4, help="time slices fetched side by side (Stripe)")
    backfill.add_argument("--wait", action="store_true", help="also sync everything before exiting")
    backfill.add_argument("--batches", default=None, help="Adyen: settlement batches FIRST-LAST (e.g. 120-140)")
    backfill.add_argument(
        "--report-base", default=None, help="Adyen: where reports are downloaded from (default: the live Customer Area)"
    )
    reconcile = command("reconcile", "per processor payout, what the processor settled against what Thred holds")
    reconcile.add_argument("id")
    reconcile.add_argument("--since", type=_date, default=None, help="YYYY-MM-DD (default: 30 days ago)")
    reconcile.add_argument("--until", type=_date, default=None, help="YYYY-MM-DD, exclusive (default: tomorrow)")
    keys = command("secrets", "the key that encrypts stored credentials")
    ksub = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    rotate = ksub.add_parser(
        "rotate",
        help="re-encrypt every stored secret under BRIDGE_SECRET_KEY (the old key in BRIDGE_PREVIOUS_SECRET_KEYS)",
    )
    rotate.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    replay = command("replay", "run failed or chosen events again")
    replay.add_argument("id")
    replay.add_argument("--failed", action="store_true", help="every failed event (the default)")
    replay.add_argument("--event", default=None, help="one processor event id, whatever its state")
    return parser


def _date(text: str) -> datetime:
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def main(argv: Sequence[str] | None = None) -> int:
    return_large_blocks()  # a long-lived process: memory of a large report goes back once it is done
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return fail(f"configuration error: {problems}", 2)
    from thred_bridge.entrypoints import commands
    from thred_bridge.observe import configure_logging

    configure_logging(settings.log_level)  # logs go to stderr: stdout is the command's answer (--json)

    handler: Handler = getattr(commands, f"cmd_{args.command}")
    try:
        return handler(args, settings)
    except SchemaOutdatedError as exc:
        return fail(exc.message, 2)
    except (ConfigError, UnknownConnectionError) as exc:
        return fail(exc.message, 2)
    except BridgeError as exc:
        return fail(exc.message, 1)
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        return fail(f"{type(exc).__name__}: {exc.strerror or exc}", 1)


__all__ = ["main"]
