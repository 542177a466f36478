"""One account budget for the fleet, over Prefect global concurrency limits on a real server.

The limits are created and updated from the job config; a flow run draws its requests from
them (a spent budget holds its first request back); and a backfill of four partitions, two at
a time on two process workers, keeps the requests and tokens the simulator saw within the
account's quota over every 10-second window.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate
from prefect.deployments import run_deployment
from prefect_api import (
    PrefectServer,
    child_runs,
    run_story,
    sim_arrivals,
    simulator_and_workers,
)
from support import (
    ROOT,
    allowance,
    overdraft,
    window_peak,
    write_jsonl,
)

from enrich.config import load_job_config
from enrich.output.reader import read_dataset
from enrich.sim.harness import ThreadedSimulator
from enrich_flows.enrich import enrich_dataset
from enrich_tasks.fleet import ensure_fleet_limits, fleet_limit_names, fleet_on

pytest_plugins = ["prefect_harness"]

DAILY = "configs/reviews_daily.yaml"


def daily(*overrides: str) -> Any:
    return load_job_config(ROOT / DAILY, list(overrides))


@pytest.mark.parametrize(
    ("overrides", "in_deployment", "on"),
    [
        ((), True, True),  # a worker's run shares the account by default
        ((), False, False),  # a run started by hand does not
        (("execution.fleet=false",), True, False),
        (("execution.fleet=true",), False, True),
        (  # nothing per minute to share
            (
                "execution.fleet=true",
                "execution.requests_per_minute=null",
                "execution.tokens_per_minute=null",
            ),
            True,
            False,
        ),
    ],
)
def test_when_a_run_shares_the_fleet_budget(
    overrides: tuple[str, ...], in_deployment: bool, on: bool
) -> None:
    assert fleet_on(daily(*overrides), in_deployment) is on


def test_the_limits_are_named_after_the_model_or_the_fleet_name() -> None:
    assert fleet_limit_names(daily()) == ("enrich-rpm-gpt-oss-120b", "enrich-tpm-gpt-oss-120b")
    named = daily("execution.fleet_name=Team_A.west")
    assert fleet_limit_names(named) == ("enrich-rpm-team-a-west", "enrich-tpm-team-a-west")


async def read_limit(name: str) -> tuple[int, float, int]:
    async with get_client() as client:
        found = await client.read_global_concurrency_limit_by_name(name)
    return found.limit, found.slot_decay_per_second, found.active_slots


@pytest.mark.prefect
@pytest.mark.slow
async def test_the_fleet_limits_follow_the_job_config(prefect_server: PrefectServer) -> None:
    name = f"probe-{uuid.uuid4().hex[:8]}"
    first = daily(f"execution.fleet_name={name}", "execution.requests_per_minute=120")
    grants = await ensure_fleet_limits(first)
    assert grants.names == (f"enrich-rpm-{name}", f"enrich-tpm-{name}")
    assert await read_limit(grants.names[0]) == (120, 2.0, 0)
    assert await read_limit(grants.names[1]) == (1_000_000, pytest.approx(16_666.67), 0)
    await grants.take(30, 0)  # one acquire of many requests
    assert (await read_limit(grants.names[0]))[2] > 0
    raised = daily(f"execution.fleet_name={name}", "execution.requests_per_minute=600")
    await ensure_fleet_limits(raised)
    assert (await read_limit(grants.names[0]))[:2] == (600, 10.0)


@pytest.mark.prefect
@pytest.mark.slow
async def test_a_spent_fleet_budget_holds_a_flow_runs_requests_back(
    prefect_server: PrefectServer,
    sim: ThreadedSimulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(ROOT)
    name = f"spent-{uuid.uuid4().hex[:8]}"
    overrides = [
        f"output.path={tmp_path / 'out'}",
        "execution.fleet=true",
        f"execution.fleet_name={name}",
        "execution.requests_per_minute=60",
    ]
    grants = await ensure_fleet_limits(daily(*overrides))
    async with get_client() as client:  # another process took the whole minute just now
        await client.update_global_concurrency_limit(
            grants.names[0], GlobalConcurrencyLimitUpdate(active_slots=60)
        )
    spent_at = time.time()
    state = await enrich_dataset(DAILY, overrides, "2026-11-20", return_state=True)
    assert state.is_completed(), state.message
    assert read_dataset(f"{tmp_path / 'out'}/dt=2026-11-20").num_rows == 12
    arrivals = sim_arrivals(sim.base_url)
    assert len(arrivals) == 12
    # The first grant (a horizon's fair share: 5 requests) had to wait for 5 slots to decay at
    # 1 a second; without the fleet's limit the run would have sent at once.
    assert min(t for t, _ in arrivals) >= spent_at + 4.0


WORKER_KEY = "csk-fleet-budget-7f1d2c9e4b6a3085"
BACKFILL = "enrich-backfill/reviews-backfill"
DAYS = ["2026-12-01", "2026-12-02", "2026-12-03", "2026-12-04"]
ROWS_PER_DAY = 60
RPM, TPM = 120, 24_000


@pytest.mark.prefect
@pytest.mark.slow
def test_a_backfill_on_two_workers_keeps_to_the_account_quota(
    prefect_server: PrefectServer, tmp_path: Path
) -> None:
    raw = tmp_path / "raw"
    for day in DAYS:
        rows = [
            {
                "review_id": f"{day}-{i:03d}",
                "product": "kettle",
                "rating": 1 + i % 5,
                "text": f"Review {i} of {day}: it boiled {'fast' if i % 3 else 'slowly'}.",
            }
            for i in range(ROWS_PER_DAY)
        ]
        write_jsonl(raw / f"dt={day}" / "part-0.jsonl", rows)
    out = tmp_path / "out"
    limits = ["--rpm", str(RPM), "--tpm", str(TPM), "--ttft", "0.05"]
    with simulator_and_workers(prefect_server, tmp_path, WORKER_KEY, *limits) as (sim, _):
        overrides = [
            f"input.path={raw}/dt={{date}}/*.jsonl",
            f"output.path={out}",
            f"execution.requests_per_minute={RPM}",
            f"execution.tokens_per_minute={TPM}",
            f"execution.fleet_name=backfill-{uuid.uuid4().hex[:8]}",
        ]
        run = run_deployment(
            BACKFILL,
            parameters={
                "start": DAYS[0],
                "end": DAYS[-1],
                "parallelism": 2,
                "overrides": overrides,
            },
            timeout=600,
            poll_interval=2,
            as_subflow=False,
        )
        assert run.state is not None and run.state.is_completed(), run_story(run, tmp_path)
        children = child_runs(run.id)
        assert len(children) == 4 and all(c.state and c.state.is_completed() for c in children)
        arrivals = sim_arrivals(sim.base_url)
    for day in DAYS:  # every row once
        ids = read_dataset(f"{out}/dt={day}").column("row_id").to_pylist()
        assert len(ids) == len(set(ids)) == ROWS_PER_DAY, day
    requests = [(t, 1.0) for t, _ in arrivals]
    worst_requests, worst_tokens = window_peak(requests, 10), window_peak(arrivals, 10)
    print(
        f"worst 10 s: {worst_requests:.0f} requests (of {allowance(RPM, 10):.0f}), "
        f"{worst_tokens:.0f} tokens (of {allowance(TPM, 10):.0f}); "
        f"overdraft {overdraft(requests, RPM):.1f} requests, {overdraft(arrivals, TPM):.0f} "
        f"tokens; {len(arrivals)} requests"
    )
    assert worst_requests <= allowance(RPM, 10)
    assert worst_tokens <= allowance(TPM, 10)
    # Within the account's bucket but for at most a grant's horizon (5 s) of refill.
    assert overdraft(requests, RPM) <= RPM / 60 * 5
    assert overdraft(arrivals, TPM) <= TPM / 60 * 5
