"""One job over many workers: shards as flow runs on two process workers, one commit.

A real Prefect server, ``prefect deploy --all``, two process workers on 127.0.0.1 and the
simulator in a process of its own with the account's quota. A job with
``execution.parallelism=2`` splits into two shard runs of ``enrich-dataset/enrich``, children
of the run that split it; every row is committed once, and the requests and tokens the
simulator saw kept to the quota over every 10-second window. A worker killed mid-shard: the
run that split the job finds the shard's runner gone, starts the shard again on the other
worker, and the new run asks again only what the dead one had not journaled.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterName,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.deployments import run_deployment
from prefect.states import Cancelling
from prefect_api import (
    PrefectServer,
    child_runs,
    flow_run,
    run_id,
    run_story,
    sim_arrivals,
    simulator_and_workers,
)
from support import (
    JobFactory,
    allowance,
    overdraft,
    prepare_job,
    review_rows,
    until,
    window_peak,
)

from enrich.lease import read_lease
from enrich.output.committed import committed_chunk_ids
from enrich.output.layout import LAYOUT
from enrich.output.provenance import InputRecord
from enrich.output.reader import read_dataset
from enrich.shards import ShardPlan, split
from enrich.storage import Store
from enrich_flows import shards as shards_flow
from enrich_flows.enrich import enrich_dataset

pytest_plugins = ["prefect_harness"]

DEPLOYMENT = "enrich-dataset/enrich"
WORKER_KEY = "csk-shards-3b9e0d7c1a5f4862"
RPM, TPM = 120, 24_000


def job_config(make_job: JobFactory, rows: int, **execution: object) -> Path:
    return make_job(
        review_rows(rows),
        execution={
            "rows_per_chunk": 10,
            "chunks_in_flight": 2,
            "parallelism": 2,
            "journal_rows": 5,
            "journal_interval_s": 0.2,
            **execution,
        },
    )


@pytest.mark.prefect
@pytest.mark.slow
def test_a_sharded_job_on_two_workers_commits_once_within_the_quota(
    prefect_server: PrefectServer, tmp_path: Path, make_job: JobFactory
) -> None:
    rows = 180  # a full bucket's 120, then 60 more at the quota's pace
    config = job_config(
        make_job,
        rows,
        requests_per_minute=RPM,
        tokens_per_minute=TPM,
        fleet_name=f"shards-{uuid.uuid4().hex[:8]}",
    )
    limits = ["--rpm", str(RPM), "--tpm", str(TPM), "--ttft", "0.05"]
    with simulator_and_workers(prefect_server, tmp_path, WORKER_KEY, *limits) as (sim, _):
        run = run_deployment(
            DEPLOYMENT,
            parameters={"config": str(config)},
            timeout=600,
            poll_interval=2,
            as_subflow=False,
        )
        seen = sim_arrivals(sim.base_url)
    assert run.state is not None and run.state.is_completed(), run_story(run, tmp_path)
    shards = child_runs(run.id)
    assert sorted(c.name for c in shards) == ["job-shard-1-of-2", "job-shard-2-of-2"]
    assert all(c.state is not None and c.state.is_completed() for c in shards)
    ids = read_dataset(str(tmp_path / "out")).column("review_id").to_pylist()
    assert len(ids) == len(set(ids)) == rows  # every row once, in one commit
    assert Store(str(tmp_path / "out")).keys(LAYOUT.shards) == []
    requests = [(t, 1.0) for t, _ in seen]
    worst_requests, worst_tokens = window_peak(requests, 10), window_peak(seen, 10)
    print(
        f"worst 10 s: {worst_requests:.0f} requests (of {allowance(RPM, 10):.0f}), "
        f"{worst_tokens:.0f} tokens (of {allowance(TPM, 10):.0f}); {len(seen)} requests"
    )
    assert len(seen) >= rows
    assert worst_requests <= allowance(RPM, 10)
    assert worst_tokens <= allowance(TPM, 10)
    assert overdraft(requests, RPM) <= RPM / 60 * 5  # at most a grant's horizon of refill
    assert overdraft(seen, TPM) <= TPM / 60 * 5


def ancestors(pid: int) -> list[int]:
    """The processes ``pid`` descends from, nearest first (from /proc; [] once it is gone)."""
    found = []
    while pid > 1:
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                pid = int(fh.read().rsplit(b")", 1)[1].split()[1])
        except FileNotFoundError:
            break
        found.append(pid)
    return found


def shard_processes(out: Store) -> list[int] | None:
    """The pids of the shards' runners, once shard 1 has committed two chunks."""
    for key in out.keys(LAYOUT.shards):
        if not key.endswith(".json") or key.endswith((".lease.json", ".end.json")):
            continue
        plan = ShardPlan.from_bytes(out.read_bytes(key), key)
        if len(set(plan.shards[0]) & committed_chunk_ids(out)) < 2:
            return None
        leases = [read_lease(out, LAYOUT.shard_lease(plan.run, r.number)) for r in plan.refs()]
        if leases[0] is None:
            return None
        return [lease.pid for lease in leases if lease is not None]
    return None


