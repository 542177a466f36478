"""The run lease: at most one run writes to an output location at a time.

A run holds ``_lease.json`` under its output while it goes (owner id, host, pid, job, when it
was taken, last heartbeat, expiry) and renews it every ``renew_s`` seconds; it deletes it when
it stops. A second run that finds a live lease refuses with :class:`LeaseHeld` before it sends
anything. A lease is taken over when it has expired (its holder stopped renewing: a frozen or
unreachable machine), or at once when its holder ran on this host and that process is gone
(killed, crashed), so resuming right after a crash goes ahead.

Every write of the lease is a compare-and-swap (:meth:`Store.swap`): on local disk, in memory
and on S3 stores with conditional writes, two runs racing for the same lease cannot both win.
On a store without conditional writes the swap compares, writes and reads back, which leaves a
window of one round trip in which two runs can both believe they won; the loser finds out at
its next renewal and stops with :class:`LeaseLost`. Output stays correct either way (chunk
commits are whole-file and idempotent); only that window's requests can be paid twice.

Expiry compares one host's clock with another's, so ``ttl_s`` must be well above any clock skew
between machines that share an output.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Literal

import orjson

from enrich.errors import EnrichError, StorageError
from enrich.output.layout import LAYOUT
from enrich.storage import Store

LEASE = LAYOUT.lease
DEFAULT_TTL_S = 30.0
DEFAULT_RENEW_S = 10.0

HolderState = Literal["live", "expired", "dead"]


class LeaseHeld(EnrichError):
    """Another run holds the output's lease; this run did nothing."""


