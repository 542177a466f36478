"""The run lease on its own: who holds it, its heartbeat, and the fence around the commit.

A holder is a process named by host, machine (boot and container or pid namespace), pid and
start time, so a sibling container with the same host name waits and a restarted process with
the same pid takes over at once. The heartbeat survives storage errors for as long as the lease
lasts and does not queue behind other storage calls. A run that lost its lease finishes its
requests in flight, journals them, and commits and deletes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc
import pytest
from support import (
    DEADLINE_S,
    FakeClock,
    JobFactory,
    Location,
    answer,
    eventually,
    job_on,
    prepare_job,
    review_rows,
    user_text,
)

from enrich.completer import Completion, CompletionRequest, FakeCompleter
from enrich.engine import Engine
from enrich.errors import StorageError
from enrich.holder import Here, ProcessId, container_id, holder_state, this_process
from enrich.lease import LEASE, Lease, LeaseHeld, LeaseLost, LeaseRecord, hold_lease, read_lease
from enrich.output.commit import commit_dataset
from enrich.output.layout import LAYOUT
from enrich.output.reader import read_dataset
from enrich.run import run_job
from enrich.storage import Store

MACHINE = "boot-1/pidns:4026531836"
SIBLING = "boot-1/container:" + "b" * 64


def record(**changes: Any) -> LeaseRecord:
    base = {
        "owner": "o",
        "host": "here",
        "pid": 42,
        "job": "j",
        "acquired_at": 0.0,
        "heartbeat_at": 90.0,
        "expires_at": 120.0,
        "machine": MACHINE,
        "started": 5000,
    }
    return LeaseRecord(**{**base, **changes})  # type: ignore[arg-type]


# -- who holds the lease -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("holder", "now", "here", "state"),
    [
        (record(), 100.0, Here("here", MACHINE, 5000), "live"),  # its process still runs
        (record(), 120.0, Here("here", MACHINE, 5000), "expired"),
        (record(), 100.0, Here("here", MACHINE, None), "dead"),  # process gone: take over now
        (record(), 100.0, Here("here", MACHINE, 7000), "dead"),  # pid reused by a newer process
        # A sibling container with the same host name: its pids mean nothing here.
        (record(machine=SIBLING), 100.0, Here("here", MACHINE, None), "live"),
        (record(machine=SIBLING), 100.0, Here("here", MACHINE, 7000), "live"),
        (record(machine=SIBLING), 121.0, Here("here", MACHINE, None), "expired"),
        (record(host="elsewhere"), 100.0, Here("here", MACHINE, None), "live"),
        # A lease of an older release names no machine; nor can every system name its own.
        (record(machine="", started=0), 100.0, Here("here", MACHINE, None), "live"),
        (record(), 100.0, Here("here", "", None), "live"),
        (record(started=0), 100.0, Here("here", MACHINE, 7000), "live"),  # start unknown
    ],
)
def test_holder_state(holder: LeaseRecord, now: float, here: Here, state: str) -> None:
    assert holder_state(holder.holder, holder.expires_at, now=now, here=here) == state


DOCKER_ID, PODMAN_ID, K8S_ID = "1" * 64, "2" * 64, "3" * 64
DOCKER_MOUNTS = (
    "1 0 0:1 / / rw - overlay overlay rw\n"
    f"2 1 8:1 /var/lib/docker/containers/{DOCKER_ID}/hostname /etc/hostname rw - ext4 /dev/sda1 rw"
)
PODMAN_MOUNTS = (
    "3 1 8:1 /containers/storage/overlay-containers/"
    f"{PODMAN_ID}/userdata/hostname /etc/hostname rw - ext4 /dev/sda1 rw"
)
# Kubernetes (containerd): /etc/hostname comes from the pod's sandbox, shared by its containers.
SANDBOX_MOUNTS = (
    "4 1 8:1 /var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/"
    f"{'4' * 64}/hostname /etc/hostname rw - ext4 /dev/sda1 rw"
)


@pytest.mark.parametrize(
    ("mountinfo", "cgroup", "found"),
    [
        (DOCKER_MOUNTS, "0::/\n", DOCKER_ID),
        (PODMAN_MOUNTS, "0::/\n", PODMAN_ID),
        ("", f"12:memory:/docker/{DOCKER_ID}\n", DOCKER_ID),
        ("", f"0::/system.slice/docker-{DOCKER_ID}.scope\n", DOCKER_ID),
        ("", f"11:pids:/kubepods/burstable/pod12-34/{K8S_ID}\n", K8S_ID),
        (SANDBOX_MOUNTS, "0::/\n", None),
        ("1 0 0:1 / / rw - ext4 /dev/sda1 rw", "0::/user.slice/session-2.scope\n", None),
        ("", "", None),
    ],
)
def test_container_id(mountinfo: str, cgroup: str, found: str | None) -> None:
    assert container_id(mountinfo, cgroup) == found


def take_over(store: Store, data: bytes) -> None:
    """Replace the lease as a rival run does: by compare-and-swap, as often as it takes.

    A plain write would race the holder's heartbeat, which renews by compare-and-swap: a
    renewal that read the lease before the write could put the holder's record back.
    """
    while True:
        current = store.read_versioned(LEASE)
        if store.swap(LEASE, data, None if current is None else current.version) is not None:
            return


def planted(store: Store, holder: ProcessId) -> None:
    """A live lease of ``holder`` (another owner), good for a minute."""
    now = time.time()
    rival = record(owner="rival", host=holder.host, machine=holder.machine, pid=holder.pid)
    rival = dataclasses.replace(rival, started=holder.started, expires_at=now + 60)
    store.write_bytes(LEASE, rival.to_bytes())


def test_a_sibling_container_with_the_same_host_name_keeps_its_lease(location: Location) -> None:
    """Same host name, a pid that no process here has: another machine's live run, not ours."""
    store, me = location.store("out"), this_process()
    sibling = ProcessId(me.host, "another-boot/container:" + "c" * 64, 2**22 + 1, 123)
    planted(store, sibling)
    with pytest.raises(LeaseHeld, match=f"host {socket.gethostname()}, pid {2**22 + 1}"):
        Lease(store, job="j").acquire()


