"""One function per CLI command: build what it needs, call the service, render."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import signal
from collections.abc import Iterator
from typing import Any

import structlog
import uvicorn
from rich.console import Console
from rich.table import Table

from thred_bridge.bootstrap import Bridge, open_bridge, utc_now
from thred_bridge.domain.money import MoneyError, normalise_currency
from thred_bridge.domain.queue import Connection, ConnectionStatus
from thred_bridge.entrypoints.output import print_json
from thred_bridge.errors import ConfigError
from thred_bridge.loop_watch import calm_gil, watch_loop
from thred_bridge.observe import configure_logging
from thred_bridge.service.connections import NewConnection, age_seconds
from thred_bridge.serving import run, serve_in_background
from thred_bridge.settings import Settings
from thred_bridge.store import schema

out = Console(highlight=False, soft_wrap=True)
log = structlog.get_logger("thred_bridge.commands")


def webhook_url(settings: Settings, connection: Connection) -> str:
    return f"{settings.public_url.rstrip('/')}/webhooks/{connection.processor}/{connection.id}"


def describe_connection(settings: Settings, connection: Connection) -> dict[str, Any]:
    """What may be shown of a connection: never a key or a secret, only how many there are."""
    return {
        "id": connection.id,
        "processor": connection.processor,
        "business_id": connection.business_id,
        "account": connection.account,
        "label": connection.label,
        "webhook_url": webhook_url(settings, connection),
        "webhook_secrets": len(connection.webhook_secrets),
        "credentials": sorted(connection.credentials),
        "created_at": connection.created_at.isoformat(),
        "removed_at": connection.removed_at.isoformat() if connection.removed_at else None,
    }


# --- serve and worker ------------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    configure_logging(settings.log_level)
    calm_gil(settings.gil_switch_ms)
    run(_serve(settings, args.host, args.port))
    return 0


async def _serve(settings: Settings, host: str, port: int) -> None:
    from thred_bridge.entrypoints.web import create_app

    async with open_bridge(settings, role="serve") as bridge, bridge.presence.attached():
        stop = asyncio.Event()
        workers = [asyncio.create_task(bridge.worker().run(stop), name=f"worker-{i}") for i in range(settings.workers)]
        watch = asyncio.create_task(watch_loop(bridge.metrics), name="loop-watch")
        config = uvicorn.Config(
            create_app(bridge), host=host, port=port, log_level="warning", access_log=False, lifespan="off",
            timeout_graceful_shutdown=math.ceil(settings.shutdown_seconds),
        )  # fmt: skip
        server = _Server(config)
        try:
            await server.serve()  # until SIGTERM or SIGINT: uvicorn stops accepting and finishes open requests
        finally:
            stop.set()  # then the worker tasks finish or give back what they hold
            watch.cancel()
            await asyncio.gather(*workers, watch, return_exceptions=True)


class _Server(uvicorn.Server):
    """uvicorn's server, except that the SIGTERM (or SIGINT) that stopped it gracefully ends the process with
    exit 0: uvicorn raises the captured signal again once it has stopped, which would kill the process with it
    before the worker tasks have given back what they hold."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            try:
                yield
            finally:
                self._captured_signals.clear()


def cmd_worker(_args: argparse.Namespace, settings: Settings) -> int:
    configure_logging(settings.log_level)
    calm_gil(settings.gil_switch_ms)
    run(_worker(settings))
    return 0


async def _worker(settings: Settings) -> None:
    from thred_bridge.entrypoints.metrics import create_metrics_app

    async with open_bridge(settings) as bridge, contextlib.AsyncExitStack() as stack:
        if settings.metrics_port is not None:
            app = create_metrics_app(bridge)
            url = await stack.enter_async_context(
                serve_in_background(app, host=settings.metrics_host, port=settings.metrics_port)
            )
            log.info("metrics.listening", url=f"{url}/metrics")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):  # after the servers: these handlers are the ones that count
            loop.add_signal_handler(sig, stop.set)
        watch = asyncio.create_task(watch_loop(bridge.metrics), name="loop-watch")
        try:
            await bridge.worker().run(stop)
        finally:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    before, after = schema.migrate(settings.database_url)
    result = {"database": schema.dialect_of(settings.database_url), "from": before, "to": after}
    if args.json:
        print_json(result)
    elif before == after:
        out.print(f"schema already at revision {after}")
    else:
        out.print(f"schema migrated from {before or 'nothing'} to revision {after}")
    return 0


def cmd_sandbox(args: argparse.Namespace, settings: Settings) -> int:
    from thred_bridge.sandbox import create_app as create_sandbox

    partners = None
    if settings.thred_partner_id and settings.thred_api_key is not None:
        partners = {settings.thred_partner_id: settings.thred_api_key.get_secret_value()}
    app = create_sandbox(path=args.path, partners=partners)
    if not args.json:
        out.print(
            f"Thred sandbox on http://{args.host}:{args.port} ({'file ' + args.path if args.path else 'in memory'})"
        )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


