"""Crash safety: SIGKILL ``enrich run`` at many points, resume each time, compare the output.

Each attempt is ``enrich run CONFIG --direct``: the engine without Prefect. The Prefect flow
pays ~12 s of ephemeral-server start-up per process and this test starts seven processes per
backend; the flow runs the same ``run_job``, so what holds here holds for it.

The bound on what a crash may cost: a kill loses the requests in flight (at most
``max_concurrency``) and the results not yet journaled (at most one flush window per chunk in
flight, ``journal_rows`` each, plus the batch being written). Everything else was journaled or
committed and is not asked again.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import API_KEY, Location, jsonl_bytes, make_location, prepare_job, review_rows, until

from enrich.errors import StorageError
from enrich.lease import read_lease
from enrich.output.reader import output_status, read_dataset
from enrich.run import run_job
from enrich.sim.harness import ThreadedSimulator
from enrich.sim.process import SimProcess

ROWS = 2000
KILL_AT = (0.1, 0.25, 0.4, 0.55, 0.7, 0.85)  # share of ROWS served when each attempt dies
EXECUTION = {
    "rows_per_chunk": 250,
    "chunks_in_flight": 2,
    "max_concurrency": 16,
    "journal_interval_s": 0.25,
    "journal_rows": 25,
    "retry": {"attempts": 3, "backoff_initial": 0.01, "backoff_max": 0.05},
}
COMPARED = ("row_id", "completion", "finish_reason", "status")


@pytest.fixture
def slow_sim() -> Iterator[SimProcess]:
    with SimProcess("--ttft", "0.05", "--tokens-per-second", "1000") as server:
        yield server


def write_config(path: Path, location: Location, source: str) -> Path:
    options = location.storage_options
    config: dict[str, Any] = {
        "name": "crash",
        "input": {"path": source, "id_column": "review_id", "storage_options": options},
        "prompt": {"system": "Classify the review.", "template": "Rating {rating}: {text}"},
        "model": "gpt-oss-120b",
        # Above the simulator's longest answer (48 tokens): every row finishes ("stop").
        "params": {"max_completion_tokens": 64, "temperature": 0},
        "output": {"path": location.url("out"), "storage_options": options},
        "execution": EXECUTION,
    }
    path.write_text(yaml.safe_dump(config))
    return path


def start_run(config: Path, base_url: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CEREBRAS_BASE_URL": base_url, "CEREBRAS_API_KEY": API_KEY}
    command = [sys.executable, "-m", "enrich.cli", "run", str(config), "--direct"]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def kill_when(process: subprocess.Popen[bytes], sim: SimProcess, served: int) -> int:
    """SIGKILL ``process`` once the simulator has served ``served`` requests in all."""

    def reached() -> bool:
        assert process.poll() is None, process.communicate()[1].decode()[-2000:]
        return sim.stats().requests >= served

    until(reached, message="the run made no progress")
    process.send_signal(signal.SIGKILL)
    process.wait()
    return sim.stats().requests


def uninterrupted(
    config: Path, sim: ThreadedSimulator, tmp_path: Path
) -> dict[str, tuple[Any, ...]]:
    """The reference: the same job run once, start to finish, on local disk."""
    job = prepare_job(
        config,
        {
            "output.path": str(tmp_path / "reference"),
            "output.storage_options": {},
            "execution.journal_interval_s": 5.0,
        },
    )
    assert asyncio.run(run_job(job)).complete
    return by_row(read_dataset(job.store.url).to_pylist())


def by_row(rows: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    return {r["row_id"]: tuple(r[c] for c in COMPARED) for r in rows}


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["file", "s3"])
def test_killed_runs_resume_to_exactly_the_uninterrupted_output(
    backend: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    sim: ThreadedSimulator,
    slow_sim: SimProcess,
) -> None:
    location = make_location(backend, request, tmp_path)
    rows = review_rows(ROWS)
    source = location.put("in/reviews.jsonl", jsonl_bytes(rows))
    config = write_config(tmp_path / "crash.yaml", location, source)
    reference = uninterrupted(config, sim, tmp_path)
    output = location.url("out")

    served_at_kill = []
    for share in KILL_AT:
        process = start_run(config, slow_sim.base_url)
        served_at_kill.append(kill_when(process, slow_sim, int(share * ROWS)))
        # Killed mid-run: nothing is committed, and the dead run's lease is left behind.
        with pytest.raises(StorageError, match="no committed dataset"):
            read_dataset(output, location.storage_options)
        assert not output_status(output, location.storage_options).complete

    final = start_run(config, slow_sim.base_url)
    _, stderr = final.communicate(timeout=600)  # bounds a hang only
    assert final.returncode == 0, stderr.decode()[-2000:]
    served = slow_sim.stats().requests

    table = read_dataset(output, location.storage_options)
    got = table.to_pylist()
    ids = [r["row_id"] for r in got]
    assert len(ids) == len(set(ids)) == ROWS  # every row exactly once
    assert by_row(got) == reference
    assert read_lease(location.store("out")) is None

    window = EXECUTION["chunks_in_flight"] * EXECUTION["journal_rows"]  # type: ignore[operator]
    lost_per_kill = EXECUTION["max_concurrency"] + window  # type: ignore[operator]
    overhead = (served - ROWS) / ROWS
    print(
        f"\n{backend}: {served} requests served for {ROWS} rows over {len(KILL_AT)} kills "
        f"(overhead {overhead:.2%}, bound {len(KILL_AT) * lost_per_kill}); "
        f"served at each kill: {served_at_kill}"
    )
    assert served <= ROWS + len(KILL_AT) * lost_per_kill
