"""The deployments of ``prefect.yaml``, run the way a Prefect user runs them.

The fixtures start everything: a Prefect server, a process work pool, ``prefect deploy --all``
from the repository root, the simulator (accepting only the worker's key) and ``prefect worker
start`` in a scratch directory, so the deployments' pull step is what finds the code. The
tests trigger deployment runs and assert through the Prefect API: flow runs and their states,
names and tags, and the artifacts' figures against what the simulator counted.
"""

from __future__ import annotations

import json
import shutil
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect_api import (
    PrefectServer,
    artifacts,
    child_runs,
    logs,
    run_story,
    table,
)
from support import ROOT, start_process, stop_process

from enrich.output.reader import read_dataset
from enrich.sim.process import SimProcess

pytest_plugins = ["prefect_harness"]
pytestmark = [pytest.mark.prefect, pytest.mark.slow]

POOL = "enrich-process"
BACKFILL = "enrich-backfill/reviews-backfill"
SCHEDULE = "enrich-incremental/reviews-daily"
WORKER_KEY = "csk-worker-env-0b5e7d4c93a2f618"
RUN_TIMEOUT_S = 240
SAMPLE_ROWS = {"2026-11-20": 12, "2026-11-21": 15, "2026-11-22": 10, "2026-11-23": 14}