def test_a_restarted_process_with_the_same_pid_takes_over_at_once(location: Location) -> None:
    """A lease of this machine whose pid now belongs to a newer process (this one)."""
    store, me = location.store("out"), this_process()
    assert me.machine and me.started  # read from /proc
    planted(store, dataclasses.replace(me, started=me.started - 1))
    taker = Lease(store, job="j")
    taker.acquire()
    assert taker.taken_over is not None and taker.taken_over.owner == "rival"
    taker.release()


def test_a_running_holder_with_the_same_pid_and_start_is_live(location: Location) -> None:
    store = location.store("out")
    planted(store, this_process())
    with pytest.raises(LeaseHeld, match="another run is writing here"):
        Lease(store, job="j").acquire()


def at(pid: int, running: dict[int, int]) -> Callable[[int], Here]:
    """What a process of machine MACHINE on host ``here`` sees: ``running`` maps pid to start."""
    return lambda holder_pid: Here("here", MACHINE, running.get(holder_pid))


def lease(store: Store, clock: FakeClock, pid: int, running: dict[int, int]) -> Lease:
    me = ProcessId("here", MACHINE, pid, running[pid])
    return Lease(store, job="j", ttl_s=30, clock=clock, me=me, look=at(pid, running))


def test_lease_life_cycle(location: Location) -> None:
    store, clock = location.store("out"), FakeClock()
    running = {1: 100, 2: 200, 3: 300}
    first = lease(store, clock, 1, running)
    second = lease(store, clock, 2, running)
    first.acquire()
    with pytest.raises(LeaseHeld, match="another run is writing here"):
        second.acquire()
    clock.now += 20
    first.renew()  # heartbeat: good for another 30 s
    clock.now += 20
    with pytest.raises(LeaseHeld):
        second.acquire()
    clock.now += 11  # first missed its heartbeats: expired
    second.acquire()
    assert second.taken_over is not None and second.taken_over.owner == first.owner
    with pytest.raises(LeaseLost, match="another run took over the run lease"):
        first.renew()
    with pytest.raises(LeaseLost):
        first.confirm()  # the commit's fence says the same
    first.release()  # not ours any more: left alone
    held = read_lease(store)
    assert held is not None and (held.owner, held.pid, held.job) == (second.owner, 2, "j")
    assert (held.machine, held.started) == (MACHINE, 200)
    del running[2]  # second's process dies: a third takes over at once
    third = lease(store, clock, 3, running)
    third.acquire()
    assert third.taken_over is not None and third.taken_over.pid == 2
    third.release()
    assert read_lease(store) is None


