"""One job over several runs: shards of chunks, one commit (without Prefect).

The orchestration layer is replaced by coroutines that run each shard with
:func:`enrich.shards.run_shard` in this process, so what is tested here is what every shard
run and the coordinator do under the output: the split, the shard plan, the leases and the
single commit.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest
from support import JobFactory, prepare_job, review_rows, until, write_jsonl
from support.completions import answer

from enrich import lease as lease_module
from enrich.catalogue import snapshot_catalogue
from enrich.completer import Completion, CompletionRequest, FakeCompleter
from enrich.config import load_job_config
from enrich.errors import (
    BudgetReached,
    CompletionError,
    ConfigError,
    InputChanged,
    QuotaExhausted,
    RunStopped,
    StorageError,
)
from enrich.holder import Here, ProcessId
from enrich.job import Job
from enrich.lease import LeaseHeld, LeaseLost, LeaseRecord, LeaseRevoked, hold_lease
from enrich.output.committed import committed_chunk_ids, committed_manifest
from enrich.output.layout import LAYOUT
from enrich.output.provenance import InputRecord
from enrich.output.reader import read_dataset
from enrich.planning import ChunkSpec
from enrich.run import run_job, run_pending
from enrich.shards import (
    ShardOutcome,
    ShardPlan,
    ShardRef,
    job_run_gone,
    run_shard,
    run_sharded,
    runner_gone,
    shard_count,
    shard_job,
    split,
)
from enrich.shards.ending import RunEnd, ShardEnd, read_end, restarts, stop_of
from enrich.shards.plan import ShardPlanUnreadable
from enrich.storage import Store


@pytest.mark.parametrize(
    ("pending", "parallelism", "in_flight", "shards"),
    [
        (100, 4, 4, 4),
        (100, 1, 4, 1),
        (15, 4, 4, 3),  # each shard keeps its 4 chunks in flight
        (3, 4, 4, 1),  # too few chunks to split at all
        (0, 4, 4, 1),
        (8, 8, 1, 8),
        (10_000, 50, 4, 50),
    ],
)
def test_how_many_shards(pending: int, parallelism: int, in_flight: int, shards: int) -> None:
    assert shard_count(pending, parallelism, in_flight) == shards


def chunks(n: int) -> list[ChunkSpec]:
    return [ChunkSpec(f"c{i}", f"s{i}", 0, i * 10, i * 10 + 10) for i in range(n)]


@pytest.mark.parametrize(
    ("n", "shards", "sizes"),
    [(10, 3, [3, 3, 4]), (4, 4, [1, 1, 1, 1]), (2, 4, [1, 1]), (7, 1, [7]), (9, 2, [4, 5])],
)
def test_shards_are_consecutive_and_even(n: int, shards: int, sizes: list[int]) -> None:
    parts = split(chunks(n), shards)
    assert [len(p) for p in parts] == sizes
    assert [c for p in parts for c in p] == chunks(n)  # every chunk once, in order


@pytest.mark.parametrize(
    ("text", "ok"),
    [("ab12/1/3", True), ("ab12/3/3", True), ("ab12/4/3", False), ("ab12/0/3", False),
     ("ab12/1", False), ("../x/1/2", False), ("ab12/x/3", False), ("ab/1/2/3", False)],
)  # fmt: skip
def test_a_shard_reference_is_checked(text: str, ok: bool) -> None:
    if ok:
        assert str(ShardRef.parse(text)) == text
    else:
        with pytest.raises(ValueError, match="expected <run>/<number>/<count>"):
            ShardRef.parse(text)


def test_a_shard_plan_reads_back_and_refuses_what_it_is_not() -> None:
    plan = ShardPlan.of("r1", "job", "fp", "owner", split(chunks(5), 2))
    back = ShardPlan.from_bytes(plan.to_bytes(), "plan")
    assert back == plan
    assert back.shards == (("c0", "c1"), ("c2", "c3", "c4"))
    assert back.budget_shares == (0.4, 0.6)
    catalogue = snapshot_catalogue("https://api.cerebras.ai").only(["gpt-oss-120b", "gone"])
    with_catalogue = dataclasses.replace(plan, catalogue=catalogue)
    assert ShardPlan.from_bytes(with_catalogue.to_bytes(), "plan") == with_catalogue
    assert list(catalogue.models) == ["gpt-oss-120b"]
    with pytest.raises(ShardPlanUnreadable, match="not a shard plan"):
        ShardPlan.from_bytes(b"{}", "plan")
    with pytest.raises(ShardPlanUnreadable, match="not a shard plan"):
        ShardPlan.from_bytes(with_catalogue.to_bytes().replace(b'"snapshot"', b'"elsewhere"'), "p")
    with pytest.raises(ShardPlanUnreadable, match="newer version"):
        ShardPlan.from_bytes(
            plan.to_bytes().replace(b'"format_version":1', b'"format_version":9'), "p"
        )


ME = ProcessId("host-a", "boot/pidns:1", 100, 5)


def lease(**changes: object) -> LeaseRecord:
    fields = dict(
        owner="coord", host=ME.host, pid=ME.pid, job="job", acquired_at=0.0, heartbeat_at=50.0,
        expires_at=80.0, machine=ME.machine, started=ME.started,
    )  # fmt: skip
    fields.update(changes)
    return LeaseRecord(**fields)  # type: ignore[arg-type]


HERE_RUNNING = Here(ME.host, ME.machine, ME.started)
HERE_GONE = Here(ME.host, ME.machine, None)


@pytest.mark.parametrize(
    ("record", "here", "gone"),
    [
        (lease(), HERE_RUNNING, None),
        (None, HERE_RUNNING, "released the output"),
        (lease(owner="other"), HERE_RUNNING, "another run took the output over"),
        (lease(expires_at=59.0), HERE_RUNNING, "stopped renewing"),
        (lease(), HERE_GONE, "no longer running"),
        (lease(host="host-b"), HERE_GONE, None),  # another machine: wait for its expiry
    ],
)
def test_when_the_job_run_of_a_shard_is_gone(
    record: LeaseRecord | None, here: Here, gone: str | None
) -> None:
    why = job_run_gone(record, "coord", now=60.0, here=here)
    assert (why is None) if gone is None else (why is not None and gone in why)


def in_process(job_config: Path, api: FakeCompleter, overrides: Sequence[str] = ()):  # type: ignore[no-untyped-def]
    """``run_shards`` for :func:`run_sharded`: every shard run here, side by side."""

    async def run_shards(plan: ShardPlan) -> list[ShardOutcome]:
        async def one(ref: ShardRef) -> ShardOutcome:
            # As a worker would: from the config, and the input as the split recorded it.
            job = shard_job(load_job_config(job_config, list(overrides)), ref, str(job_config))
            summary = await run_shard(job, ref, completer=api)
            return ShardOutcome(ref, summary.complete, summary.message)

        return list(await asyncio.gather(*(one(r) for r in plan.refs())))

    return run_shards


def sharded(rows: int, make_job: JobFactory, **execution: object) -> Path:
    return make_job(
        review_rows(rows),
        execution={"rows_per_chunk": 5, "chunks_in_flight": 2, "parallelism": 3, **execution},
    )


def test_a_sharded_job_commits_every_row_once_and_leaves_no_shard_behind(
    make_job: JobFactory,
) -> None:
    config = sharded(60, make_job)
    job = prepare_job(config)
    api = FakeCompleter(answer)
    seen: list[ShardPlan] = []
    run_shards = in_process(config, api)

    async def watched(plan: ShardPlan) -> list[ShardOutcome]:
        seen.append(plan)
        return await run_shards(plan)

    summary = asyncio.run(run_sharded(job, watched))
    assert summary.complete, summary.message
    assert [len(s) for s in seen[0].shards] == [4, 4, 4]  # 12 chunks of 5 rows, 3 shards
    ids = read_dataset(str(job.store.url)).column("review_id").to_pylist()
    assert sorted(ids) == sorted(r["review_id"] for r in review_rows(60))
    assert len(api.requests) == 60  # each row asked once, over three shards
    assert summary.ok == 60 and summary.requests == 60
    assert summary.cost_usd > 0
    assert job.store.keys(LAYOUT.shards) == []  # the plan and the shard leases collected
    rerun = asyncio.run(run_sharded(prepare_job(config), watched))
    assert rerun.complete and len(api.requests) == 60


def test_a_shard_run_again_after_its_runner_died_pays_nothing_twice(make_job: JobFactory) -> None:
    config = sharded(60, make_job)
    job = prepare_job(config)
    api = FakeCompleter(answer)
    died: list[str] = []

    async def run_shards(plan: ShardPlan) -> list[ShardOutcome]:
        first = plan.refs()[0]
        shard = prepare_job(config)
        # The first run of shard 1 commits two chunks, then its process dies: its lease stays
        # behind naming a pid this machine no longer runs.
        two = [c for c in shard.chunks if c.chunk_id in plan.shards[0]][:2]
        key = LAYOUT.shard_lease(first.run, first.number)
        async with hold_lease(shard.store, job="x", key=key) as held:
            await run_pending(shard, two, held, completer=api)
            held.me = ProcessId(held.me.host, held.me.machine, 2**22 - 7, 1)
            held.renew()  # the record now names a process that is not running
            held.release = lambda: None  # type: ignore[method-assign]  # it died holding it
        assert runner_gone(shard.store, first)
        died.append(first.label)
        assert not runner_gone(shard.store, first)  # its lease was cleared for the next run
        return await in_process(config, api)(plan)

    summary = asyncio.run(run_sharded(job, run_shards))
    assert summary.complete, summary.message
    assert died == ["shard 1 of 3"]
    assert len(api.requests) == 60  # the ten rows the dead run committed were not asked again
    assert read_dataset(str(job.store.url)).num_rows == 60


def test_a_shard_stops_when_its_job_run_is_gone(make_job: JobFactory) -> None:
    config = sharded(60, make_job)
    job = prepare_job(config)
    api = FakeCompleter(answer)
    outcomes: list[ShardOutcome] = []

    async def run_shards(plan: ShardPlan) -> list[ShardOutcome]:
        # The coordinator's lease is taken over by another run before the shards start.
        job.store.write_bytes(LAYOUT.lease, lease(owner="someone-else", expires_at=2e9).to_bytes())
        ref = plan.refs()[1]
        with pytest.raises(LeaseRevoked, match="another run took the output over"):
            await run_shard(prepare_job(config), ref, completer=api)
        outcomes.append(ShardOutcome(ref, False, "stopped"))
        return outcomes

    with pytest.raises(LeaseLost):
        asyncio.run(run_sharded(job, run_shards))  # nor does the coordinator commit
    assert api.requests == []
    assert committed_chunk_ids(job.store) == set()
    assert not job.store.exists(LAYOUT.manifest)


def test_a_shard_whose_job_run_goes_away_stops_at_its_next_renewal(
    make_job: JobFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lease_module, "DEFAULT_RENEW_S", 0.05)  # the shard's lease
    config = sharded(60, make_job)
    job = prepare_job(config)

    async def slow(request: CompletionRequest) -> Completion:
        await asyncio.sleep(0.2)
        return answer(request)

    api = FakeCompleter(slow)

    async def main() -> None:
        async with hold_lease(job.store, job="job", renew_s=3600) as run_lease:
            inputs = InputRecord.of(job.sources, job.input_columns)
            shards = split(job.chunks, 2)
            plan = ShardPlan.of("r1", "job", job.fingerprint, run_lease.owner, shards, inputs)
            job.store.write_bytes(LAYOUT.shard_plan("r1"), plan.to_bytes())
            ref = plan.refs()[0]
            working = asyncio.ensure_future(
                run_shard(shard_job(load_job_config(config), ref, str(config)), ref, completer=api)
            )
            await asyncio.to_thread(until, lambda: bool(committed_chunk_ids(job.store)))
            run_lease.release()  # the run that split the job ended (cancelled, say)
            with pytest.raises(LeaseRevoked, match="released the output"):
                await working

    asyncio.run(main())
    assert 0 < len(committed_chunk_ids(job.store)) < 6  # it stopped short of its six chunks
    assert recorded_stops(job.store) == []  # not a stop of the job: nobody is waiting


def test_a_shard_refuses_a_job_that_changed_since_it_was_planned(
    make_job: JobFactory, tmp_path: Path
) -> None:
    config = sharded(60, make_job)
    job = prepare_job(config)
    api = FakeCompleter(answer)

    async def run_shards(plan: ShardPlan) -> list[ShardOutcome]:
        ref = plan.refs()[0]
        with pytest.raises(ConfigError, match="planned for another config"):
            await run_shard(
                prepare_job(config, ["prompt.system=Something else."]), ref, completer=api
            )
        fewer = tmp_path / "in" / "reviews.jsonl"
        kept = fewer.read_bytes()
        fewer.write_bytes(b"".join(kept.splitlines(keepends=True)[:30]))
        try:
            with pytest.raises(InputChanged, match="the input changed"):
                await run_shard(prepare_job(config), plan.refs()[2], completer=api)
        finally:
            fewer.write_bytes(kept)
        return [ShardOutcome(r, False, "refused") for r in plan.refs()]

    summary = asyncio.run(run_sharded(job, run_shards))
    assert not summary.complete
    assert "shard 1 of 3: refused" in summary.message
    assert api.requests == []


def test_each_shard_has_its_share_of_the_budget(make_job: JobFactory) -> None:
    # A shard's 20 rows cost about $0.00023, the job's 60 $0.00068. The run may spend
    # $0.0004: were each shard allowed all of it, every shard would finish.
    config = sharded(60, make_job)
    capped = ["budget.max_usd=0.0004"]
    job = prepare_job(config, capped)
    api = FakeCompleter(answer)
    summary = asyncio.run(run_sharded(job, in_process(config, api, capped)))
    assert not summary.complete
    assert 0 < summary.cost_usd <= 0.0004
    assert "budget of $0.0001" in summary.message  # each shard's third
    assert recorded_stops(job.store) == ["budget"] * 3  # none is started again


def test_an_unsharded_run_still_runs_in_one_process(make_job: JobFactory) -> None:
    job = prepare_job(sharded(60, make_job))
    api = FakeCompleter(answer)
    summary = asyncio.run(run_job(job, completer=api))
    assert summary.complete and len(api.requests) == 60


def test_a_shard_reads_no_input_to_know_its_job_and_only_its_own_chunks(
    make_job: JobFactory, tmp_path: Path, counted_reads: Counter[str]
) -> None:
    files = [write_jsonl(tmp_path / "in" / f"part-{i}.jsonl", review_rows(20)) for i in range(3)]
    for i, path in enumerate(files):  # distinct ids across the three files
        path.write_text(path.read_text().replace('"r-', f'"f{i}-'))
    config = make_job(
        input_path=f"counted://{tmp_path}/in/*.jsonl",
        execution={"rows_per_chunk": 10, "chunks_in_flight": 2, "parallelism": 3},
    )
    job = prepare_job(config)
    api = FakeCompleter(answer)
    reads: dict[int, Counter[str]] = {}

    async def run_shards(plan: ShardPlan) -> list[ShardOutcome]:
        outcomes = []
        for ref in plan.refs():  # one after another, to count each one's reads
            counted_reads.clear()
            shard = shard_job(load_job_config(config), ref, str(config))
            reads[ref.number] = Counter(counted_reads)  # before: what knowing the job cost
            summary = await run_shard(shard, ref, completer=api)
            outcomes.append(ShardOutcome(ref, summary.complete, summary.message))
            reads[-ref.number] = Counter(counted_reads)
        return outcomes

    summary = asyncio.run(run_sharded(job, run_shards))
    assert summary.complete, summary.message
    assert [reads[n] for n in (1, 2, 3)] == [Counter(), Counter(), Counter()]
    for n, path in enumerate(files, start=1):  # shard n has file n's two chunks, and reads it
        assert set(reads[-n]) == {str(path)}, n


def test_a_shard_started_after_a_file_changed_refuses_in_one_line(
    make_job: JobFactory, tmp_path: Path
) -> None:
    config = sharded(60, make_job)
    job = prepare_job(config)

    async def run_shards(plan: ShardPlan) -> list[ShardOutcome]:
        source = tmp_path / "in" / "reviews.jsonl"
        source.write_bytes(source.read_bytes() + b"\n")  # another size: rewritten
        with pytest.raises(InputChanged, match=r"reviews.jsonl: .* since shard 1 of 3 was planned"):
            shard_job(load_job_config(config), plan.refs()[0], str(config))
        stop = read_end(job.store, plan.refs()[0])
        assert stop is not None and stop.stopped == "config" and "reviews.jsonl" in stop.message
        return [ShardOutcome(r, False, "input changed") for r in plan.refs()]

    summary = asyncio.run(run_sharded(job, run_shards))
    assert not summary.complete


def test_a_second_run_of_a_shard_that_is_being_worked_on_is_refused(make_job: JobFactory) -> None:
    config = sharded(60, make_job)
    job = prepare_job(config)
    api = FakeCompleter(answer)

    async def run_shards(plan: ShardPlan) -> list[ShardOutcome]:
        ref = plan.refs()[0]
        key = LAYOUT.shard_lease(ref.run, ref.number)
        async with hold_lease(job.store, job="job", key=key):  # a run of shard 1 is working
            with pytest.raises(LeaseHeld, match="another run is writing here"):
                shard = shard_job(load_job_config(config), ref, str(config))
                await run_shard(shard, ref, completer=api)
        assert recorded_stops(job.store) == ["lease"]  # the working run is not doubled
        return [ShardOutcome(r, False, "held") for r in plan.refs()]

    summary = asyncio.run(run_sharded(job, run_shards))
    assert not summary.complete
    assert api.requests == [] and committed_chunk_ids(job.store) == set()


def recorded_stops(store: Store) -> list[str]:
    """The stops every shard run recorded under ``store``, in key order."""
    keys = sorted(k for k in store.keys(LAYOUT.shards) if k.endswith(".end.json"))
    ends = [ShardEnd.from_bytes(store.read_bytes(k)) for k in keys]
    return [end.stopped for end in ends if end is not None]


@pytest.mark.parametrize(
    ("error", "stopped"),
    [
        (BudgetReached("the run's budget of $1 is spent"), "budget"),
        (QuotaExhausted("requests", 3600.0), "quota"),
        (RunStopped("401: the key was refused"), "job_error"),
        (RunStopped("30 of 40 rows failed", kind="error_rate"), "error_rate"),
        (ConfigError("job.yaml: planned for another config"), "config"),
        (InputChanged("in/a.jsonl: rewritten"), "config"),
        (LeaseHeld("another run is writing here"), "lease"),
        # A new run may yet finish: the job run may still hold the output, storage may be
        # back, the Prefect API may answer again.
        (LeaseLost("the shard's lease was taken"), None),
        (StorageError("s3://out/_chunks: 503"), None),
        (RuntimeError("Unable to acquire concurrency slots"), None),
    ],
)
def test_which_errors_stop_a_shard_for_good(error: BaseException, stopped: str | None) -> None:
    assert stop_of(error) == stopped
    end = ShardEnd.of(error)
    assert (end is None) if stopped is None else (end == ShardEnd(str(error), stopped))


STOP = ShardEnd("budget share spent", "budget")


@pytest.mark.parametrize(
    ("run", "end", "again"),
    [
        ("completed", None, False),
        ("crashed", None, True),  # its process died: whatever it recorded, it did not finish
        ("crashed", STOP, True),
        ("failed", None, True),  # transient rows, storage, the Prefect API: try again
        ("failed", STOP, False),  # a new run would meet the same stop
        ("cancelled", None, False),  # a person stopped it
        ("orphaned", None, True),  # it found the coordinator gone, but the coordinator is not
    ],
)
def test_which_ended_shard_runs_are_started_again(
    run: RunEnd, end: ShardEnd | None, again: bool
) -> None:
    assert restarts(run, end) is again


@pytest.mark.parametrize("data", [b"", b"{", b"[]", b'{"message": "x"}', b'"stop"'])
def test_a_stop_record_that_cannot_be_read_is_no_stop(data: bytes) -> None:
    assert ShardEnd.from_bytes(data) is None
    assert ShardEnd.from_bytes(STOP.to_bytes()) == STOP


def test_a_shard_left_unfinished_by_transient_errors_records_no_stop_and_a_new_run_finishes(
    make_job: JobFactory,
) -> None:
    config = sharded(30, make_job, retry={"attempts": 1})
    job = prepare_job(config)
    down = [True]  # the API answers 503 to shard 1's first run

    def flaky(request: CompletionRequest) -> Completion | CompletionError:
        return CompletionError("service unavailable", status=503) if down[0] else answer(request)

    api = FakeCompleter(flaky)

    async def run_shards(plan: ShardPlan) -> list[ShardOutcome]:
        first = plan.refs()[0]
        shard = shard_job(load_job_config(config), first, str(config))
        summary = await run_shard(shard, first, completer=api)
        assert not summary.complete and "rerun to resume" in summary.message
        assert read_end(job.store, first) is None  # no stop: the coordinator runs it again
        down[0] = False
        return await in_process(config, api)(plan)

    summary = asyncio.run(run_sharded(job, run_shards))
    assert summary.complete, summary.message
    assert read_dataset(str(job.store.url)).num_rows == 30
    assert job.store.keys(LAYOUT.shards) == []


def test_shards_cost_rows_at_the_prices_of_the_catalogue_the_job_was_split_with(
    make_job: JobFactory,
) -> None:
    # No pricing in the config: rows cost what the catalogue says. The run that split the job
    # read a catalogue with dearer prompts (live, on its machine) than the copy a shard's
    # machine falls back to (here the shipped snapshot, offline).
    config = make_job(
        review_rows(30),
        pricing={"input_per_million": None, "output_per_million": None},
        execution={"rows_per_chunk": 5, "chunks_in_flight": 2, "parallelism": 3},
    )
    cfg = load_job_config(config)
    here = Job.prepare(cfg, str(config))
    entry = here.catalogue.models["gpt-oss-120b"]
    assert entry.input_per_million is not None and entry.output_per_million is not None
    dearer = dataclasses.replace(entry, input_per_million=entry.input_per_million * 3)
    live = dataclasses.replace(here.catalogue, source="live", models={entry.id: dearer})
    job = Job.prepare(cfg, str(config), catalogue=live)
    assert job.fingerprint != here.fingerprint  # prices are in the fingerprint
    summary = asyncio.run(run_sharded(job, in_process(config, FakeCompleter(answer))))
    assert summary.complete, summary.message
    manifest = committed_manifest(job.store)
    assert manifest is not None and manifest.fingerprint == job.fingerprint
    paid = summary.prompt_tokens * dearer.input_per_million
    paid += summary.completion_tokens * entry.output_per_million
    assert summary.cost_usd == pytest.approx(paid / 1e6)
