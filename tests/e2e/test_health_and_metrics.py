"""Health, readiness and metrics, as an operator and Prometheus see them."""

from __future__ import annotations

import pytest

from thred_bridge import testing

pytestmark = pytest.mark.anyio


async def test_health_ready_and_metrics(database_url: str) -> None:
    async with testing.bridge(database_url, worker=False) as h:
        assert (await h.http.get(f"{h.url}/healthz")).json() == {"status": "ok"}
        ready = await h.http.get(f"{h.url}/readyz")
        assert ready.status_code == 200
        assert ready.json()["status"] == "ready"
        event = h.world.event("charge.succeeded", h.world.add_charge(1000, "eur"))
        await h.deliver(event)
        await h.deliver(event)
        await h.post(testing.stripe_delivery(event, "whsec_wrong"))
        text = (await h.http.get(f"{h.url}/metrics")).text
    assert 'bridge_webhook_deliveries_total{outcome="stored",processor="stripe"} 1.0' in text
    assert 'bridge_webhook_deliveries_total{outcome="duplicate",processor="stripe"} 1.0' in text
    assert 'bridge_webhook_deliveries_total{outcome="refused",processor="stripe"} 1.0' in text
    assert 'bridge_events_stored_total{processor="stripe"} 1.0' in text
    assert testing.STRIPE_KEY not in text
    assert h.secret not in text


async def test_worker_outcomes_are_counted(database_url: str) -> None:
    async with testing.bridge(database_url) as h:
        await h.deliver(h.world.event("charge.succeeded", h.world.add_charge(1000, "eur")))
        await h.drain()
        text = (await h.http.get(f"{h.url}/metrics")).text
    assert 'bridge_events_processed_total{outcome="done"} 1.0' in text
    assert 'bridge_records_dispatched_total{outcome="sent"} 3.0' in text


async def test_readiness_reports_an_old_schema(tmp_path: object) -> None:
    from pathlib import Path

    from sqlalchemy import text

    url = f"sqlite:///{Path(str(tmp_path)) / 'ready.db'}"
    async with testing.bridge(url, worker=False) as h:
        async with h.bridge.store.engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = '0000'"))
        answer = await h.http.get(f"{h.url}/readyz")
    assert answer.status_code == 503
    assert "thred-bridge migrate" in answer.json()["fix"]


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus' text format, or None when it is not there."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


async def test_queue_gauges_tell_the_backlog_per_connection(database_url: str) -> None:
    async with testing.bridge(database_url, worker=False) as h:
        for amount in (1000, 2000):
            await h.deliver(h.world.event("charge.succeeded", h.world.add_charge(amount, "eur")))
        text = (await h.http.get(f"{h.url}/metrics")).text
        labels = {"connection": h.connection.id, "processor": "stripe"}
        assert sample(text, "bridge_queue_events_waiting", **labels) == 2.0
        assert sample(text, "bridge_queue_records_waiting", **labels) == 0.0
        oldest = sample(text, "bridge_queue_oldest_waiting_seconds", **labels)
        assert oldest is not None
        assert 0.0 <= oldest < 60.0
        assert sample(text, "bridge_events_failed", **labels) == 0.0


async def test_calls_retries_failures_and_processes_are_counted(database_url: str) -> None:
    async with testing.bridge(database_url) as h:
        await h.fault("/customers", 503, times=1)
        await h.fault("/invoices/payments/", 422, times=1)
        await h.deliver(h.world.event("charge.succeeded", h.world.add_charge(1000, "eur")))
        status = await h.drain()
        assert status.records_failed == 1
        text = (await h.http.get(f"{h.url}/metrics")).text
    labels = {"connection": h.connection.id, "processor": "stripe"}
    assert sample(text, "bridge_records_failed", **labels) == 1.0
    assert sample(text, "bridge_retries_total", stage="records") == 1.0
    assert sample(text, "bridge_thred_requests_total", method="POST", status="503") == 1.0
    assert sample(text, "bridge_thred_requests_total", method="POST", status="422") == 1.0
    created = sample(text, "bridge_thred_requests_total", method="POST", status="201")
    assert created is not None
    assert created >= 2
    assert (sample(text, "bridge_thred_request_seconds_count", method="POST") or 0) >= 4
    assert sample(text, "bridge_processor_calls_total", processor="stripe", outcome="ok") == 1.0
    assert sample(text, "bridge_processor_call_seconds_count", processor="stripe") == 1.0
    assert sample(text, "bridge_processes_alive", role="worker") == 1.0
    assert testing.STRIPE_KEY not in text