def test_an_unreadable_lease_is_void(location: Location) -> None:
    store = location.store("out")
    store.write_bytes(LEASE, b"{not json")
    taker = Lease(store, job="j")
    taker.acquire()
    held = read_lease(store)
    assert taker.taken_over is None
    assert held is not None and (held.owner, held.job) == (taker.owner, "j")
    taker.release()


def test_a_lease_of_an_older_release_reads_and_is_waited_for(location: Location) -> None:
    store = location.store("out")
    old = {k: v for k, v in dataclasses.asdict(record()).items() if k not in ("machine", "started")}
    old.update(host=socket.gethostname(), pid=2**22 + 1, expires_at=time.time() + 60)
    store.write_bytes(LEASE, LeaseRecord(**old).to_bytes().replace(b'"machine"', b'"m"'))
    held = read_lease(store)
    assert held is not None and (held.machine, held.started) == ("", 0)
    with pytest.raises(LeaseHeld):  # its pid is gone, but whose pid namespace was it?
        Lease(store, job="j").acquire()


# -- the heartbeat -------------------------------------------------------------------------------


class LeaseOutage(Store):
    """A store whose lease writes fail while ``failing()`` holds (the lease is still read)."""

    def __init__(self, url: str, options: dict[str, Any], failing: Callable[[], bool]) -> None:
        super().__init__(url, options)
        self.failing = failing
        self.swaps = 0

    def swap(self, key: str, data: bytes, expected: str | None) -> str | None:
        self.swaps += 1
        if key == LEASE and self.failing():
            raise StorageError(f"{self.url_of(key)}: service unavailable (503)")
        return super().swap(key, data, expected)


def sleeper(clock: FakeClock) -> Callable[[float], bool]:
    """A pause between renewals that moves the fake clock (and never says "stopping")."""

    def wait(seconds: float) -> bool:
        clock.now += seconds
        return False

    return wait


def test_a_renewal_that_fails_is_tried_again_while_the_lease_lasts(location: Location) -> None:
    clock = FakeClock(0.0)
    store = LeaseOutage(location.url("out"), location.storage_options, lambda: 15 <= clock.now < 35)
    held = Lease(store, job="j", ttl_s=30, clock=clock)
    held.acquire()
    for _ in range(6):  # heartbeats every 10 s; the store fails from 15 s to 35 s
        clock.now += 10
        held.keep_alive(sleeper(clock))
    current = read_lease(store)
    assert current is not None and current.owner == held.owner
    assert current.expires_at == held.expires_at > clock.now + 20
    assert not store.failing()


def test_a_lease_that_cannot_be_renewed_in_time_stops_the_run(location: Location) -> None:
    clock = FakeClock(0.0)
    store = LeaseOutage(location.url("out"), location.storage_options, lambda: clock.now >= 15)
    held = Lease(store, job="j", ttl_s=30, clock=clock)
    held.acquire()
    clock.now += 10
    held.keep_alive(sleeper(clock))  # renewed at 10 s: expires at 40 s
    clock.now += 10
    with pytest.raises(LeaseLost, match=r"could not renew the run lease before it expired \("):
        held.keep_alive(sleeper(clock))
    assert clock.now < held.expires_at  # it stops before another run may take over
    with pytest.raises(LeaseLost):
        held.confirm()


def test_a_renewal_whose_answer_was_lost_keeps_the_lease(location: Location) -> None:
    """The write landed but its answer did not: the next renewal finds the lease still ours."""
    store = location.store("out")

    class LostAnswer(Store):
        def swap(self, key: str, data: bytes, expected: str | None) -> str | None:
            store.swap(key, data, expected)
            raise StorageError(f"{self.url_of(key)}: connection reset")

    held = Lease(store, job="j")
    held.acquire()
    held.store = LostAnswer(location.url("out"), location.storage_options)
    with contextlib.suppress(StorageError):
        held.renew()
    held.store = store
    held.renew()  # not "another run took over"
    held.confirm()
    held.release()
    assert read_lease(store) is None


