"""The run lease: at most one run writes to an output location at a time.

A run holds ``_lease.json`` under its output while it goes (owner id, who holds it -- host,
machine, pid, process start time, see :mod:`enrich.holder` --, job, when it was taken, last
heartbeat, expiry) and renews it every ``renew_s`` seconds; it deletes it when it stops. A
second run that finds a live lease refuses with :class:`LeaseHeld` before it sends anything. A
lease is taken over when it has expired (its holder stopped renewing: a frozen or unreachable
machine), or at once when its holder ran on this machine and that process is gone (killed,
crashed, or its container restarted), so resuming right after a crash goes ahead; a sibling
container with the same host name waits for the lease to expire.

Every write of the lease is a compare-and-swap (:meth:`Store.swap`): on local disk, in memory
and on S3 stores with conditional writes, two runs racing for the same lease cannot both win.
On a store without conditional writes the swap compares, writes and reads back, which leaves a
window of one round trip in which two runs can both believe they won; the loser finds out at
its next renewal and stops with :class:`LeaseLost`.

The heartbeat runs on the lease's own threads, never in the pool that journal and part writes
queue in, so slow storage elsewhere cannot delay a renewal. A renewal that fails (a storage
error) is retried with backoff for as long as the lease lasts; when it cannot be renewed before
it expires, or another run has taken it over, the run stops with :class:`LeaseLost`: requests
in flight finish and are journaled, and nothing more is committed. The commit fences its writes
with :meth:`Lease.confirm` (a renewal: a compare-and-swap proving no other run took the lease).

Expiry compares one host's clock with another's, so ``ttl_s`` must be well above any clock skew
between machines that share an output.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass

import orjson

from enrich.errors import EnrichError, RunStopped, StorageError
from enrich.holder import Here, HolderState, ProcessId, holder_state, look_here, this_process
from enrich.output.layout import LAYOUT
from enrich.storage import Store

__all__ = [
    "DEFAULT_RENEW_S",
    "DEFAULT_TTL_S",
    "LEASE",
    "HolderState",
    "Lease",
    "LeaseHeld",
    "LeaseLost",
    "LeaseRecord",
    "LeaseRevoked",
    "hold_lease",
    "read_lease",
]

LEASE = LAYOUT.lease
DEFAULT_TTL_S = 30.0
DEFAULT_RENEW_S = 10.0
# A failed renewal is tried again after 0.5 s, then 1, 2, 4, 5, 5... while the lease lasts.
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 5.0


class LeaseHeld(EnrichError):
    """Another run holds the output's lease; this run did nothing."""


class LeaseLost(RunStopped):
    """This run's lease was taken over or could not be renewed; the run stopped uncommitted."""


class LeaseRevoked(LeaseLost):
    """The lease's guard said it may no longer be used: the run it works for is gone (ended,
    cancelled, crashed or taken over), so nobody waits for this one's work."""


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """What ``_lease.json`` holds. Times are Unix seconds on the holder's clock.

    ``machine`` and ``started`` (see :class:`~enrich.holder.ProcessId`) are empty in a lease
    written by an older release; such a holder is waited for until its lease expires.
    """

    owner: str
    host: str
    pid: int
    job: str
    acquired_at: float
    heartbeat_at: float
    expires_at: float
    machine: str = ""
    started: int = 0

    @property
    def holder(self) -> ProcessId:
        return ProcessId(self.host, self.machine, self.pid, self.started)

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
                machine=str(raw.get("machine", "")),
                started=int(raw.get("started", 0)),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            return None

    def describe(self, now: float) -> str:
        return (
            f"job {self.job}, host {self.host}, pid {self.pid}, "
            f"renewed {max(0.0, now - self.heartbeat_at):.0f} s ago, "
            f"expires in {max(0.0, self.expires_at - now):.0f} s"
        )


