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