def test_the_heartbeat_renews_while_storage_calls_fill_the_thread_pool(
    location: Location,
) -> None:
    """Journal and part writes that hang in the default pool do not hold up a renewal."""
    store = location.store("out")
    renewals: list[float] = []

    async def body() -> None:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(max_workers=2))
        hung = threading.Event()
        async with hold_lease(store, job="j", renew_s=0.01):
            stuck = [asyncio.to_thread(hung.wait) for _ in range(4)]  # slow storage, say
            waiting = asyncio.gather(*stuck)

            def renewed() -> bool:
                current = read_lease(store)
                if current is not None and current.heartbeat_at not in renewals:
                    renewals.append(current.heartbeat_at)
                return len(renewals) >= 4

            try:
                await eventually(renewed, message="no renewal while the pool was busy")
            finally:
                hung.set()
                await waiting

    asyncio.run(asyncio.wait_for(body(), DEADLINE_S))  # bounds a hang only
    assert read_lease(store) is None


def test_losing_the_lease_stops_the_run(location: Location) -> None:
    store = location.store("out")

    async def body() -> None:
        async with hold_lease(store, job="j", renew_s=0.02):
            rival = record(owner="rival", host="elsewhere", expires_at=time.time() + 60)
            await asyncio.to_thread(take_over, store, rival.to_bytes())
            await asyncio.Event().wait()  # cancelled at the next heartbeat

    with pytest.raises(LeaseLost, match="another run took over the run lease"):
        asyncio.run(asyncio.wait_for(body(), DEADLINE_S))  # bounds a hang only
    current = read_lease(store)
    assert current is not None and current.owner == "rival"  # the rival's lease is left alone


def journaled_hashes(store: Store) -> set[str]:
    found: set[str] = set()
    for key in store.keys(LAYOUT.journal):
        table = ipc.open_file(pa.py_buffer(store.read_bytes(key))).read_all()
        found.update(table.column("request_hash").to_pylist())
    return found


