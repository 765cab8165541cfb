"""Ingest benchmark: signed Stripe webhooks into the bridge's inbox, against a bare ceiling.

    .venv/bin/python bench/ingest.py --db sqlite --connections 16,64 --duration 10 --rate 500

Everything runs on 127.0.0.1 and stops by itself. For one database kind it

1. prepares two fresh databases (SQLite files in a temp dir, or throwaway Postgres databases on
   ``--pg-admin-url``, dropped at the end), runs ``thred-bridge migrate`` on both, adds a Stripe
   connection to the bridge's with ``thred-bridge connections add stripe``;
2. starts ``thred-bridge serve`` (``BRIDGE_WORKERS=0``: ingest only; ``THRED_API_URL`` set to an
   unused loopback URL so no embedded sandbox starts), ``bench/bare_app.py`` (the bare ceiling: verify
   + one INSERT + commit per request, served the same way) and a null HTTP server (to measure the load
   generator's own ceiling);
3. for each connection count N, runs a load generator in a separate process (this script with
   ``--load``): a closed loop at maximum throughput and an open loop at ``--rate`` events/s, each
   request a distinct, freshly signed ``charge.succeeded`` event (~2 KB), against the bridge and
   against the bare app;
4. checks that the rows in ``events`` equal the 200 answers, after every phase and at the end;
5. prints a table and a Markdown table, and writes ``bench/results/ingest-<db>.json``.

Every process it starts is stopped in ``finally`` blocks. The load generator shares the machine's
cores with the servers (and Postgres): on a small machine the figures are for the whole box.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, cast

import httpx
import orjson
import psycopg
from psycopg import sql
from rich.console import Console
from rich.table import Table

from thred_bridge.processors.stripe.webhook import sign_header

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
FIXTURE = REPO / "fixtures" / "stripe" / "event_charge_succeeded.json"
RESULTS = HERE / "results"
BRIDGE = Path(sys.executable).with_name("thred-bridge")

HOST = "127.0.0.1"
WEBHOOK_SECRET = "whsec_x"
SECRET_KEY = "bench-secret-key-not-for-production"
ID_TOKEN = b"3SCRUBBEDvat000000000001"  # in the fixture's evt_, ch_, txn_, pi_ ids: 24 characters
CREATED = (b"1761904802", b"1761904800")
CLK_TCK = os.sysconf("SC_CLK_TCK")

console = Console(highlight=False, soft_wrap=True, width=max(shutil.get_terminal_size().columns, 180))


# --- events ------------------------------------------------------------------------------------------


def event_template() -> bytes:
    """The fixture ``charge.succeeded`` event, compact (~2 KB), as Stripe sends it."""
    return orjson.dumps(orjson.loads(FIXTURE.read_bytes()))


def make_events(tag: str, count: int, secret: str) -> list[tuple[bytes, str]]:
    """``count`` distinct events (unique evt_/ch_/txn_/pi_ ids from ``tag``), each signed now."""
    template = event_template()
    now = int(time.time())
    template = template.replace(CREATED[0], b"%d" % now).replace(CREATED[1], b"%d" % (now - 2))
    width = len(ID_TOKEN) - len(tag)
    out: list[tuple[bytes, str]] = []
    for i in range(count):
        body = template.replace(ID_TOKEN, f"{tag}{i:0{width}d}".encode())
        out.append((body, sign_header(body, secret, now)))
    return out


def raw_request(host: str, port: int, path: str, body: bytes, signature: str) -> bytes:
    """The whole HTTP/1.1 request, as Stripe's webhook sender would write it."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: Stripe/1.0 (+https://stripe.com/docs/webhooks)\r\n"
        f"Accept: */*; q=0.5, application/xml\r\nCache-Control: no-cache\r\n"
        f"Content-Type: application/json; charset=utf-8\r\nStripe-Signature: {signature}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


# --- the raw HTTP/1.1 client (keep-alive, one request in flight per connection) ----------------------


class ProtocolError(Exception):
    """The server's answer is not one this client reads (no Content-Length)."""