@pytest.mark.prefect
@pytest.mark.slow
async def test_a_worker_killed_mid_shard_is_replaced_and_nothing_is_paid_twice(
    prefect_server: PrefectServer,
    tmp_path: Path,
    make_job: JobFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rows, concurrency = 240, 4
    config = job_config(make_job, rows, max_concurrency=concurrency)
    out = Store(str(tmp_path / "out"))
    with simulator_and_workers(prefect_server, tmp_path, WORKER_KEY, "--ttft", "0.3") as (
        sim,
        workers,
    ):
        # The run that splits the job runs here, so the worker killed is one of a shard.
        monkeypatch.setenv("CEREBRAS_BASE_URL", sim.base_url)
        monkeypatch.setenv("CEREBRAS_API_KEY", WORKER_KEY)
        killed: list[int] = []

        def kill_mid_shard() -> None:
            found: list[list[int]] = []

            def mid_shard() -> bool:
                now = shard_processes(out)
                found.extend([now] if now else [])
                return now is not None

            until(mid_shard, within_s=240, message="shard 1 never committed two chunks")
            shard_1 = found[0][0]
            worker = next(w for w in workers if w.pid in ancestors(shard_1))
            # The worker, and every shard it runs (a flow run may be in a session of its own).
            mine = [pid for pid in found[0] if worker.pid in ancestors(pid)]
            os.killpg(worker.pid, signal.SIGKILL)
            for pid in mine:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            killed.extend(mine)

        killer = asyncio.ensure_future(asyncio.to_thread(kill_mid_shard))
        state = await enrich_dataset(str(config), return_state=True)
        await killer
        sent = len(sim_arrivals(sim.base_url))
    assert state.is_completed(), state.message
    assert killed
    ids = read_dataset(str(tmp_path / "out")).column("review_id").to_pylist()
    assert len(ids) == len(set(ids)) == rows
    runs = child_runs(state.state_details.flow_run_id)  # type: ignore[arg-type]
    kinds = [(r.name, r.state.type) for r in runs if r.state is not None]
    for shard in ("job-shard-1-of-2", "job-shard-2-of-2"):
        assert kinds.count((shard, StateType.COMPLETED)) == 1, kinds
    assert kinds.count(("job-shard-1-of-2", StateType.CRASHED)) == 1, kinds
    # Shard 2's run crashed too when the killed worker ran it (before or after its lease).
    crashed = [kind for kind in kinds if kind[1] == StateType.CRASHED]
    assert len(kinds) == 2 + len(crashed)  # each crashed run replaced once
    # Asked again: at most what each dead runner had in flight and its journals had not
    # written yet (2 chunks in flight, a journal written every 5 results).
    window = concurrency + 2 * 5
    print(f"{sent} requests for {rows} rows, {len(crashed)} shard runs crashed")
    assert rows <= sent <= rows + window * len(crashed)


@pytest.mark.prefect
@pytest.mark.slow
def test_cancelling_a_sharded_job_cancels_its_shards_and_fails_none(
    prefect_server: PrefectServer, tmp_path: Path, make_job: JobFactory
) -> None:
    config = job_config(make_job, 240, max_concurrency=4)
    out = Store(str(tmp_path / "out"))
    with simulator_and_workers(prefect_server, tmp_path, WORKER_KEY, "--ttft", "0.3"):
        run = run_deployment(
            DEPLOYMENT, parameters={"config": str(config)}, timeout=0, as_subflow=False
        )
        until(lambda: shard_processes(out) is not None, 240, "shard 1 never committed two chunks")
        with get_client(sync_client=True) as client:  # what the UI's Cancel button does
            client.set_flow_run_state(run.id, Cancelling(), force=True)

        def ended() -> bool:
            time.sleep(0.5)
            runs = [flow_run(run.id), *child_runs(run.id)]
            return all(r.state is not None and r.state.is_final() for r in runs)

        until(ended, 180, "the cancelled job's runs did not all end")
    coordinator, shards = flow_run(run.id), child_runs(run.id)
    states = [(r.name, r.state_type, r.state_name) for r in [coordinator, *shards]]
    assert coordinator.state is not None and coordinator.state.is_cancelled(), states
    assert len(shards) == 2 and all(r.state and r.state.is_cancelled() for r in shards), states
    print(states)


def failed_runs(like: str) -> int:
    """How many flow runs whose name contains ``like`` have failed."""
    time.sleep(0.5)  # a poll of the server, not a busy loop
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                name=FlowRunFilterName(like_=like),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.FAILED])),
            )
        )
    return len(runs)


