"""`thred-bridge worker` as an operator runs it: its own /metrics on BRIDGE_METRICS_PORT, and SIGTERM ends it
cleanly (exit 0, its registration ended as stopped)."""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.e2e.processes import free_port, spawn, wait_http

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def test_a_worker_serves_metrics_and_stops_on_sigterm(tmp_path: Path) -> None:
    db = tmp_path / "bridge.db"
    port = free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "BRIDGE_DATABASE_URL": f"sqlite:///{db}",
        "BRIDGE_SECRET_KEY": secrets.token_urlsafe(32),
        "BRIDGE_METRICS_PORT": str(port),
        "BRIDGE_METRICS_HOST": "127.0.0.1",
    }
    worker = spawn(["worker"], env, tmp_path)
    try:
        await wait_http(f"http://127.0.0.1:{port}/healthz", worker)
        async with httpx.AsyncClient() as client:
            text_ = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
        assert 'bridge_processes_alive{role="worker"} 1.0' in text_
        assert "bridge_thred_request_seconds" in text_
        assert "bridge_claims_taken_over_total 0.0" in text_
        assert env["BRIDGE_SECRET_KEY"] not in text_
    finally:
        worker.terminate()
        try:
            code = worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            raise
    assert code == 0, "a worker stopped by SIGTERM exits 0"
    with create_engine(f"sqlite:///{db}").connect() as conn:
        ended = conn.execute(text("SELECT ended FROM processes")).scalars().all()
    assert ended == ["stopped"]