class RawConnection(asyncio.Protocol):
    """One keep-alive connection: write a pre-built request, read status line, headers, body."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc or ConnectionResetError("the server closed the connection"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        waiter = self.waiter
        if waiter is None:
            return
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        at = head.find(b"\r\ncontent-length:")
        if at < 0:
            self.waiter = None
            waiter.set_exception(ProtocolError(head[:200].decode("latin-1")))
            return
        stop = head.find(b"\r\n", at + 2)
        length = int(head[at + 17 : stop if stop >= 0 else len(head)])
        total = end + 4 + length
        if len(self.buffer) < total:
            return
        del self.buffer[:total]
        self.waiter = None
        if not waiter.done():
            waiter.set_result(int(head[9:12]))

    async def request(self, data: bytes) -> int:
        if self.closed or self.transport is None:
            raise ConnectionResetError("connection closed")
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self.waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def raw_connect(host: str, port: int) -> RawConnection:
    _transport, protocol = await asyncio.get_running_loop().create_connection(RawConnection, host, port)
    return protocol


# --- the load generator (its own process) ------------------------------------------------------------


@dataclass
class LoadSpec:
    """What one load-generator run does; passed to the ``--load`` process as JSON."""

    host: str
    port: int
    path: str
    client: str  # raw | httpx
    mode: str  # closed | open
    connections: int
    duration: float
    warmup: float
    rate: float
    max_requests: int
    tag: str  # unique per phase: the event ids are distinct across the whole run
    secret: str
    reuse: bool = False  # cycle through the events (only for the null server: ids need not be unique)
    loop: str = "uvloop"


@dataclass
class Samples:
    starts: list[float] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    exhausted: bool = False

    def add(self, start: float, end: float, status: int) -> None:
        self.starts.append(start)
        self.ends.append(end)
        self.statuses.append(status)


Send = Callable[[int, int], Awaitable[int]]
"""``send(caller, i)``: send pre-built event ``i`` (closed loop: on caller ``caller``'s connection)."""


def percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


async def closed_loop(send: Send, spec: LoadSpec, total: int, samples: Samples, t0: float) -> None:
    """N callers, each sending its next request as soon as the last one is answered."""
    t_end = t0 + spec.warmup + spec.duration
    counter = [0]

    async def caller(worker: int) -> None:
        while True:
            if time.perf_counter() >= t_end:
                return
            i = counter[0]
            if i >= total:
                if not spec.reuse:
                    samples.exhausted = True
                    return
                i %= total
            counter[0] += 1
            start = time.perf_counter()
            try:
                status = await send(worker, i)
            except (OSError, ProtocolError, httpx.HTTPError) as exc:
                samples.errors[type(exc).__name__] += 1
                status = -1
            samples.add(start, time.perf_counter(), status)

    await asyncio.gather(*(caller(w) for w in range(spec.connections)))


async def open_loop(send: Send, spec: LoadSpec, total: int, samples: Samples, t0: float) -> None:
    """Requests fired on a fixed schedule; latency is counted from the scheduled time."""
    count = min(total, round(spec.rate * (spec.warmup + spec.duration)))
    samples.exhausted = count < round(spec.rate * (spec.warmup + spec.duration))
    tasks: set[asyncio.Task[None]] = set()

    async def one(i: int, due: float) -> None:
        samples.lags.append(time.perf_counter() - due)
        try:
            status = await send(-1, i)
        except (OSError, ProtocolError, httpx.HTTPError) as exc:
            samples.errors[type(exc).__name__] += 1
            status = -1
        samples.add(due, time.perf_counter(), status)

    for i in range(count):
        due = t0 + i / spec.rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(i, due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    while tasks:
        await asyncio.gather(*tasks)


async def run_load(spec: LoadSpec) -> dict[str, Any]:
    """Pre-build the events, then run the phase; returns the figures (the window excludes warm-up)."""
    built = time.perf_counter()
    needed = spec.max_requests if spec.mode == "closed" else round(spec.rate * (spec.warmup + spec.duration))
    events = make_events(spec.tag, min(needed, spec.max_requests), spec.secret)
    requests = [raw_request(spec.host, spec.port, spec.path, b, s) for b, s in events] if spec.client == "raw" else []
    pregen_s = time.perf_counter() - built
    samples = Samples()
    cpu0 = time.process_time()
    client: httpx.AsyncClient | None = None
    conns: list[RawConnection] = []
    try:
        if spec.client == "raw":
            conns = list(await asyncio.gather(*(raw_connect(spec.host, spec.port) for _ in range(spec.connections))))
            send = _raw_sender(spec, conns, requests)
        else:
            limits = httpx.Limits(max_connections=spec.connections, max_keepalive_connections=spec.connections)
            client = httpx.AsyncClient(base_url=f"http://{spec.host}:{spec.port}", limits=limits, timeout=60.0)
            send = _httpx_sender(spec, client, events)
        t0 = time.perf_counter() + 0.01
        if spec.mode == "closed":
            await closed_loop(send, spec, len(events), samples, t0)
        else:
            await open_loop(send, spec, len(events), samples, t0)
    finally:
        for conn in conns:
            conn.close()
        if client is not None:
            await client.aclose()
    return _summarise(spec, samples, t0, pregen_s, time.process_time() - cpu0)


def _raw_sender(spec: LoadSpec, conns: list[RawConnection], requests: list[bytes]) -> Send:
    if spec.mode == "closed":

        async def send_closed(caller: int, i: int) -> int:
            conn = conns[caller]
            if conn.closed:
                conn = conns[caller] = await raw_connect(spec.host, spec.port)
            return await conn.request(requests[i])

        return send_closed
    idle: asyncio.Queue[RawConnection] = asyncio.Queue()
    for conn in conns:
        idle.put_nowait(conn)

    async def send_open(_caller: int, i: int) -> int:
        conn = await idle.get()
        try:
            if conn.closed:
                conn = await raw_connect(spec.host, spec.port)
            return await conn.request(requests[i])
        finally:
            idle.put_nowait(conn)

    return send_open


def _httpx_sender(spec: LoadSpec, client: httpx.AsyncClient, events: list[tuple[bytes, str]]) -> Send:
    base = {"user-agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)", "content-type": "application/json"}

    async def send(_caller: int, i: int) -> int:
        body, signature = events[i]
        response = await client.post(spec.path, content=body, headers={**base, "stripe-signature": signature})
        return response.status_code

    return send


def _summarise(spec: LoadSpec, s: Samples, t0: float, pregen_s: float, cpu_s: float) -> dict[str, Any]:
    lo = t0 + spec.warmup
    hi = t0 + spec.warmup + spec.duration
    if s.exhausted and s.ends:
        hi = min(hi, max(s.ends))
    window = max(hi - lo, 1e-9)
    in_window = [i for i, end in enumerate(s.ends) if lo <= end <= hi]
    latencies = sorted((s.ends[i] - s.starts[i]) * 1000 for i in in_window if s.starts[i] >= lo)
    ok_in_window = sum(1 for i in in_window if s.statuses[i] == 200)
    statuses = Counter(str(code) for code in s.statuses)
    lags = sorted(x * 1000 for x in s.lags)
    return {
        "spec": {k: v for k, v in asdict(spec).items() if k not in ("secret", "tag")},
        "sent": len(s.statuses),
        "ok": statuses.get("200", 0),
        "statuses": dict(statuses),
        "errors": dict(s.errors),
        "exhausted": s.exhausted,
        "window_s": round(window, 3),
        "events_per_s": round(ok_in_window / window, 1),
        "latency_ms": {
            "n": len(latencies),
            "p50": round(percentile(latencies, 50), 2),
            "p90": round(percentile(latencies, 90), 2),
            "p99": round(percentile(latencies, 99), 2),
            "max": round(latencies[-1], 2) if latencies else None,
        },
        "send_lag_ms_p99": round(percentile(lags, 99), 2) if lags else None,
        "client_cpu_s": round(cpu_s, 3),
        "client_cpu_pct": round(100 * cpu_s / (spec.warmup + spec.duration), 1),
        "pregen_s": round(pregen_s, 2),
    }


def load_main(spec_json: str) -> int:
    spec = LoadSpec(**orjson.loads(spec_json))
    if spec.loop == "uvloop":
        import uvloop

        result = uvloop.run(run_load(spec))
    else:
        result = asyncio.run(run_load(spec))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


# --- the null server (for the client's own ceiling) ----------------------------------------------------


class NullProtocol(asyncio.Protocol):
    """Answers every HTTP/1.1 request with 200 ``{}`` as soon as its body is in; nothing else."""

    ANSWER = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).lower()
            at = head.find(b"\r\ncontent-length:")
            length = 0
            if at >= 0:
                stop = head.find(b"\r\n", at + 2)
                length = int(head[at + 17 : stop if stop >= 0 else len(head)])
            if len(self.buffer) < end + 4 + length:
                return
            del self.buffer[: end + 4 + length]
            assert self.transport is not None
            self.transport.write(self.ANSWER)


def null_server_main(port: int) -> int:
    async def serve() -> None:
        server = await asyncio.get_running_loop().create_server(NullProtocol, HOST, port)
        async with server:
            await server.serve_forever()

    try:
        import uvloop

        uvloop.run(serve())
    except KeyboardInterrupt:
        pass
    return 0


# --- processes, databases, machine facts -------------------------------------------------------------


class Processes:
    """The subprocesses this run started; all stopped (TERM, then KILL) on exit, whatever happened."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, args: list[str], env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        self.started.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.started:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready after {timeout:.0f} s:\n{log.read_text()[-2000:]}")


def bridge_cli(args: list[str], env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(
        [str(BRIDGE), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"thred-bridge {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


@contextlib.contextmanager
def databases(kind: str, tmp: Path, admin_url: str) -> Iterator[tuple[str, str]]:
    """Two fresh databases (bridge, bare): SQLite files in ``tmp``, or throwaway Postgres databases."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'bridge.db'}", f"sqlite:///{tmp / 'bare.db'}"
        return
    names = [f"thred_bench_{os.getpid()}_{secrets.token_hex(3)}_{role}" for role in ("bridge", "bare")]
    base = psycopg.conninfo.conninfo_to_dict(admin_url)
    created: list[str] = []
    try:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            for name in names:
                admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                created.append(name)
        urls = [psycopg.conninfo.make_conninfo("", **{**base, "dbname": n}) for n in names]
        yield _pg_url(urls[0]), _pg_url(urls[1])
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            for name in created:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _pg_url(conninfo: str) -> str:
    """A ``postgresql://`` URL (what the bridge's settings take) from a libpq conninfo string."""
    parts = psycopg.conninfo.conninfo_to_dict(conninfo)
    auth = str(parts.get("user", "postgres"))
    if parts.get("password"):
        auth += f":{parts['password']}"
    return f"postgresql://{auth}@{parts.get('host', HOST)}:{parts.get('port', 5432)}/{parts['dbname']}"


def count_rows(url: str) -> int:
    if url.startswith("sqlite:///"):
        import sqlite3

        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as db:
            return int(db.execute("SELECT count(*) FROM events").fetchone()[0])
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM events").fetchone()
        assert row is not None
        return int(row[0])


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def postgres_cpu() -> dict[int, float]:
    """CPU so far of every process named ``postgres`` (the server and its backends), by pid."""
    found: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == "postgres":
                    found[int(entry.name)] = cpu_seconds(int(entry.name))
    return found


def postgres_cpu_since(before: dict[int, float]) -> float:
    """Postgres CPU used since ``before`` (backends that exited meanwhile are not counted: a lower bound)."""
    return sum(max(cpu - before.get(pid, 0.0), 0.0) for pid, cpu in postgres_cpu().items())


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies over all CPUs, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return float(sum(values) - idle), float(sum(values))


def _children_cpu() -> float:
    """CPU used by this process's finished children (the load generator, the profiler)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wait_quiet(timeout: float, threshold: float = 15.0) -> float:
    """Wait (at most ``timeout`` s) until the machine is idle (busy < ``threshold`` %); returns the last busy %.

    Other work on a small machine (a test suite, a build) skews every figure; the result records how busy
    the machine was just before each phase, and ``other_processes_cpu_pct`` how busy it was during it.
    """
    deadline = time.monotonic() + timeout
    while True:
        busy0 = machine_busy()
        time.sleep(0.5)
        busy1 = machine_busy()
        pct = 100 * (busy1[0] - busy0[0]) / max(busy1[1] - busy0[1], 1)
        if pct < threshold or time.monotonic() >= deadline:
            return round(pct, 1)


def machine_facts() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for name in ("uvicorn", "starlette", "httpx", "sqlalchemy", "psycopg", "aiosqlite", "uvloop", "httptools"):
        with contextlib.suppress(PackageNotFoundError):
            versions[name] = version(name)
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
    }


# --- one phase, one run --------------------------------------------------------------------------------


@dataclass
class Target:
    name: str  # bridge | bare | null
    port: int
    path: str
    proc: subprocess.Popen[bytes]
    url: str | None = None  # database URL (None for the null server)
    ok_total: int = 0


class Runner:
    """Runs load phases against targets, with CPU accounting and the row-count check."""

    def __init__(self, args: argparse.Namespace, run_tag: str, results: Path) -> None:
        self.args = args
        self.run_tag = run_tag
        self.results = results
        self.phase_no = 0

    def phase(self, target: Target, *, client: str, mode: str, n: int, duration: float) -> dict[str, Any]:
        self.phase_no += 1
        spec = LoadSpec(
            host=HOST, port=target.port, path=target.path, client=client, mode=mode, connections=n,
            duration=duration, warmup=self.args.warmup, rate=self.args.rate,
            max_requests=self.args.max_requests, tag=f"B{self.run_tag}{self.phase_no:02d}", secret=WEBHOOK_SECRET,
            reuse=target.name == "null", loop=self.args.client_loop,
        )  # fmt: skip
        rows_before = count_rows(target.url) if target.url else 0
        result: dict[str, Any] = {"background_busy_pct_before": wait_quiet(self.args.quiet_timeout)}
        profiler = self._profiler(target, mode, n, duration)
        server_cpu0, pg_cpu0, busy0 = cpu_seconds(target.proc.pid), postgres_cpu(), machine_busy()
        children0 = _children_cpu()
        try:
            done = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), "--load", orjson.dumps(asdict(spec)).decode()],
                capture_output=True, text=True, timeout=duration + self.args.warmup + 120, check=False,
            )  # fmt: skip
        finally:
            if profiler is not None:
                profiler.wait(timeout=duration + self.args.warmup + 60)
        server_cpu = cpu_seconds(target.proc.pid) - server_cpu0
        pg_cpu = postgres_cpu_since(pg_cpu0)
        children = _children_cpu() - children0
        busy1 = machine_busy()
        if done.returncode != 0:
            raise RuntimeError(f"load generator failed ({done.returncode}): {done.stderr[-3000:]}")
        result.update(orjson.loads(done.stdout))
        ok = int(result["ok"])
        result["server_cpu_s"] = round(server_cpu, 3)
        result["server_cpu_us_per_event"] = round(1e6 * server_cpu / ok, 1) if ok else None
        if self.args.db == "postgres":
            result["postgres_cpu_s"] = round(pg_cpu, 3)
            result["postgres_cpu_us_per_event"] = round(1e6 * pg_cpu / ok, 1) if ok else None
        busy_s = (busy1[0] - busy0[0]) / CLK_TCK
        all_s = (busy1[1] - busy0[1]) / CLK_TCK
        ours = server_cpu + children + (pg_cpu if self.args.db == "postgres" else 0.0)
        result["machine_busy_pct"] = round(100 * busy_s / max(all_s, 1e-9), 1)
        result["other_processes_cpu_pct"] = round(100 * max(busy_s - ours, 0.0) / max(all_s, 1e-9), 1)
        if profiler is not None:
            result["profile"] = summarise_profile(self._profile_path(target, n))
        if target.url:
            stored = count_rows(target.url) - rows_before
            result["rows_stored"] = stored
            result["count_check"] = stored == ok and result["sent"] == ok
            target.ok_total += ok
        return result

    def _profile_path(self, target: Target, n: int) -> Path:
        return self.results / f"profile-{self.args.db}-{target.name}-{n}.txt"

    def _profiler(self, target: Target, mode: str, n: int, duration: float) -> subprocess.Popen[bytes] | None:
        if not self.args.profile or target.name == "null" or mode != "closed":
            return None
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(py_spy).exists():
            console.print("[yellow]--profile: py-spy not found; pip install py-spy[/yellow]")
            return None
        out = self._profile_path(target, n)
        return subprocess.Popen(
            [py_spy, "record", "--pid", str(target.proc.pid), "--rate", "250", "--gil", "--nonblocking",
             "--format", "raw", "--duration", str(round(self.args.warmup + duration)), "--output", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip


def _frame_name(frame: str) -> str:
    """``func (path/to/module.py:12)`` → ``func (to/module.py)``: one name per function, not per line."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({'/'.join(path.split('/')[-2:])})" if path else name


def summarise_profile(path: Path, top: int = 25) -> dict[str, Any]:
    """py-spy raw (collapsed) stacks → where the server's samples are: by function, self and inclusive."""
    if not path.exists():
        return {"file": str(path), "error": "no profile written"}
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";") if f]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    pct = 100 / max(total, 1)
    return {
        "file": str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path),
        "samples": total,
        "self_pct": [(k, round(v * pct, 1)) for k, v in own.most_common(top)],
        "inclusive_pct": [(k, round(v * pct, 1)) for k, v in inclusive.most_common(top * 2)],
    }