@dataclass
class Deployed:
    server: PrefectServer
    sim_url: str
    raw: Path
    out: Path

    @property
    def overrides(self) -> list[str]:
        """The sample job, reading a scratch copy of the sample data, writing to scratch."""
        return [f"input.path={self.raw}/dt={{date}}/*.jsonl", f"output.path={self.out}"]

    def sim(self, action: str = "stats") -> dict[str, Any]:
        method = "POST" if action == "reset" else "GET"
        request = urllib.request.Request(f"{self.sim_url}/_sim/{action}", method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            body: dict[str, Any] = json.loads(response.read() or b"{}")
        return body

    def run(self, deployment: str, **parameters: Any) -> FlowRun:
        """Trigger a deployment run and wait for its final state."""
        run = run_deployment(
            deployment,
            parameters={"overrides": self.overrides, **parameters},
            timeout=RUN_TIMEOUT_S,
            poll_interval=1,
            as_subflow=False,
        )
        assert run.state is not None and run.state.is_final(), f"{run.name} did not finish"
        return run


@pytest.fixture(scope="module")
def deployed(
    prefect_server: PrefectServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployed]:
    scratch = tmp_path_factory.mktemp("deployed")
    raw = scratch / "raw"
    shutil.copytree(ROOT / "data" / "partitioned" / "reviews", raw)
    prefect_server.cli("work-pool", "create", POOL, "--type", "process")
    prefect_server.cli("deploy", "--all", "--no-prompt", cwd=ROOT)
    sim_log = open(scratch / "sim.log", "wb")  # noqa: SIM115 -- closed with the simulator
    sim = SimProcess(
        "--api-keys", WORKER_KEY, "--ttft", "0.02", "--tokens-per-second", "4000", stderr=sim_log
    ).start()
    sim_url = sim.base_url
    env = {
        **prefect_server.env,
        "CEREBRAS_BASE_URL": sim_url,
        "CEREBRAS_API_KEY": WORKER_KEY,
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_HEARTBEAT_SECONDS": "5",
    }
    command = [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL]
    command += ["--type", "process", "--install-policy", "never", "--name", "test-worker"]
    with open(scratch / "worker.log", "wb") as log:
        worker = start_process(command, env, log, cwd=scratch)
        try:
            yield Deployed(prefect_server, sim_url, raw, scratch / "out")
        finally:
            stop_process(worker)
            sim.stop()
            sim_log.close()


def test_backfill_of_three_partitions(deployed: Deployed) -> None:
    deployed.sim("reset")
    run = deployed.run(BACKFILL, start="2026-11-20", end="2026-11-22", parallelism=2)
    assert run.state is not None and run.state.is_completed(), run_story(run)
    assert run.name == "reviews_daily-backfill-2026-11-20-to-2026-11-22"
    assert {"backfill", "job:reviews_daily", "model:gpt-oss-120b"} <= set(run.tags)
    stats = deployed.sim()

    # One child flow run per partition, each completed, named and tagged for it.
    children = {c.name: c for c in child_runs(run.id)}
    days = ["2026-11-20", "2026-11-21", "2026-11-22"]
    assert set(children) == {f"reviews_daily-{d}" for d in days}
    for child in children.values():
        assert child.state is not None and child.state.is_completed()
        assert {"backfill", "job:reviews_daily", "model:gpt-oss-120b"} <= set(child.tags)

    # The backfill's table: one row per partition, with what the simulator counted.
    published = artifacts(run.id)
    rows = table(published["backfill-reviews-daily"])
    assert [(r["partition"], r["state"]) for r in rows] == [(d, "Completed") for d in days]
    assert [r["rows_ok"] for r in rows] == [SAMPLE_ROWS[d] for d in days]
    assert sum(r["requests"] for r in rows) == stats["requests"] == 37
    assert sum(r["tokens_in"] for r in rows) == stats["prompt_tokens"]
    assert sum(r["tokens_out"] for r in rows) == stats["completion_tokens"]
    assert all(r["cost_usd"] > 0 and r["latency_p99_s"] is not None for r in rows)
    assert published["backfill-reviews-daily-progress"].data == 100.0
    assert "3 Completed" in str(published["backfill-reviews-daily-report"].data)

    # Each partition's own run: its table, report and finished progress bar.
    for day in days:
        own = artifacts(children[f"reviews_daily-{day}"].id)
        key = f"enrich-reviews-daily-{day}"
        [row] = table(own[key])
        assert (row["partition"], row["rows_ok"], row["rows_failed"]) == (day, SAMPLE_ROWS[day], 0)
        assert own[f"{key}-progress"].data == 100.0
        assert f"# Enrichment: reviews_daily {day}" in str(own[f"{key}-report"].data)
        data = read_dataset(f"{deployed.out}/dt={day}")
        ids = data.column("row_id").to_pylist()
        assert len(ids) == len(set(ids)) == SAMPLE_ROWS[day]


def test_the_schedule_for_a_day_already_done_sends_nothing(deployed: Deployed) -> None:
    deployed.sim("reset")
    run = deployed.run(SCHEDULE, date="2026-11-22")
    assert run.state is not None and run.state.is_completed(), run_story(run)
    assert run.name == "reviews_daily-through-2026-11-22"
    assert deployed.sim()["requests"] == 0
    assert child_runs(run.id) == []
    rows = table(artifacts(run.id)["incremental-reviews-daily"])
    assert [(r["partition"], r["state"]) for r in rows] == [
        ("2026-11-20", "already committed"),
        ("2026-11-21", "already committed"),
        ("2026-11-22", "already committed"),
    ]


def test_a_failed_partition_is_reported_and_a_rerun_picks_up_only_it(deployed: Deployed) -> None:
    late = deployed.raw / "dt=2026-11-23" / "part-0.jsonl"
    good = late.read_bytes()
    late.write_bytes(good + b"{not json\n")
    deployed.sim("reset")
    run = deployed.run(BACKFILL, start="2026-11-21", end="2026-11-23")
    assert run.state is not None and run.state.is_failed()
    rows = {r["partition"]: r for r in table(artifacts(run.id)["backfill-reviews-daily"])}
    assert {d: r["state"] for d, r in rows.items()} == {
        "2026-11-21": "already committed",
        "2026-11-22": "already committed",
        "2026-11-23": "Failed",
    }
    assert "part-0.jsonl" in rows["2026-11-23"]["message"]
    assert deployed.sim()["requests"] == 0

    late.write_bytes(good)
    rerun = deployed.run(BACKFILL, start="2026-11-21", end="2026-11-23")
    assert rerun.state is not None and rerun.state.is_completed(), rerun.state
    assert [c.name for c in child_runs(rerun.id)] == ["reviews_daily-2026-11-23"]
    assert deployed.sim()["requests"] == SAMPLE_ROWS["2026-11-23"]


def test_a_backfill_after_a_config_change_requests_only_changed_rows(deployed: Deployed) -> None:
    # Dropping an output column changes the job (every day is pending again) but no request:
    # each partition is redone from the results it already has, keyed by request hash.
    deployed.sim("reset")
    overrides = [*deployed.overrides, "input.columns=[review_id, rating, text]"]
    run = deployed.run(
        BACKFILL, start="2026-11-20", end="2026-11-23", parallelism=4, overrides=overrides
    )
    assert run.state is not None and run.state.is_completed(), run_story(run)
    rows = table(artifacts(run.id)["backfill-reviews-daily"])
    assert [r["state"] for r in rows] == ["Completed"] * 4
    assert [r["rows_ok"] for r in rows] == list(SAMPLE_ROWS.values())
    assert deployed.sim()["requests"] == 0
    assert "product" not in read_dataset(f"{deployed.out}/dt=2026-11-23").column_names


def test_no_artifact_or_log_shows_the_api_key(deployed: Deployed) -> None:
    published = [str(a.data) + str(a.description) for a in artifacts().values()]
    written = [entry.message for entry in logs()]
    assert len(published) > 10 and len(written) > 10
    assert not [text for text in published + written if WORKER_KEY in text]