def cmd_demo(args: argparse.Namespace, _settings: Settings) -> int:
    from thred_bridge.entrypoints.demo import run_demo

    return run_demo(json_output=args.json)


# --- connections -----------------------------------------------------------------------------------------


def cmd_connections(args: argparse.Namespace, settings: Settings) -> int:
    return int(asyncio.run(_connections(args, settings)))


async def _connections(args: argparse.Namespace, settings: Settings) -> int:
    async with open_bridge(settings, with_thred=False) as bridge:
        if args.action == "add":
            return await _add(args, settings, bridge)
        if args.action == "list":
            found = await bridge.connections.all(include_removed=args.all)
            shown = [describe_connection(settings, c) for c in found]
            if args.json:
                print_json(shown)
            else:
                table = Table("id", "processor", "business", "account", "webhook URL", "state")
                for c in shown:
                    state = "removed" if c["removed_at"] else "active"
                    table.add_row(
                        c["id"], c["processor"], c["business_id"], c["account"] or "", c["webhook_url"], state
                    )
                out.print(table if shown else "no connections yet: `thred-bridge connections add stripe …`")
            return 0
        if args.action == "show":
            connection = await bridge.connections.get(args.id, include_removed=True)
            one = describe_connection(settings, connection)
            if args.json:
                print_json(one)
            else:
                for key, value in one.items():
                    out.print(f"{key:16} {value if value is not None else ''}")
            return 0
        await bridge.connections.remove(args.id)
        if args.json:
            print_json({"id": args.id, "removed": True})
        else:
            out.print(f"removed {args.id}; its webhook URL now answers 404")
        return 0


async def _add(args: argparse.Namespace, settings: Settings, bridge: Bridge) -> int:
    if args.processor == "adyen":
        return await _add_adyen(args, settings, bridge)
    if args.processor == "mollie":
        return await _add_mollie(args, settings, bridge)
    if args.processor != "stripe":
        raise ConfigError(f"connections add {args.processor} is not available in this release")
    if not args.api_key.startswith(("sk_", "rk_")):
        raise ConfigError("--api-key must be a Stripe secret (sk_…) or restricted (rk_…) key")
    if any(not s.startswith("whsec_") for s in args.webhook_secret):
        raise ConfigError("--webhook-secret must be a Stripe endpoint secret (whsec_…)")
    if args.account is not None and not args.account.startswith("acct_"):
        raise ConfigError("--account must be a Stripe connected account id (acct_…)")
    connection = await bridge.connections.add(
        NewConnection(
            processor="stripe",
            business_id=args.business_id,
            credentials={"api_key": args.api_key},
            webhook_secrets=tuple(args.webhook_secret),
            account=args.account,
            label=args.label,
        )
    )
    url = webhook_url(settings, connection)
    if args.json:
        print_json({"id": connection.id, "webhook_url": url})
    else:
        out.print(f"connection {connection.id}\nwebhook URL: {url}")
        out.print("Add this URL as a Stripe webhook endpoint (events: charge.succeeded, payment_intent.succeeded).")
    return 0


async def _add_adyen(args: argparse.Namespace, settings: Settings, bridge: Bridge) -> int:
    import re

    if any(not re.fullmatch(r"(?:[0-9A-Fa-f]{2})+", key.strip()) for key in args.hmac_key):
        raise ConfigError("--hmac-key must be the hex HMAC key shown in Adyen's Customer Area (e.g. 64 hex digits)")
    credentials: dict[str, str] = {"capture": args.capture}
    for user_flag, password_flag, prefix in (("report_user", "report_password", "report"),
                                             ("webhook_user", "webhook_password", "webhook")):  # fmt: skip
        user, password = getattr(args, user_flag), getattr(args, password_flag)
        if bool(user) != bool(password):
            raise ConfigError(f"--{prefix}-user and --{prefix}-password go together")
        if user:
            credentials[f"{prefix}_user"], credentials[f"{prefix}_password"] = user, password
    if args.settlement_currency:
        try:
            credentials["settlement_currency"] = normalise_currency(args.settlement_currency)
        except MoneyError as exc:
            raise ConfigError(f"--settlement-currency: {exc}") from exc
        if "report_user" not in credentials:
            raise ConfigError(
                "--settlement-currency needs --report-user and --report-password: a payment in another currency"
                " is booked from its settlement report, which the bridge must be able to download"
            )
    connection = await bridge.connections.add(
        NewConnection(
            processor="adyen",
            business_id=args.business_id,
            credentials=credentials,
            webhook_secrets=tuple(key.strip() for key in args.hmac_key),
            account=args.merchant_account.strip(),
            label=args.label,
        )
    )
    url = webhook_url(settings, connection)
    if args.json:
        print_json({"id": connection.id, "webhook_url": url})
    else:
        out.print(f"connection {connection.id}\nwebhook URL: {url}")
        out.print(
            "In Adyen's Customer Area add a Standard webhook with this URL (JSON, HMAC key as given"
            + (", Basic auth as given" if "webhook_user" in credentials else "")
            + ") and turn on the settlement details report."
        )
    return 0


