"""Scenario e, in its own process: the same job through the Prefect flow and through the engine.

``python -m enrich_flows.flowcost --rows 10000 --rounds 1`` starts a simulator (300 ms a
request by default, as in scenario a) and a ``prefect server`` (SQLite, in a temporary
``PREFECT_HOME``) as child processes, points this process at that server, runs one small
warm-up job each way, then alternates: the engine directly (``load_job_config`` +
``Job.prepare`` + ``run_job``, what ``enrich run --direct`` does) and the flow (``await
enrich_dataset(config)``, which does the same inside a flow run with one task run per chunk,
logs and artifacts). Each run writes to a fresh output location. It prints one JSON line: wall
seconds of each run (server start-up excluded: the server is up and warm before the first
measured run), CPU seconds of this process, medians and the overhead ``flow / direct - 1``.

Prefect is imported only here, after the server is up, and only in this process: the engine
package does not depend on it, and the parent benchmark process (``enrich bench``, scenario e
in :mod:`enrich.bench.scenarios`) never loads it; it starts this module by name.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson

from enrich.bench.measure import median
from enrich.bench.workload import API_KEY, write_input, write_job
from enrich.sim.process import SimProcess, stop_process

SERVER_START_TIMEOUT = 120.0
RUN_TIMEOUT = 900.0  # one run; a hung flow run must not hang the benchmark


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_prefect_server(home: Path) -> tuple[subprocess.Popen[bytes], str, float]:
    """``prefect server start`` on a free port; returns the process, API URL, start-up seconds."""
    port = _free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }
    started = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            f"{port}",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    api = f"http://127.0.0.1:{port}/api"
    while time.perf_counter() - started < SERVER_START_TIMEOUT:
        if proc.poll() is not None:
            raise RuntimeError(f"prefect server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{api}/health", timeout=2) as response:
                if response.status == 200:
                    return proc, api, time.perf_counter() - started
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise RuntimeError("prefect server did not become healthy in time")


async def _direct(config: Path) -> None:
    from enrich.config import load_job_config
    from enrich.job import Job
    from enrich.run import run_job

    job = Job.prepare(load_job_config(config), where=str(config))
    summary = await run_job(job, api_key=API_KEY)
    if not summary.complete:
        raise RuntimeError(f"direct run incomplete: {summary.message}")


async def _flow(config: Path) -> None:
    from enrich_flows.enrich import enrich_dataset

    await enrich_dataset(str(config))


async def _timed(kind: str, config: Path) -> dict[str, float]:
    cpu, started = time.process_time(), time.perf_counter()
    await asyncio.wait_for(_flow(config) if kind == "flow" else _direct(config), RUN_TIMEOUT)
    return {
        "wall_s": round(time.perf_counter() - started, 3),
        "cpu_s": round(time.process_time() - cpu, 3),
    }


async def measure(work: Path, base_url: str, rows: int, rounds: int, concurrency: int) -> Any:
    source = write_input(work / "input.jsonl", rows)
    warm_source = write_input(work / "warm.jsonl", 200, offset=rows)
    runs: dict[str, list[dict[str, float]]] = {"direct": [], "flow": []}
    for kind in ("direct", "flow"):
        warm = write_job(work / f"warm-{kind}", input_path=warm_source, base_url=base_url)
        await _timed(kind, warm)
    for r in range(rounds):
        for kind in ("direct", "flow"):
            config = write_job(
                work / f"{kind}{r}",
                input_path=source,
                base_url=base_url,
                name=f"bench-{kind}-{r}",
                concurrency=concurrency,
            )
            runs[kind].append(await _timed(kind, config))
            print(f"e round {r + 1}: {kind} {runs[kind][-1]['wall_s']:.2f} s", file=sys.stderr)
    flow = median([x["wall_s"] for x in runs["flow"]])
    direct = median([x["wall_s"] for x in runs["direct"]])
    return {
        "flow_s": flow,
        "direct_s": direct,
        "overhead": round(flow / direct - 1, 4),
        "flow_cpu_s": median([x["cpu_s"] for x in runs["flow"]]),
        "direct_cpu_s": median([x["cpu_s"] for x in runs["direct"]]),
        "flow_runs": runs["flow"],
        "direct_runs": runs["direct"],
    }


def _drain_prefect() -> None:
    """Send Prefect's buffered logs and events while the server is up (not at exit, to a
    stopped server, retrying for a minute)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for service in (APILogWorker, EventsWorker):
        service.drain_all(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--latency", type=float, default=0.3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="enrich-flowcost-") as tmp:
        work = args.work or Path(tmp)
        home = Path(tmp) / "prefect-home"
        home.mkdir()
        server, api, startup = start_prefect_server(home)
        try:
            os.environ["PREFECT_API_URL"] = api
            os.environ["PREFECT_HOME"] = str(home)
            os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
            os.environ["CEREBRAS_API_KEY"] = API_KEY
            with SimProcess("--ttft", str(args.latency)) as sim:
                result = asyncio.run(
                    measure(work, sim.base_url, args.rows, args.rounds, args.concurrency)
                )
            _drain_prefect()
        finally:
            stop_process(server, grace=20)
    result["server_startup_s"] = round(startup, 2)
    result["setup"] = {
        "rows": args.rows,
        "rounds": args.rounds,
        "concurrency": args.concurrency,
        "latency_s": args.latency,
        "chunks": -(-args.rows // 1000),
        "measured": "wall time of each run; the Prefect server was started and warmed first",
    }
    print(orjson.dumps(result).decode(), flush=True)


if __name__ == "__main__":
    main()