class Lease:
    """This process's claim on one output location (synchronous; see :func:`hold_lease`).

    ``me`` is who holds it (default: this process); ``look`` tells what this process sees of
    another holder's pid (:func:`enrich.holder.look_here`). Renewals are serialised, so the
    heartbeat and the commit's :meth:`confirm` can run on different threads.
    """

    def __init__(
        self,
        store: Store,
        *,
        job: str,
        ttl_s: float = DEFAULT_TTL_S,
        clock: Callable[[], float] = time.time,
        me: ProcessId | None = None,
        look: Callable[[int], Here] = look_here,
        key: str = LEASE,
        guard: Callable[[], str | None] | None = None,
    ) -> None:
        self.store = store
        self.job = job
        self.key = key
        #: Checked before every renewal: a reason this lease may no longer be used (the run
        #: it works for is gone: LeaseRevoked), or None. Its storage errors fail the renewal
        #: like the swap's.
        self.guard = guard
        self.ttl_s = ttl_s
        self.owner = uuid.uuid4().hex
        self.me = me or this_process()
        self._clock = clock
        self._look = look
        self._lock = threading.Lock()
        self._version: str | None = None
        self.acquired_at = 0.0
        self.expires_at = 0.0
        self.taken_over: LeaseRecord | None = None
        self.lost: LeaseLost | None = None
        #: Called (on the event loop) instead of cancelling the run when the lease is lost.
        self.on_lost: Callable[[LeaseLost], None] | None = None

    @property
    def held(self) -> bool:
        return self._version is not None and self.lost is None

    def _record(self, now: float) -> LeaseRecord:
        me = self.me
        return LeaseRecord(
            owner=self.owner,
            host=me.host,
            pid=me.pid,
            job=self.job,
            acquired_at=self.acquired_at or now,
            heartbeat_at=now,
            expires_at=now + self.ttl_s,
            machine=me.machine,
            started=me.started,
        )

    def acquire(self) -> None:
        """Take the lease, or raise LeaseHeld naming the run that has it."""
        for _ in range(5):
            now = self._clock()
            current = self.store.read_versioned(self.key)
            holder = LeaseRecord.parse(current.data) if current is not None else None
            if holder is not None and holder.owner != self.owner:
                here = self._look(holder.pid)
                if holder_state(holder.holder, holder.expires_at, now=now, here=here) == "live":
                    where = self.store.url if self.key == LEASE else self.store.url_of(self.key)
                    raise LeaseHeld(
                        f"{where}: another run is writing here ({holder.describe(now)}); "
                        f"wait for it to finish, or delete {self.store.url_of(self.key)} if "
                        "that run is gone"
                    )
            record = self._record(now)
            version = self.store.swap(
                self.key, record.to_bytes(), current.version if current is not None else None
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
        """Extend the lease by ``ttl_s``.

        Raises LeaseLost if another run has taken it over (or it was lost before), and
        StorageError if the store failed (the lease may or may not have been extended).
        """
        with self._lock:
            if self.lost is not None:
                raise self.lost
            if self._version is None:
                raise LeaseLost(f"{self.store.url}: the run lease is not held")
            gone = self.guard() if self.guard is not None else None
            if gone is not None:
                raise self._lose(gone, LeaseRevoked)
            now = self._clock()
            record = self._record(now)
            version = self.store.swap(self.key, record.to_bytes(), self._version)
            if version is None:
                current = self.store.read_versioned(self.key)
                holder = LeaseRecord.parse(current.data) if current is not None else None
                if current is not None and holder is not None and holder.owner == self.owner:
                    # An earlier renewal landed though its answer was lost: it is still ours.
                    self._version = current.version
                    self.expires_at = holder.expires_at
                    return
                who = holder.describe(now) if holder is not None else "lease deleted"
                raise self._lose(f"another run took over the run lease ({who})")
            self._version = version
            self.expires_at = record.expires_at

    def keep_alive(self, wait: Callable[[float], bool]) -> None:
        """Renew the lease, trying again on failure for as long as it lasts.

        ``wait(seconds)`` pauses between tries and returns True when the run is stopping (then
        this returns at once). Raises LeaseLost when another run took the lease over, or when
        no renewal succeeded before the lease would expire.
        """
        delay = RETRY_FIRST_S
        while True:
            try:
                self.renew()
                return
            except LeaseLost:
                raise
            except Exception as exc:  # any failure of the store: the heartbeat must go on
                if self.expires_at - self._clock() <= delay:
                    raise self._lose(
                        f"could not renew the run lease before it expired ({exc})"
                    ) from None
                if wait(delay):
                    return
                delay = min(delay * 2, RETRY_MAX_S)

    def confirm(self) -> None:
        """Fence a write: renew the lease, proving no other run took it since the last renewal.

        Raises LeaseLost when the lease is no longer this run's (it then must not write), and
        StorageError when the store cannot tell.
        """
        self.renew()

    def _lose(self, why: str, kind: type[LeaseLost] = LeaseLost) -> LeaseLost:
        self.lost = self.lost or kind(f"{self.store.url}: {why}; this run stopped")
        return self.lost

    def release(self) -> None:
        """Give the lease up (only if it is still ours)."""
        with self._lock:
            if self._version is not None and self.lost is None:
                self.store.delete_if(self.key, self._version)
            self._version = None


def read_lease(store: Store, key: str = LEASE) -> LeaseRecord | None:
    """The lease at ``key`` under ``store`` (the run lease), if there is a readable one."""
    current = store.read_versioned(key)
    return LeaseRecord.parse(current.data) if current is not None else None


@asynccontextmanager
async def hold_lease(
    store: Store,
    *,
    job: str,
    ttl_s: float | None = None,
    renew_s: float | None = None,
    clock: Callable[[], float] = time.time,
    key: str = LEASE,
    guard: Callable[[], str | None] | None = None,
) -> AsyncIterator[Lease]:
    """Hold the lease of ``store`` around the block, renewing it on threads of its own.

    ``ttl_s`` and ``renew_s`` default to :data:`DEFAULT_TTL_S` and :data:`DEFAULT_RENEW_S`.
    ``key`` is the lease's key (default: the run lease); ``guard`` is checked before every
    renewal (see :class:`Lease`), so a shard's lease is lost when its job run is gone.

    Raises LeaseHeld on entry when another run has it. If the lease is lost while the block
    runs, ``lease.on_lost`` is called with the LeaseLost (the run stops its engine), or, when
    it is None, the block is cancelled and LeaseLost is raised in its place.
    """
    lease = Lease(store, job=job, ttl_s=ttl_s or DEFAULT_TTL_S, clock=clock, key=key, guard=guard)
    every = renew_s or DEFAULT_RENEW_S
    loop = asyncio.get_running_loop()
    # Two threads of the lease's own: the heartbeat, and taking and giving the lease.
    own = ThreadPoolExecutor(max_workers=2, thread_name_prefix="enrich-lease")
    try:
        await loop.run_in_executor(own, lease.acquire)
        body = asyncio.current_task()

        def lost(exc: LeaseLost) -> None:
            if lease.on_lost is not None:
                lease.on_lost(exc)
            elif body is not None:
                body.cancel()

        stop = threading.Event()
        beat = loop.run_in_executor(
            own, _beat, lease, every, stop, lambda exc: loop.call_soon_threadsafe(lost, exc)
        )
        try:
            yield lease
        except asyncio.CancelledError:
            if lease.lost is not None and body is not None and body.uncancel() == 0:
                raise lease.lost from None
            raise
        finally:
            stop.set()
            await asyncio.gather(beat, return_exceptions=True)
            if lease.lost is None:
                # If the release fails the lease expires on its own, and a resume on this
                # machine takes it over at once.
                with contextlib.suppress(StorageError):
                    await loop.run_in_executor(own, lease.release)
    finally:
        own.shutdown(wait=False)


def _beat(
    lease: Lease, every: float, stop: threading.Event, lost: Callable[[LeaseLost], object]
) -> None:
    """Renew ``lease`` every ``every`` seconds until ``stop`` is set or the lease is lost."""
    while not stop.wait(every):
        try:
            lease.keep_alive(stop.wait)
        except LeaseLost as exc:
            lost(exc)
            return