def start_servers(
    args: argparse.Namespace, procs: Processes, tmp: Path, bridge_url: str, bare_url: str
) -> tuple[Target, Target, Target]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("BRIDGE_", "THRED_"))},
        "BRIDGE_DATABASE_URL": bridge_url,
        "BRIDGE_SECRET_KEY": SECRET_KEY,
        "BRIDGE_WORKERS": "0",
        "BRIDGE_LOG_LEVEL": "warning",
        "THRED_API_URL": f"http://{HOST}:9/",  # discard port, never listened on: no embedded sandbox
        "THRED_PARTNER_ID": "bench-partner",
        "THRED_API_KEY": "bench-api-key",
    }
    bridge_cli(["migrate", "--json"], env, tmp)
    bridge_cli(["migrate", "--json"], {**env, "BRIDGE_DATABASE_URL": bare_url}, tmp)
    add = ["connections", "add", "stripe", "--business-id", "B", "--api-key", "sk_test_x", "--json"]
    added = orjson.loads(bridge_cli([*add, "--webhook-secret", WEBHOOK_SECRET], env, tmp))
    connection_id = str(added["id"])
    path = f"/webhooks/stripe/{connection_id}"

    bridge_port, bare_port, null_port = free_port(), free_port(), free_port()
    env["BRIDGE_PUBLIC_URL"] = f"http://{HOST}:{bridge_port}"
    bridge_log, bare_log, null_log = tmp / "bridge.log", tmp / "bare.log", tmp / "null.log"
    bridge = procs.start([str(BRIDGE), "serve", "--host", HOST, "--port", str(bridge_port)], env, bridge_log, tmp)
    bare = procs.start(
        [sys.executable, str(HERE / "bare_app.py"), "--database-url", bare_url, "--port", str(bare_port),
         "--connection-id", connection_id, "--secret", WEBHOOK_SECRET, "--pool-size", str(args.bare_pool)],
        env, bare_log, tmp,
    )  # fmt: skip
    null = procs.start(
        [sys.executable, str(Path(__file__).resolve()), "--null-server", str(null_port)], env, null_log, tmp
    )
    wait_ready(f"http://{HOST}:{bridge_port}/readyz", bridge, bridge_log)
    wait_ready(f"http://{HOST}:{bare_port}/readyz", bare, bare_log)
    wait_ready(f"http://{HOST}:{null_port}/readyz", null, null_log)
    return (
        Target("bridge", bridge_port, path, bridge, bridge_url),
        Target("bare", bare_port, path, bare, bare_url),
        Target("null", null_port, path, null),
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    counts = [int(x) for x in args.connections.split(",") if x.strip()]
    clients = [c for c in args.ceiling_clients.split(",") if c.strip()]
    RESULTS.mkdir(parents=True, exist_ok=True)
    runner = Runner(args, secrets.token_hex(3), RESULTS)
    report: dict[str, Any] = {
        "machine": machine_facts(),
        "settings": {
            "db": args.db,
            "connections": counts,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "rate": args.rate,
            "client": args.client,
            "client_loop": args.client_loop,
            "max_requests": args.max_requests,
            "bare_pool": args.bare_pool,
            "body_bytes": len(event_template()),
            "bridge": "thred-bridge serve, BRIDGE_WORKERS=0 (ingest only), one process",
            "bare": "bench/bare_app.py: verify + one INSERT + commit per request, same uvicorn settings",
        },
        "note": (
            f"{os.cpu_count()} CPUs: the load generator, the server under test"
            f"{' and Postgres' if args.db == 'postgres' else ''} share them, so these are whole-machine figures."
        ),
        "runs": [],
    }
    procs = Processes()
    tmp = Path(tempfile.mkdtemp(prefix="thred-bench-"))
    try:
        with databases(args.db, tmp, args.pg_admin_url) as (bridge_url, bare_url):
            try:
                bridge, bare, null = start_servers(args, procs, tmp, bridge_url, bare_url)
                for n in counts:
                    entry: dict[str, Any] = {"connections": n, "client_ceiling": {}}
                    for client in clients:
                        console.print(f"[dim]{args.db} N={n}: client ceiling ({client}) …[/dim]")
                        entry["client_ceiling"][client] = runner.phase(
                            null, client=client, mode="closed", n=n, duration=args.ceiling_duration
                        )
                    for target in (bridge, bare):
                        for mode in ("closed", "open"):
                            console.print(f"[dim]{args.db} N={n}: {target.name} {mode} loop …[/dim]")
                            entry[f"{target.name}_{mode}"] = runner.phase(
                                target, client=args.client, mode=mode, n=n, duration=args.duration
                            )
                    entry["ratio"] = round(
                        entry["bridge_closed"]["events_per_s"] / max(entry["bare_closed"]["events_per_s"], 1e-9), 3
                    )
                    report["runs"].append(entry)
                final: dict[str, Any] = {}
                for t in (bridge, bare):
                    rows = count_rows(str(t.url))
                    final[t.name] = {"rows": rows, "ok_answers": t.ok_total, "equal": rows == t.ok_total}
                report["final_count_check"] = final
            finally:
                procs.stop_all()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report


# --- output ----------------------------------------------------------------------------------------------


def _lat(phase: dict[str, Any]) -> str:
    lat = phase["latency_ms"]
    return f"{lat['p50']:.1f} / {lat['p99']:.1f}"


def _problems(phase: dict[str, Any]) -> str:
    bad = {k: v for k, v in phase["statuses"].items() if k != "200"}
    flags = []
    if bad or phase["errors"]:
        flags.append(f"non-200 {bad} {phase['errors']}")
    if phase.get("count_check") is False:
        flags.append(f"rows {phase['rows_stored']} != 200s {phase['ok']}")
    if phase["exhausted"]:
        flags.append("ran out of pre-built events")
    if phase["other_processes_cpu_pct"] > 10:
        flags.append(f"other processes used {phase['other_processes_cpu_pct']} % of the machine meanwhile")
    return "; ".join(flags)


def render(report: dict[str, Any]) -> str:
    db = report["settings"]["db"]
    rate = report["settings"]["rate"]
    table = Table(title=f"ingest, {db} ({report['machine']['nproc']} CPUs, {report['machine']['cpu_model']})")
    columns: tuple[str, ...] = (
        "conns",
        "bridge ev/s",
        "p50/p99 ms",
        f"open {rate:g}/s p50/p99",
        "bare ev/s",
        "p50/p99 ms",
    )
    columns += (f"bare open {rate:g}/s", "ratio", "CPU µs/ev bridge/bare", "client ceiling ev/s", "rows = 200s")
    for col in columns:
        table.add_column(col, justify="right")
    md = [
        f"| DB | conns | bridge closed ev/s | p50 / p99 ms | bridge open {rate:g}/s p50 / p99 ms | bare closed ev/s "
        f"| p50 / p99 ms | bare open {rate:g}/s p50 / p99 ms | bridge/bare | client ceiling ev/s |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    problems: list[str] = []
    for run_ in report["runs"]:
        bc, bo, rc, ro = (run_[k] for k in ("bridge_closed", "bridge_open", "bare_closed", "bare_open"))
        ceiling = " / ".join(f"{c} {v['events_per_s']:,.0f}" for c, v in run_["client_ceiling"].items())
        checks = all(p.get("count_check") for p in (bc, bo, rc, ro))
        table.add_row(
            str(run_["connections"]), f"{bc['events_per_s']:,.0f}", _lat(bc), _lat(bo), f"{rc['events_per_s']:,.0f}",
            _lat(rc), _lat(ro), f"{100 * run_['ratio']:.0f} %",
            f"{bc['server_cpu_us_per_event']} / {rc['server_cpu_us_per_event']}", ceiling, "yes" if checks else "NO",
        )  # fmt: skip
        md.append(
            f"| {db} | {run_['connections']} | {bc['events_per_s']:,.0f} | {_lat(bc)} | {_lat(bo)} "
            f"| {rc['events_per_s']:,.0f} | {_lat(rc)} | {_lat(ro)} | {100 * run_['ratio']:.0f} % | {ceiling} |"
        )
        for name, phase in (("bridge closed", bc), ("bridge open", bo), ("bare closed", rc), ("bare open", ro)):
            if text := _problems(phase):
                problems.append(f"N={run_['connections']} {name}: {text}")
    console.print(table)
    console.print(f"[yellow]{report['note']}[/yellow]")
    for text in problems:
        console.print(f"[red]{text}[/red]")
    console.print(f"final count check: {report.get('final_count_check')}")
    return "\n".join(md)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Ingest benchmark: the bridge against a bare ceiling.")
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--connections", default="16,64", help="comma-separated concurrent connection counts")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per phase")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before each phase's measured window")
    parser.add_argument("--rate", type=float, default=500.0, help="open-loop events/s")
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw", help="load generator HTTP client")
    parser.add_argument("--client-loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--ceiling-clients", default="raw,httpx", help="clients whose own ceiling is measured")
    parser.add_argument("--ceiling-duration", type=float, default=3.0)
    parser.add_argument("--max-requests", type=int, default=40_000, help="pre-built events per phase (a bound)")
    parser.add_argument("--bare-pool", type=int, default=10, help="the bare app's Postgres connections")
    parser.add_argument("--pg-admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--quiet-timeout", type=float, default=10.0, help="max wait for an idle machine per phase")
    parser.add_argument("--profile", action="store_true", help="py-spy the servers during closed loops")
    parser.add_argument("--output", type=Path, default=None, help="default: bench/results/ingest-<db>.json")
    parser.add_argument("--load", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--null-server", type=int, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.load is not None:
        return load_main(args.load)
    if args.null_server is not None:
        return null_server_main(args.null_server)
    started = time.monotonic()
    report = run(args)
    report["wall_s"] = round(time.monotonic() - started, 1)
    output = args.output or RESULTS / f"ingest-{args.db}.json"
    output.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    markdown = render(report)
    console.print(f"\nMarkdown (results in {output}):\n")
    print(markdown)
    failed = any(
        not p.get("count_check", True) or p["exhausted"]
        for r in report["runs"]
        for p in (r["bridge_closed"], r["bridge_open"], r["bare_closed"], r["bare_open"])
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
