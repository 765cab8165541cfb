"""Presence: this process registered, beating, taking over the claims of the dead, and fenced when it is
declared dead itself.

Every ``heartbeat`` seconds a process beats, renews every claim it holds, and looks at the others. One is dead
when its session lock is free (Postgres: its connection is gone, so it is known at once), when it ran on this
host under a pid that is gone (or that is ours: an earlier life of this container), or when its heartbeat is
older than ``stale`` = ``takeover − 2 × heartbeat``: found within one more beat, its claims are back in the
queue within ``takeover`` seconds of its death, whatever the lease is.

A process that was paused (SIGSTOP, a frozen VM) past ``stale`` may have been declared dead and its work taken
over: it must not send what it held. So it sends only while its last confirmed heartbeat is younger than
``stale − 1 s`` (:meth:`Presence.fence`, a clock read per record); past that it waits for a beat, and a beat
that finds it declared dead sets ``lost``: its workers stop, drop what they hold without writing, and start
again under a new registration. What it had already sent when it froze is found by the taker (records taken
over are looked up in Thred before they are sent).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from thred_bridge.domain.queue import ProcessInfo
from thred_bridge.errors import BridgeError, describe
from thred_bridge.service.ports import Clock, Store, Wakeup

log = structlog.get_logger("thred_bridge.liveness")
FORGET_AFTER = timedelta(days=7)  # rows of ended processes are kept this long (for `status`), then dropped


class ProcessLostError(BridgeError):
    """This process was declared dead (it did not beat in time) and its claims were taken over."""


class PresenceBackend(Protocol):
    async def register(self, process: ProcessInfo, now: datetime) -> None: ...
    async def beat(self, process_id: str, now: datetime) -> bool: ...
    async def wait(self, timeout: float) -> frozenset[str]: ...
    async def aclose(self) -> None: ...


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


class Presence:
    """One per process; workers and the web app share it (``attached`` counts them)."""

    def __init__(
        self,
        store: Store,
        backend: PresenceBackend,
        clock: Clock,
        *,
        role: str,
        heartbeat: float,
        takeover: float,
        lease: timedelta,
        wake: dict[str, Wakeup] | None = None,
        on_taken_over: Callable[[int], None] = lambda _n: None,
        host: str | None = None,
    ) -> None:
        if heartbeat * 4 > takeover:
            raise ValueError("the heartbeat must be at most a quarter of the takeover time")
        self._store = store
        self._backend = backend
        self._clock = clock
        self.role = role
        self.heartbeat = heartbeat
        self.stale = takeover - 2 * heartbeat  # found dead within one more beat, taken within ``takeover``
        self._fresh = self.stale - heartbeat  # sends stop a beat before anyone may call this process dead
        self._lease = lease
        self._wake = wake or {}
        self._on_taken_over = on_taken_over
        self.host = host or os.uname().nodename
        self.pid = os.getpid()
        self.id = ""
        self.generation = 0
        self.lost = asyncio.Event()
        self._confirmed = float("-inf")  # monotonic time at which the last successful beat began
        self._users = 0
        self._task: asyncio.Task[None] | None = None
        self._halt = asyncio.Event()

    # --- the life of the process --------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def attached(self) -> AsyncIterator[Presence]:
        """Registered and beating while at least one user is inside; the last one out releases what is held."""
        if self._users == 0:
            await self._start()
        self._users += 1
        try:
            yield self
        finally:
            self._users -= 1
            if self._users == 0:
                await self._stop()

    async def _start(self) -> None:
        await self._register()
        self._halt.clear()
        self._task = asyncio.create_task(self._run(), name="presence")
        await self.reap()  # on SQLite a restart takes its dead predecessors' claims at once

    async def _register(self) -> None:
        self.id = f"{self.host}:{self.pid}:{secrets.token_hex(4)}"[-64:]
        started = time.monotonic()
        await self._backend.register(ProcessInfo(self.id, self.host, self.pid, self.role), self._clock())
        self._confirmed = started
        self.generation += 1
        self.lost = asyncio.Event()  # a new one: the old generation's stays set for whoever still holds it
        log.info("process.registered", process=self.id, role=self.role)

    async def _stop(self) -> None:
        self._halt.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            if not self.lost.is_set():
                async with self._store.transaction() as tx:
                    released = await tx.take_over(self.id, self._clock(), ended="stopped")
                if released is not None and released.total:
                    log.info("process.released", process=self.id, events=released.events, records=released.records)
        except Exception as exc:  # the database is gone: the living will take over by liveness
            log.warning("process.release_failed", process=self.id, error=describe(exc))
        finally:
            await self._backend.aclose()
        log.info("process.stopped", process=self.id)

    async def _recover(self) -> None:
        """Register again after this generation was declared dead; the workers follow (``next_generation``)."""
        while not self._halt.is_set():
            try:
                await self._register()
                return
            except Exception as exc:
                log.warning("process.register_failed", error=describe(exc))
                await asyncio.sleep(self.heartbeat)

    async def next_generation(self, generation: int, stop: asyncio.Event) -> None:
        """Wait until the process is registered again after ``generation`` (or ``stop``)."""
        while self.generation == generation and not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.1)

    # --- the fence ------------------------------------------------------------------------------------------

    async def fence(self, generation: int) -> None:
        """Return when this process may send what it claimed under ``generation`` (it is surely not declared
        dead for another beat); raise :class:`ProcessLostError` when that registration was declared dead."""
        while True:
            if self.lost.is_set() or generation != self.generation:
                raise ProcessLostError(f"process {self.id} was declared dead; its claims were taken over")
            if time.monotonic() - self._confirmed < self._fresh:
                return
            await asyncio.sleep(0.05)  # the beat loop confirms (or finds us lost)

    # --- the beat --------------------------------------------------------------------------------------------

    async def _run(self) -> None:
        due = time.monotonic() + self.heartbeat
        while not self._halt.is_set():
            if self.lost.is_set():
                await self._recover()
                due = time.monotonic() + self.heartbeat
                continue
            try:
                channels = await self._backend.wait(max(0.0, due - time.monotonic()))
                for channel in channels:
                    wake = self._wake.get(channel)
                    if wake is not None:
                        wake.set()
                if time.monotonic() < due:
                    continue
                due = time.monotonic() + self.heartbeat
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database blinked; the fence holds sends until a beat succeeds
                log.warning("process.beat_failed", process=self.id, error=describe(exc))
                if not await self._session_lost():
                    await asyncio.sleep(min(1.0, self.heartbeat))

    async def _session_lost(self) -> bool:
        """After a failed beat: if the process's own session is gone (Postgres freed its lock, so it may be
        declared dead already), it is lost; its workers start again under a new registration."""
        if time.monotonic() - self._confirmed < self._fresh:
            return False
        if not self.lost.is_set():
            log.warning("process.lost", process=self.id, reason="no heartbeat confirmed in time")
            self.lost.set()
        return True

    async def tick(self) -> None:
        """Beat, renew what is held, take over from the dead."""
        if self.lost.is_set():
            return
        started = time.monotonic()
        if not await self._backend.beat(self.id, self._clock()):
            log.warning("process.lost", process=self.id, reason="declared dead by another process")
            self.lost.set()
            return
        self._confirmed = started
        now = self._clock()
        async with self._store.transaction() as tx:
            await tx.renew_claims(self.id, now, now + self._lease)
        await self.reap()

    async def reap(self) -> int:
        """Take over the claims of every dead process; returns how many claims came back."""
        now = self._clock()
        async with self._store.transaction() as tx:
            rows = await tx.living_processes(now, timedelta(seconds=self.stale))
        total = 0
        for row in rows:
            reason = self._dead_because(row.id, row.host, row.pid, row.stale, row.lock_held)
            if reason is None:
                continue
            async with self._store.transaction() as tx:
                taken = await tx.take_over(row.id, self._clock(), ended="dead")
            if taken is None:
                continue  # another process took them first
            total += taken.total
            log.warning(
                "process.taken_over", dead=row.id, role=row.role, reason=reason,
                events=taken.events, records=taken.records, by=self.id,
            )  # fmt: skip
            self._on_taken_over(taken.total)
        async with self._store.transaction() as tx:
            orphans = await tx.release_orphans(self._clock())
        if orphans.total:
            total += orphans.total
            log.warning("process.orphans_released", events=orphans.events, records=orphans.records, by=self.id)
            self._on_taken_over(orphans.total)
        if total:
            for wake in self._wake.values():
                wake.set()
        async with self._store.transaction() as tx:
            await tx.forget_processes(now - FORGET_AFTER)
        return total

    def _dead_because(self, pid_of: str, host: str, pid: int, stale: bool, lock_held: bool | None) -> str | None:
        if pid_of == self.id:
            return None
        if lock_held is False:
            return "its database session is gone"
        if host == self.host and (pid == self.pid or not pid_alive(pid)):
            return "its process is gone"
        if stale:
            return f"no heartbeat for {self.stale:.0f} s"
        return None


__all__ = ["Presence", "PresenceBackend", "ProcessLostError", "pid_alive"]