@pytest.mark.prefect
@pytest.mark.slow
async def test_a_shard_run_that_failed_short_of_a_stop_is_started_again(
    prefect_server: PrefectServer,
    tmp_path: Path,
    make_job: JobFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rows, name = 40, f"again-{uuid.uuid4().hex[:8]}"
    config = make_job(
        review_rows(rows),
        name=name,
        execution={
            "rows_per_chunk": 10,
            "chunks_in_flight": 2,
            "parallelism": 2,
            "max_error_share": 1.0,  # every answer a 503: rows failed transiently, no stop
            "retry": {"attempts": 1},
        },
    )
    sim_args = ["--ttft", "0.05", "--fail-503", "1"]
    with simulator_and_workers(prefect_server, tmp_path, WORKER_KEY, *sim_args) as (sim, _):
        monkeypatch.setenv("CEREBRAS_BASE_URL", sim.base_url)  # the run that splits the job
        monkeypatch.setenv("CEREBRAS_API_KEY", WORKER_KEY)

        def heal_once_a_shard_run_failed() -> None:
            until(lambda: failed_runs(f"{name}-shard") > 0, 300, "no shard run failed")
            sim.set_faults(fail_503=0.0)

        healer = asyncio.ensure_future(asyncio.to_thread(heal_once_a_shard_run_failed))
        state = await enrich_dataset(str(config), return_state=True)
        await healer
        served = sim.stats()
    assert state.is_completed(), state.message
    runs = child_runs(state.state_details.flow_run_id)  # type: ignore[arg-type]
    kinds = [(r.name, r.state.type) for r in runs if r.state is not None]
    shards = [f"{name}-shard-1-of-2", f"{name}-shard-2-of-2"]
    for shard in shards:
        assert kinds.count((shard, StateType.COMPLETED)) == 1, kinds
    failed = [kind for kind in kinds if kind[1] == StateType.FAILED]
    assert failed and len(kinds) == 2 + len(failed), kinds  # each failed run started again
    ids = read_dataset(str(tmp_path / "out")).column("review_id").to_pylist()
    assert len(ids) == len(set(ids)) == rows
    print(f"{len(failed)} shard runs failed and were started again; {served}")


@pytest.mark.prefect
async def test_a_shard_whose_job_run_is_gone_ends_cancelled_having_sent_nothing(
    prefect_server: PrefectServer, make_job: JobFactory
) -> None:
    config = job_config(make_job, 40)
    job = prepare_job(config)
    inputs = InputRecord.of(job.sources, job.input_columns)
    shards = split(job.chunks, 2)
    plan = ShardPlan.of("ended1", "job", job.fingerprint, "a-run-now-over", shards, inputs)
    job.store.write_bytes(LAYOUT.shard_plan(plan.run), plan.to_bytes())
    state = await enrich_dataset(str(config), shard=str(plan.refs()[0]), return_state=True)
    assert state.is_cancelled(), state.message  # not Failed: nobody waits for this shard
    recorded = flow_run(run_id(state)).state  # as the coordinator reads it from the server
    assert recorded is not None and recorded.is_cancelled() and recorded.name == "Orphaned"
    assert "released the output" in str(state.message)
    assert committed_chunk_ids(job.store) == set()


@pytest.mark.prefect
@pytest.mark.slow
async def test_shards_without_their_deployment_fail_in_one_line_before_anything_is_written(
    prefect_server: PrefectServer, make_job: JobFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shards_flow, "SHARD_DEPLOYMENT", "enrich-dataset/not-deployed")
    config = job_config(make_job, 60)
    state = await enrich_dataset(str(config), return_state=True)
    assert state.is_failed()
    message = str(state.message)
    assert "enrich-dataset/not-deployed, which the Prefect server does not have" in message
    out = Store(str(config.parent / "out"))
    assert out.keys("") == []  # no lease, no plan, no shard