async def _add_mollie(args: argparse.Namespace, settings: Settings, bridge: Bridge) -> int:
    import re

    if not re.fullmatch(r"(live|test)_\w+", args.api_key.strip()):
        raise ConfigError("--api-key must be a Mollie profile API key (live_… or test_…)")
    token = args.organization_token.strip() if args.organization_token else None
    if token is not None and not re.fullmatch(r"access_\w+", token):
        raise ConfigError("--organization-token must be a Mollie organization access token (access_…)")
    if any(not s.strip() for s in args.webhook_secret):
        raise ConfigError("--webhook-secret must not be empty")
    credentials = {"api_key": args.api_key.strip()}
    if token is not None:
        credentials["organization_token"] = token
    connection = await bridge.connections.add(
        NewConnection(
            processor="mollie",
            business_id=args.business_id,
            credentials=credentials,
            webhook_secrets=tuple(s.strip() for s in args.webhook_secret),
            label=args.label,
        )
    )
    url = webhook_url(settings, connection)
    if args.json:
        print_json({"id": connection.id, "webhook_url": url})
    else:
        out.print(f"connection {connection.id}\nwebhook URL: {url}")
        out.print(
            "Use this URL as the webhookUrl of your Mollie payments (classic webhooks)"
            + (", and for a next-gen webhook subscription signed with the secret given" if args.webhook_secret else "")
            + "."
        )
        if token is None:
            out.print("No organization token: payments, refunds and chargebacks sync, settlements (payouts) do not.")
    return 0


# --- status and replay -----------------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    return int(asyncio.run(_status(args, settings)))


async def _status(args: argparse.Namespace, settings: Settings) -> int:
    async with open_bridge(settings, with_thred=False) as bridge:
        if args.id:
            targets = [await bridge.connections.get(args.id, include_removed=True)]
        else:
            targets = await bridge.connections.all()
        statuses = [await bridge.connections.status(c) for c in targets]
    now = utc_now()
    rows = [_status_row(s, now) for s in statuses]
    if args.json:
        print_json(rows if not args.id else rows[0])
    else:
        counted = ("received", "synced", "waiting", "failed", "ignored", "unrouted")
        table = Table("connection", "processor", *counted, "oldest waiting")
        for r in rows:
            age = r["oldest_waiting_seconds"]
            counts = (str(r[k]) for k in counted)
            table.add_row(r["connection_id"], r["processor"], *counts, "" if age is None else f"{age:.0f} s")
        out.print(table)
        for r in rows:
            for note in r["notes"]:
                out.print(f"[yellow]note[/yellow] {r['connection_id']}: {note}", markup=True)
            if r["records"]["held"]:
                held = f"{r['records']['held']} record(s) in another currency than the settlement's"
                out.print(f"[yellow]held[/yellow] {r['connection_id']}: {held}, until a settlement report books them")
            for failure in r["failures"]:
                what = f"{r['connection_id']} {failure['event_id']} ({failure['type']})"
                out.print(f"[red]failed[/red] {what}: {failure['error']}", markup=True)
    return 1 if any(r["failed"] for r in rows) else 0


def _status_row(s: ConnectionStatus, now: Any) -> dict[str, Any]:
    return {
        "connection_id": s.connection_id,
        "processor": s.processor,
        "business_id": s.business_id,
        "received": s.received,
        "synced": s.synced,
        "waiting": s.waiting,
        "failed": s.failed,
        "ignored": s.ignored,
        "unrouted": s.unrouted,
        "records": {
            "sent": s.records_sent,
            "waiting": s.records_waiting,
            "failed": s.records_failed,
            "held": s.records_held,
        },
        "oldest_waiting_seconds": age_seconds(s.oldest_waiting_at, now),
        "failures": [{"event_id": e, "type": t, "error": m} for e, t, m in s.failures],
        "notes": list(s.notes),
    }


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    async def _replay() -> int:
        async with open_bridge(settings, with_thred=False) as bridge:
            return await bridge.connections.replay(args.id, event_id=args.event, failed_only=args.failed)

    count = asyncio.run(_replay())
    if args.json:
        print_json({"id": args.id, "queued": count})
    else:
        out.print(f"queued {count} event(s) again" if count else "nothing to replay")
    return 0