def test_a_lost_lease_lets_requests_in_flight_finish_and_be_journaled(
    location: Location, make_job: JobFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("enrich.lease.DEFAULT_RENEW_S", 0.02)
    execution = {"rows_per_chunk": 20, "max_concurrency": 20}
    job = prepare_job(job_on(location, make_job, review_rows(20), execution=execution))
    store = job.store
    release = asyncio.Event()

    async def held(request: CompletionRequest) -> Completion:
        await release.wait()
        return answer(request)

    api = FakeCompleter(held)

    async def monitor(engine: Engine) -> None:
        await eventually(lambda: len(api.requests) == 20, message="the run sent too little")
        rival = record(owner="rival", host="elsewhere", expires_at=time.time() + 60)
        await asyncio.to_thread(take_over, store, rival.to_bytes())
        await eventually(lambda: engine.stopped is not None, message="the run did not stop")
        release.set()  # the requests in flight come back after the run lost its lease

    with pytest.raises(LeaseLost, match="another run took over the run lease"):
        asyncio.run(asyncio.wait_for(run_job(job, completer=api, monitor=monitor), DEADLINE_S))
    assert len(journaled_hashes(store)) == 20  # paid for, kept for the next run
    assert store.keys(LAYOUT.parts) == store.keys(LAYOUT.chunks) == []
    assert not store.exists(LAYOUT.manifest)
    current = read_lease(store)
    assert current is not None and current.owner == "rival"


def test_a_chunk_is_not_committed_by_a_run_whose_lease_was_taken_since_its_last_renewal(
    location: Location, make_job: JobFactory
) -> None:
    """A rival takes the lease while the chunk's answers are on their way; the run's heartbeat
    (every 10 s) has not noticed yet. The chunk's commit checks the lease and writes nothing:
    no part that could overwrite one the rival commits under the same key."""
    job = prepare_job(job_on(location, make_job, review_rows(7), execution={"rows_per_chunk": 7}))
    store = job.store
    taken: list[bool] = []

    def rival_takes_over_then_answer(request: CompletionRequest) -> Completion:
        if not taken:
            rival = record(owner="rival", host="elsewhere", expires_at=time.time() + 60)
            take_over(store, rival.to_bytes())
            taken.append(True)
        return answer(request)

    with pytest.raises(LeaseLost, match="another run took over the run lease"):
        asyncio.run(run_job(job, completer=FakeCompleter(rival_takes_over_then_answer)))
    assert store.keys(LAYOUT.parts) == store.keys(LAYOUT.chunks) == []
    assert len(journaled_hashes(store)) == 7  # paid for, kept for whoever runs next


def test_a_run_that_lost_its_lease_writes_no_manifest_and_deletes_nothing(
    location: Location, make_job: JobFactory
) -> None:
    """The first run freezes past its lease; a second run (a new prompt) takes over.

    The first comes back and finishes its chunks: its commit finds the lease gone, writes no
    manifest and deletes none of the second run's files. The second commits a whole dataset.
    """
    execution = {"rows_per_chunk": 10, "chunks_in_flight": 2, "max_concurrency": 20}
    config = job_on(location, make_job, review_rows(20), execution=execution)
    first, second = prepare_job(config), prepare_job(config, ["prompt.template=Stars: {text}"])
    store = first.store
    first_go, second_go = asyncio.Event(), asyncio.Event()

    async def first_held(request: CompletionRequest) -> Completion:
        await first_go.wait()
        return answer(request)

    async def second_held(request: CompletionRequest) -> Completion:
        if int(user_text(request).split("number ")[1].split(":")[0]) >= 10:  # its second chunk
            await second_go.wait()
        return answer(request)

    first_api, second_api = FakeCompleter(first_held), FakeCompleter(second_held)

    async def scenario() -> None:
        running = asyncio.ensure_future(run_job(first, completer=first_api))
        await eventually(lambda: len(first_api.requests) == 20, message="first sent too little")
        frozen = read_lease(store)
        assert frozen is not None  # the first run stops renewing, and its lease expires
        expired = dataclasses.replace(frozen, expires_at=time.time() - 1)
        await asyncio.to_thread(store.write_bytes, LEASE, expired.to_bytes())
        taking = asyncio.ensure_future(run_job(second, completer=second_api))
        done = LAYOUT.chunk_record(second.chunks[0].chunk_id)
        await eventually(lambda: store.exists(done), message="second committed no chunk")
        # Its parts, records and plan (its committed chunk's journal is its own to discard).
        mine = (LEASE, LAYOUT.journal)
        theirs = {k: store.read_bytes(k) for k in store.keys("") if not k.startswith(mine)}
        assert len([k for k in theirs if k.startswith(LAYOUT.parts)]) == 1
        first_go.set()
        with pytest.raises(LeaseLost, match="another run took over the run lease"):
            await running
        assert not store.exists(LAYOUT.manifest) and not store.exists(LAYOUT.success)
        assert {k: store.read_bytes(k) for k in theirs} == theirs  # nothing deleted or changed
        second_go.set()
        assert (await taking).complete

    asyncio.run(asyncio.wait_for(scenario(), DEADLINE_S))  # bounds a hang only
    table = read_dataset(location.url("out"), location.storage_options)
    rows = table.to_pylist()
    assert sorted(r["review_id"] for r in rows) == [f"r-{i:05d}" for i in range(20)]
    assert all(r["completion"].startswith("label for Stars: Review") for r in rows)
    assert read_lease(store) is None


def test_garbage_is_collected_only_under_the_manifest_this_commit_wrote(
    location: Location, make_job: JobFactory
) -> None:
    """Another commit's manifest lands between this one's write and its garbage collection."""
    config = job_on(location, make_job, review_rows(20), execution={"rows_per_chunk": 10})
    job = prepare_job(config)
    store = job.store
    asyncio.run(run_job(job, completer=FakeCompleter(answer)))
    theirs = store.read_bytes(LAYOUT.manifest).replace(b'"committed_at"', b'"committed_at" ')
    stale = LAYOUT.part("slot", "chunk-of-another-commit", "jsonl")
    store.write_bytes(stale, b"{}\n")

    class Overtaken(Store):
        def write_bytes(self, key: str, data: bytes) -> None:
            super().write_bytes(key, data)
            if key == LAYOUT.success:
                super().write_bytes(LAYOUT.manifest, theirs)

    commit_dataset(
        Overtaken(location.url("out"), location.storage_options),
        job=job.config.name,
        fingerprint=job.fingerprint,
        fmt=job.config.output.format,
        chunk_ids=[c.chunk_id for c in job.chunks],
    )
    assert store.exists(stale)  # not this commit's to delete
    assert store.read_bytes(LAYOUT.manifest) == theirs
