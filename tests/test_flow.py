"""The flows end to end in this process, against a real Prefect server and the simulator.

What the UI shows is asserted through the Prefect API: run names and tags, task runs per
chunk, progress, table and markdown artifacts with the figures the simulator counted.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import fsspec
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from fsspec.implementations.local import LocalFileSystem
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
from prefect.logging.handlers import APILogHandler
from prefect_api import (
    PrefectServer,
    artifacts,
    child_runs,
    flow_run,
    logs,
    run_id,
    table,
    task_runs,
)
from support import ROOT, JobFactory, review_rows, write_jsonl
from typer.testing import CliRunner

from enrich.config import load_job_config
from enrich.output.reader import read_dataset
from enrich.partitions import for_partition, partition_state
from enrich.sim.config import SimConfig
from enrich.sim.harness import ThreadedSimulator
from enrich_flows.cli import app
from enrich_flows.enrich import enrich_dataset
from enrich_flows.incremental import enrich_incremental

pytest_plugins = ["prefect_harness"]
pytestmark = [pytest.mark.prefect, pytest.mark.slow, pytest.mark.usefixtures("in_repo")]

DAILY = "configs/reviews_daily.yaml"
SAMPLE_ROWS = {"2026-11-20": 12, "2026-11-21": 15, "2026-11-22": 10, "2026-11-23": 14}


def input_ids(path: Path) -> list[str]:
    return [orjson.loads(line)["review_id"] for line in path.read_bytes().splitlines() if line]


async def test_sample_job_end_to_end(sim: ThreadedSimulator, tmp_path: Path) -> None:
    out = tmp_path / "reviews"
    state = await enrich_dataset("configs/reviews.yaml", [f"output.path={out}"], return_state=True)
    assert state.is_completed(), state.message
    data = read_dataset(str(out))
    ids = data.column("row_id").to_pylist()
    assert sorted(ids) == sorted(input_ids(ROOT / "data" / "reviews.jsonl"))
    assert len(set(ids)) == len(ids) == 200
    stats = sim.stats
    assert pc.sum(data.column("prompt_tokens")).as_py() == stats.prompt_tokens
    assert pc.sum(data.column("completion_tokens")).as_py() == stats.completion_tokens

    run = flow_run(run_id(state))
    assert run.name == "reviews"
    assert {"job:reviews", "model:gpt-oss-120b"} <= set(run.tags)
    chunks = [t for t in task_runs(run.id) if t.name.startswith("chunk-")]
    # 200 rows, 100 a chunk (the size the sample's limits give): a task run per chunk.
    assert len(chunks) == 2
    assert all(t.state is not None and t.state.is_completed() for t in chunks)

    found = artifacts(run.id)
    assert {"enrich-reviews", "enrich-reviews-report", "enrich-reviews-progress"} <= set(found)
    [row] = table(found["enrich-reviews"])
    assert (row["rows_ok"], row["rows_failed"]) == (200, 0)
    assert (row["tokens_in"], row["tokens_out"]) == (stats.prompt_tokens, stats.completion_tokens)
    assert row["requests"] == stats.requests and row["cost_usd"] > 0
    assert row["rows_per_s"] > 0 and row["latency_p50_s"] is not None
    assert row["latency_p50_s"] <= row["latency_p95_s"] <= row["latency_p99_s"]
    assert found["enrich-reviews-progress"].data == 100.0
    report = str(found["enrich-reviews-report"].data)
    assert "rows_ok | 200" in report and "latency_p99_s" in report
    # The sample is a two-step typed job: typed columns, and the report broken down by step.
    assert data.schema.field("triage_sentiment").type == pa.dictionary(pa.int32(), pa.string())
    assert set(data.column("summary_status").to_pylist()) == {"ok"}
    assert "## By step" in report and "| triage | " in report and "| summary | " in report


async def test_a_budget_reached_fails_the_run_with_forecast_and_spend_in_the_report(
    sim: ThreadedSimulator, tmp_path: Path
) -> None:
    overrides = [f"output.path={tmp_path}/reviews", "budget.max_usd=0.002"]
    state = await enrich_dataset("configs/reviews.yaml", overrides, return_state=True)
    assert state.is_failed()
    assert "budget of $0.002 reached after $0.00" in str(state.message)
    found = artifacts(run_id(state))
    [row] = table(found["enrich-reviews"])
    assert row["budget_usd"] == 0.002 and 0 < row["spent_usd"] <= 0.002
    assert row["forecast_usd"] > row["spent_usd"]
    report = str(found["enrich-reviews-report"].data)
    assert "## Budget" in report and "forecast, worst case" in report
    assert "budget of $0.002 reached" in report


async def test_a_partition_run_is_named_for_it_and_a_rerun_sends_nothing(
    sim: ThreadedSimulator, tmp_path: Path
) -> None:
    overrides = [f"output.path={tmp_path}/daily"]
    state = await enrich_dataset(DAILY, overrides, "2026-11-20", return_state=True)
    assert state.is_completed(), state.message
    run = flow_run(run_id(state))
    assert run.name == "reviews_daily-2026-11-20"
    assert {"job:reviews_daily", "model:gpt-oss-120b"} <= set(run.tags)
    [row] = table(artifacts(run.id)["enrich-reviews-daily-2026-11-20"])
    assert (row["partition"], row["rows_ok"], row["requests"]) == ("2026-11-20", 12, 12)
    assert read_dataset(f"{tmp_path}/daily/dt=2026-11-20").num_rows == 12

    sent = sim.stats.requests
    again = await enrich_dataset(DAILY, overrides, "2026-11-20", return_state=True)
    assert again.is_completed()
    assert sim.stats.requests == sent


async def test_a_prompt_change_makes_a_partition_pending_again(
    sim: ThreadedSimulator, tmp_path: Path
) -> None:
    overrides = [f"output.path={tmp_path}/daily"]
    edited = [*overrides, "prompt.system=Label the review positive, negative or mixed."]
    assert (await enrich_dataset(DAILY, overrides, "2026-11-21", return_state=True)).is_completed()
    assert partition_state(load_job_config(DAILY, overrides), "2026-11-21").committed
    assert not partition_state(load_job_config(DAILY, edited), "2026-11-21").committed

    sim.reset()
    assert (await enrich_dataset(DAILY, edited, "2026-11-21", return_state=True)).is_completed()
    assert sim.stats.requests == 15  # every request changed with the system prompt
    assert partition_state(load_job_config(DAILY, edited), "2026-11-21").committed


async def test_incremental_catches_up_missed_days_and_a_rerun_sends_nothing(
    sim: ThreadedSimulator, tmp_path: Path
) -> None:
    overrides = [f"output.path={tmp_path}/daily"]
    first = await enrich_incremental(
        DAILY, date="2026-11-21", overrides=overrides, return_state=True
    )
    assert first.is_completed(), first.message
    assert sim.stats.requests == SAMPLE_ROWS["2026-11-20"] + SAMPLE_ROWS["2026-11-21"]
    assert flow_run(run_id(first)).name == "reviews_daily-through-2026-11-21"

    # Two days later (the 22nd's run was missed): both new days, nothing old.
    sim.reset()
    later = await enrich_incremental(
        DAILY, date="2026-11-23", overrides=overrides, return_state=True
    )
    assert later.is_completed(), later.message
    assert sim.stats.requests == SAMPLE_ROWS["2026-11-22"] + SAMPLE_ROWS["2026-11-23"]
    children = {r.name: r for r in child_runs(run_id(later))}
    assert set(children) == {"reviews_daily-2026-11-22", "reviews_daily-2026-11-23"}
    rows = table(artifacts(run_id(later))["incremental-reviews-daily"])
    assert [(r["partition"], r["state"]) for r in rows] == [
        ("2026-11-20", "already committed"),
        ("2026-11-21", "already committed"),
        ("2026-11-22", "Completed"),
        ("2026-11-23", "Completed"),
    ]
    assert [r["rows_ok"] for r in rows[2:]] == [10, 14]

    # The same slot again: nothing to send, no partition run.
    sim.reset()
    rerun = await enrich_incremental(
        DAILY, date="2026-11-23", overrides=overrides, return_state=True
    )
    assert rerun.is_completed()
    assert sim.stats.requests == 0
    assert child_runs(run_id(rerun)) == []


async def test_a_failed_partition_is_reported_and_the_rerun_does_only_it(
    sim: ThreadedSimulator, tmp_path: Path
) -> None:
    raw = tmp_path / "raw"
    shutil.copytree(ROOT / "data" / "partitioned" / "reviews", raw)
    broken = raw / "dt=2026-11-21" / "part-0.jsonl"
    good = broken.read_bytes()
    broken.write_bytes(good + b'{"review_id": "r-bad", "rating": \n')
    overrides = [f"input.path={raw}/dt={{date}}/*.jsonl", f"output.path={tmp_path}/out"]

    state = await enrich_incremental(
        DAILY, date="2026-11-22", overrides=overrides, return_state=True
    )
    assert state.is_failed()
    rows = {r["partition"]: r for r in table(artifacts(run_id(state))["incremental-reviews-daily"])}
    assert {d: r["state"] for d, r in rows.items()} == {
        "2026-11-20": "Completed",
        "2026-11-21": "Failed",
        "2026-11-22": "Completed",
    }
    assert "part-0.jsonl" in rows["2026-11-21"]["message"]
    report = str(artifacts(run_id(state))["incremental-reviews-daily-report"].data)
    assert "2026-11-21" in report and "Failed" in report

    broken.write_bytes(good)
    sim.reset()
    fixed = await enrich_incremental(
        DAILY, date="2026-11-22", overrides=overrides, return_state=True
    )
    assert fixed.is_completed(), fixed.message
    assert sim.stats.requests == SAMPLE_ROWS["2026-11-21"]
    assert [r.name for r in child_runs(run_id(fixed))] == ["reviews_daily-2026-11-21"]


async def test_the_api_key_from_a_secret_block_never_shows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "csk-block-only-7f3a9c2e51d84b6a"
    with ThreadedSimulator(SimConfig(api_keys=frozenset({key}))) as sim:
        await Secret(value=key).asave("test-cerebras-key", overwrite=True)
        monkeypatch.delenv("CEREBRAS_API_KEY", raising=False)  # only the block has it
        monkeypatch.setenv("CEREBRAS_BASE_URL", sim.base_url)
        # The block is named by the job file: a run's overrides may not name one.
        config = tmp_path / "reviews_daily.yaml"
        config.write_text(
            (ROOT / DAILY).read_text() + "\napi:\n  secret_block: test-cerebras-key\n"
        )
        overrides = [f"output.path={tmp_path}/daily"]
        state = await enrich_dataset(str(config), overrides, "2026-11-22", return_state=True)
        assert state.is_completed(), state.message
        assert sim.stats.completed == SAMPLE_ROWS["2026-11-22"]
    cfg = for_partition(load_job_config(config, overrides), "2026-11-22")
    data = read_dataset(cfg.output.path)
    assert set(data.column("status").to_pylist()) == {"ok"}

    await APILogHandler.aflush()
    run = run_id(state)
    published = [str(a.data) + str(a.description) for a in artifacts(run).values()]
    written = [entry.message for entry in logs(run)]
    assert published and written
    assert not [text for text in published + written if key in text]


async def test_errors_by_kind_with_a_sample_in_the_report(
    sim: ThreadedSimulator, tmp_path: Path
) -> None:
    # A completion budget beyond the model's context: every request is a 400, every row an error.
    overrides = [f"output.path={tmp_path}/daily", "params.max_completion_tokens=200000"]
    state = await enrich_dataset(DAILY, overrides, "2026-11-22", return_state=True)
    assert state.is_completed(), state.message  # failed rows are rows, the dataset commits
    found = artifacts(run_id(state))
    [row] = table(found["enrich-reviews-daily-2026-11-22"])
    assert (row["rows_ok"], row["rows_failed"]) == (0, SAMPLE_ROWS["2026-11-22"])
    kind = row["errors"].split(":")[0]
    assert row["errors"] == f"{kind}: {SAMPLE_ROWS['2026-11-22']}"
    report = str(found["enrich-reviews-daily-2026-11-22-report"].data)
    assert "## Errors" in report
    [line] = [x for x in report.splitlines() if x.startswith(f"| {kind} |")]
    assert line.count("|") == 4 and len(line) > len(f"| {kind} | 10 |  |")  # one sample message


def test_enrich_run_through_the_flow_reads_the_input_no_more_than_a_direct_run(
    sim: ThreadedSimulator,
    make_job: JobFactory,
    tmp_path: Path,
    counted_reads: Counter[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # `enrich run` prepares the job (discovering and counting the input) to fail before Prefect
    # starts; the flow run must use that job, not discover and count the input a second time.
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    source = write_jsonl(tmp_path / "in" / "reviews.jsonl", review_rows(20))
    config = str(make_job(input_path=f"counted://{source}"))
    reads = {}
    for way, flags in [("direct", ["--direct"]), ("flow", [])]:
        counted_reads.clear()
        args = ["run", config, "--set", f"output.path={tmp_path / way}", *flags]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        assert read_dataset(str(tmp_path / way)).num_rows == 20
        reads[way] = counted_reads[str(source)]
    assert reads["direct"] > 0
    assert reads["flow"] == reads["direct"]


def test_enrich_run_goes_to_the_configured_server_and_retries_errors_there(
    sim: ThreadedSimulator, make_job: JobFactory, prefect_server: PrefectServer
) -> None:
    # With PREFECT_API_URL set, plain `enrich run` is a flow run on that server (its UI shows
    # it); `--retry-errors` goes through the flow too.
    sim.set_faults(fail_400=1.0)
    execution = {"rows_per_chunk": 5, "max_error_share": 1.0}
    config = str(make_job(review_rows(10), name="to-the-server", execution=execution))
    env = {**os.environ, **prefect_server.env}
    first = subprocess.run(
        [sys.executable, "-m", "enrich_flows.cli", "run", config],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert first.returncode == 0, first.stderr
    assert "no Prefect API configured" not in first.stderr
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=["to-the-server"]))
        )
    assert [r.state_name for r in runs] == ["Completed"]
    assert len(task_runs(runs[0].id)) == 2  # one task run per chunk
    assert sim.stats.requests == 10

    sim.set_faults(fail_400=0.0)
    sim.reset()
    retried = CliRunner().invoke(app, ["run", config, "--retry-errors"])
    assert retried.exit_code == 0, retried.output
    assert sim.stats.requests == 10
    out = read_dataset(load_job_config(config).output.path)
    assert set(out.column("status").to_pylist()) == {"ok"}


class FlakyPartsFileSystem(LocalFileSystem):
    """The local filesystem as ``flaky://``, refusing the first write of each part."""

    protocol = ("flaky",)
    refused: ClassVar[set[str]] = set()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**kwargs, "auto_mkdir": True})

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, str) and path.startswith("flaky://"):
            path = path.removeprefix("flaky://")
        return super()._strip_protocol(path)

    def unstrip_protocol(self, name: str) -> str:
        return f"flaky://{self._strip_protocol(name)}"

    def pipe_file(self, path: Any, value: Any, mode: str = "overwrite", **kwargs: Any) -> None:
        key = self._strip_protocol(path)
        if "/parts/" in key and key not in self.refused:
            self.refused.add(key)
            raise OSError(f"{key}: service unavailable")
        super().pipe_file(path, value, mode=mode, **kwargs)


async def test_a_chunk_that_met_a_storage_fault_is_retried_and_pays_nothing_again(
    sim: ThreadedSimulator, make_job: JobFactory, tmp_path: Path
) -> None:
    fsspec.register_implementation("flaky", FlakyPartsFileSystem, clobber=True)
    FlakyPartsFileSystem.refused.clear()
    config = make_job(
        review_rows(6), output_path=f"flaky://{tmp_path}/out", execution={"rows_per_chunk": 6}
    )
    state = await enrich_dataset(str(config), return_state=True)
    assert state.is_completed(), state.message
    [chunk] = task_runs(run_id(state))
    assert chunk.run_count == 2  # the storage fault, then the retry that committed
    assert len(FlakyPartsFileSystem.refused) == 1
    assert sim.stats.requests == 6  # the retry took every answer from the journal
    assert read_dataset(f"{tmp_path}/out").num_rows == 6