# --- secrets ---------------------------------------------------------------------------------------------


def cmd_secrets(args: argparse.Namespace, settings: Settings) -> int:
    """``secrets rotate``: every stored secret under BRIDGE_SECRET_KEY; safe to stop and run again."""

    async def _rotate() -> Any:
        async with open_bridge(settings, with_thred=False) as bridge:
            return await bridge.connections.rotate_secrets()

    done = asyncio.run(_rotate())
    if args.json:
        print_json(
            {"rotated": done.rotated, "current": done.current, "changed_meanwhile": done.changed_meanwhile,
             "done": done.done}
        )  # fmt: skip
    else:
        out.print(f"{done.rotated} connection(s) re-encrypted, {done.current} already under BRIDGE_SECRET_KEY")
        if done.done:
            out.print("every stored secret decrypts with BRIDGE_SECRET_KEY alone: BRIDGE_PREVIOUS_SECRET_KEYS can go")
        else:
            out.print(f"{done.changed_meanwhile} connection(s) changed meanwhile: run it again")
    return 0 if done.done else 1


# --- reconcile -------------------------------------------------------------------------------------------


def cmd_reconcile(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import timedelta

    from thred_bridge.service.reconcile import PayoutSource, reconcile

    configure_logging(settings.log_level)
    now = utc_now()
    since = args.since or (now - timedelta(days=30))
    until = args.until or (now + timedelta(days=1))
    if until <= since:
        raise ConfigError("--until must be after --since")

    async def _run() -> list[Any]:
        async with open_bridge(settings) as bridge:
            connection = await bridge.connections.get(args.id, include_removed=True)
            source = bridge.processors[connection.processor]
            if not hasattr(source, "payouts"):
                raise ConfigError(f"reconcile is not available for {connection.processor} connections yet")
            assert bridge.thred is not None
            payout_source: PayoutSource = source  # type: ignore[assignment]
            return await reconcile(connection, payout_source, bridge.store, bridge.thred, since, until)

    checks = run(_run())
    differences = sum(len(c.differences) for c in checks)
    if args.json:
        print_json(
            {
                "id": args.id,
                "since": since.isoformat(),
                "until": until.isoformat(),
                "payouts": [c.as_json() for c in checks],
                "differences": differences,
            }
        )
    else:
        _render_reconcile(checks)
    return 1 if differences else 0


def _render_reconcile(checks: list[Any]) -> None:
    from thred_bridge.domain.money import Money

    table = Table("payout", "arrives", "status", "gross", "refunds", "fees", "other", "net", "in Thred", "differences")
    for c in checks:
        p = c.processor

        def fmt(minor: int, currency: str = c.currency) -> str:
            return Money(minor, currency).format()

        other = p["other_outflows_cents"] - p["credits_cents"]
        held = "-" if c.thred is None else f"{c.thred['payment_count']}+{c.thred['refund_payment_count']} items"
        amounts = [fmt(p[k]) for k in ("gross_cents", "refunds_cents", "fees_cents")]
        verdict = str(len(c.differences)) if c.differences else "none"
        table.add_row(
            c.payout_id, c.arrives_at[:10], c.status, *amounts, fmt(other), fmt(p["net_cents"]), held, verdict
        )
    out.print(table)
    for c in checks:
        for difference in c.differences:
            out.print(f"{c.payout_id}: {difference}", markup=False)
    if not checks:
        out.print("no payouts in the range")


# --- backfill --------------------------------------------------------------------------------------------


def cmd_backfill(args: argparse.Namespace, settings: Settings) -> int:
    from thred_bridge.entrypoints.progress import run_backfill

    configure_logging(settings.log_level)
    if args.batches is not None:
        from thred_bridge.entrypoints.progress import run_report_backfill
        from thred_bridge.processors.adyen.history import LIVE_REPORT_BASE, batch_range

        batches = batch_range(args.batches)
        result = run(run_report_backfill(settings, args.id, batches, args.report_base or LIVE_REPORT_BASE,
                                         wait=args.wait, quiet=args.json))  # fmt: skip
        if args.json:
            print_json(result)
        return 0
    if args.since is None:
        raise ConfigError("backfill needs --since YYYY-MM-DD (or, for Adyen, --batches FIRST-LAST)")
    until = args.until or utc_now()
    if until <= args.since:
        raise ConfigError("--until must be after --since")
    result = run(run_backfill(settings, args.id, args.since, until, rate=args.rate, parallel=args.parallel,
                              wait=args.wait, quiet=args.json))  # fmt: skip
    if args.json:
        print_json(result)
    return 0