class LeaseLost(EnrichError):
    """This run's lease was taken over or could not be renewed; the run stopped."""


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """What ``_lease.json`` holds. Times are Unix seconds on the holder's clock."""

    owner: str
    host: str
    pid: int
    job: str
    acquired_at: float
    heartbeat_at: float
    expires_at: float

    def to_bytes(self) -> bytes:
        return orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2)

    @classmethod
    def parse(cls, data: bytes) -> LeaseRecord | None:
        """The record in ``data``, or None when it is not one (an unreadable lease is void)."""
        try:
            raw = orjson.loads(data)
            return cls(
                owner=str(raw["owner"]),
                host=str(raw["host"]),
                pid=int(raw["pid"]),
                job=str(raw["job"]),
                acquired_at=float(raw["acquired_at"]),
                heartbeat_at=float(raw["heartbeat_at"]),
                expires_at=float(raw["expires_at"]),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None

    def describe(self, now: float) -> str:
        return (
            f"job {self.job}, host {self.host}, pid {self.pid}, "
            f"renewed {max(0.0, now - self.heartbeat_at):.0f} s ago, "
            f"expires in {max(0.0, self.expires_at - now):.0f} s"
        )


def holder_state(
    record: LeaseRecord, *, now: float, host: str, alive: Callable[[int], bool]
) -> HolderState:
    """Whether a lease's holder may still be running (``live``) or it can be taken over."""
    if record.expires_at <= now:
        return "expired"
    if record.host == host and not alive(record.pid):
        return "dead"
    return "live"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host and is not a zombie."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in (b"Z", b"X")  # a killed child not yet reaped is gone


class Lease:
    """This process's claim on one output location (synchronous; see :func:`hold_lease`)."""

    def __init__(
        self,
        store: Store,
        *,
        job: str,
        ttl_s: float = DEFAULT_TTL_S,
        clock: Callable[[], float] = time.time,
        host: str | None = None,
        pid: int | None = None,
        alive: Callable[[int], bool] = pid_alive,
    ) -> None:
        self.store = store
        self.job = job
        self.ttl_s = ttl_s
        self.owner = uuid.uuid4().hex
        self.host = host or socket.gethostname()
        self.pid = os.getpid() if pid is None else pid
        self._clock = clock
        self._alive = alive
        self._version: str | None = None
        self.acquired_at = 0.0
        self.expires_at = 0.0
        self.taken_over: LeaseRecord | None = None
        self.lost: LeaseLost | None = None

    @property
    def held(self) -> bool:
        return self._version is not None

    def _record(self, now: float) -> LeaseRecord:
        return LeaseRecord(
            owner=self.owner,
            host=self.host,
            pid=self.pid,
            job=self.job,
            acquired_at=self.acquired_at or now,
            heartbeat_at=now,
            expires_at=now + self.ttl_s,
        )

    def acquire(self) -> None:
        """Take the lease, or raise LeaseHeld naming the run that has it."""
        for _ in range(5):
            now = self._clock()
            current = self.store.read_versioned(LEASE)
            holder = LeaseRecord.parse(current.data) if current is not None else None
            if holder is not None and holder.owner != self.owner:
                state = holder_state(holder, now=now, host=self.host, alive=self._alive)
                if state == "live":
                    raise LeaseHeld(
                        f"{self.store.url}: another run is writing here ({holder.describe(now)}); "
                        f"wait for it to finish, or delete {self.store.url_of(LEASE)} if that "
                        "run is gone"
                    )
            record = self._record(now)
            version = self.store.swap(
                LEASE, record.to_bytes(), current.version if current is not None else None
            )
            if version is not None:
                self._version = version
                self.acquired_at = record.acquired_at
                self.expires_at = record.expires_at
                self.taken_over = holder
                return
            # Another run wrote the lease between our read and our swap: look again.
        raise LeaseHeld(f"{self.store.url}: the run lease keeps changing hands; try again")

    def renew(self) -> None:
        """Extend the lease; raise LeaseLost if another run has taken it over."""
        if self._version is None:
            raise LeaseLost(f"{self.store.url}: the run lease is not held")
        now = self._clock()
        record = self._record(now)
        try:
            version = self.store.swap(LEASE, record.to_bytes(), self._version)
        except StorageError as exc:
            if now < self.expires_at:
                return  # try again at the next heartbeat
            raise LeaseLost(f"could not renew the run lease before it expired: {exc}") from None
        if version is None:
            current = self.store.read_versioned(LEASE)
            holder = LeaseRecord.parse(current.data) if current is not None else None
            who = holder.describe(now) if holder is not None else "lease deleted"
            raise LeaseLost(
                f"{self.store.url}: another run took over the run lease ({who}); this run stopped"
            )
        self._version = version
        self.expires_at = record.expires_at

    def release(self) -> None:
        """Give the lease up (only if it is still ours)."""
        if self._version is not None:
            self.store.delete_if(LEASE, self._version)
            self._version = None


def read_lease(store: Store) -> LeaseRecord | None:
    """The lease under ``store``, if there is a readable one."""
    current = store.read_versioned(LEASE)
    return LeaseRecord.parse(current.data) if current is not None else None


@asynccontextmanager
async def hold_lease(
    store: Store,
    *,
    job: str,
    ttl_s: float = DEFAULT_TTL_S,
    renew_s: float = DEFAULT_RENEW_S,
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[Lease]:
    """Hold the lease of ``store`` around the block, renewing it in the background.

    Raises LeaseHeld on entry when another run has it. If the lease is lost while the block
    runs, the block is cancelled and LeaseLost is raised in its place.
    """
    lease = Lease(store, job=job, ttl_s=ttl_s, clock=clock)
    await asyncio.to_thread(lease.acquire)
    body = asyncio.current_task()
    keeper = asyncio.ensure_future(_keep(lease, renew_s, body))
    try:
        yield lease
    except asyncio.CancelledError:
        if lease.lost is not None and body is not None and body.uncancel() == 0:
            raise lease.lost from None
        raise
    finally:
        keeper.cancel()
        await asyncio.gather(keeper, return_exceptions=True)
        if lease.lost is None:
            # If the release fails the lease expires on its own, and a resume on this host
            # takes it over at once.
            with contextlib.suppress(StorageError):
                await asyncio.to_thread(lease.release)


async def _keep(lease: Lease, every: float, body: asyncio.Task[object] | None) -> None:
    while True:
        await asyncio.sleep(every)
        try:
            await asyncio.to_thread(lease.renew)
        except LeaseLost as exc:
            lease.lost = exc
            if body is not None:
                body.cancel()
            return
