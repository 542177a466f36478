"""Scenario e, in its own process: the same job through the Prefect flow and through the engine.

``python -m enrich_flows.flowcost --rows 10000 --modes cpu,latency --chunks auto,50,1000``
starts a ``prefect server`` (SQLite, in a temporary ``PREFECT_HOME``) as a child process and
points this process at it, then for each mode starts a simulator (``cpu``: instant answers, so
the client's CPU is the bottleneck; ``latency``: ``--latency`` seconds a request, as in
scenario a) and, for each chunk size (``auto`` is the size the job's config resolves to when
it sets none), runs the engine directly (``load_job_config`` + ``Job.prepare`` + ``run_job``,
what ``enrich run --direct`` does) and the flow (``await enrich_dataset(config)``: a flow run
with one task run per chunk, logs and artifacts), side by side, after one small warm-up job
each way. Each run writes to a fresh output location.

Measured per run: wall seconds until the run returns; CPU seconds of this process (every
thread, up to the moment Prefect's log and event queues are drained to the server); and CPU
seconds of the server process and its descendants, from before the run until the server has
gone quiet after it (so the work it does on the events a run sent counts, even when it does it
after the run returned). Server CPU is read from ``/proc/<pid>/stat`` (utime + stime of the
server and every descendant): Linux only. The simulator's CPU is counted on neither side.

It prints one JSON line: every run, and per mode and chunk size the medians and the overheads
``flow / direct - 1`` of wall time and of CPU, where the flow's CPU overhead is its extra CPU in
both processes (client and server) over the engine's own CPU.

Prefect is imported only here, after the server is up, and only in this process: the engine
package does not depend on it, and the parent benchmark process (``enrich bench``, scenario e
in :mod:`enrich.bench.scenarios`) never loads it; it starts this module by name.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from enrich.bench.measure import median
from enrich.bench.processes import (
    free_port,
    prefect_server_command,
    tree_cpu_seconds,
    wait_until_healthy,
)
from enrich.bench.workload import API_KEY, write_input, write_job
from enrich.config import load_job_config
from enrich.sim.process import SimProcess, stop_process

SERVER_START_TIMEOUT = 120.0
RUN_TIMEOUT = 900.0  # one run; a hung flow run must not hang the benchmark
#: The server is quiet once it uses less than this share of a core over QUIET_WINDOW_S.
QUIET_SHARE = 0.05
QUIET_WINDOW_S = 1.0
SETTLE_TIMEOUT_S = 180.0
#: Simulator latency per mode (``latency`` takes ``--latency``).
MODES = ("cpu", "latency")


async def settle(root: int) -> float:
    """Wait until the server goes quiet; its tree's CPU seconds then."""
    deadline = time.perf_counter() + SETTLE_TIMEOUT_S
    last = tree_cpu_seconds(root)
    while time.perf_counter() < deadline:
        await asyncio.sleep(QUIET_WINDOW_S)
        now = tree_cpu_seconds(root)
        if now - last < QUIET_SHARE * QUIET_WINDOW_S:
            return now
        last = now
    return last


def start_prefect_server(home: Path) -> tuple[subprocess.Popen[bytes], str, float]:
    """``prefect server start`` on a free port; returns the process, API URL, start-up seconds."""
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }
    started = time.perf_counter()
    proc = subprocess.Popen(
        prefect_server_command(port), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    api = f"http://127.0.0.1:{port}/api"
    try:
        wait_until_healthy(proc, api, SERVER_START_TIMEOUT)
    except RuntimeError:
        proc.terminate()
        raise
    return proc, api, time.perf_counter() - started


async def _direct(config: Path) -> None:
    from enrich.job import Job
    from enrich.run import run_job

    job = Job.prepare(load_job_config(config), where=str(config))
    summary = await run_job(job, api_key=API_KEY)
    if not summary.complete:
        raise RuntimeError(f"direct run incomplete: {summary.message}")


async def _flow(config: Path) -> None:
    from enrich_flows.enrich import enrich_dataset

    await enrich_dataset(str(config))


async def _drain_prefect() -> None:
    """Send Prefect's buffered logs and events now, so this run's CPU pays for them (the
    services start again on their next use)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for service in (APILogWorker, EventsWorker):
        await service.drain_all(timeout=30, at_exit=False)  # type: ignore[misc]


async def _timed(kind: str, config: Path, server: int) -> dict[str, float]:
    server_cpu = tree_cpu_seconds(server)
    cpu, started = time.process_time(), time.perf_counter()
    await asyncio.wait_for(_flow(config) if kind == "flow" else _direct(config), RUN_TIMEOUT)
    wall = time.perf_counter() - started
    if kind == "flow":
        await _drain_prefect()
    client = time.process_time() - cpu
    server_used = await settle(server) - server_cpu
    return {
        "wall_s": round(wall, 3),
        "client_cpu_s": round(client, 3),
        "server_cpu_s": round(server_used, 3),
        "total_cpu_s": round(client + server_used, 3),
    }


def _medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: round(median([r[k] for r in runs]), 3) for k in runs[0]}


def compare(direct: list[dict[str, float]], flow: list[dict[str, float]]) -> dict[str, Any]:
    """Medians of each side and the flow's overheads over the engine alone."""
    d, f = _medians(direct), _medians(flow)
    return {
        "direct": d,
        "flow": f,
        "wall_overhead": round(f["wall_s"] / d["wall_s"] - 1, 4),
        "client_cpu_overhead": round(f["client_cpu_s"] / d["client_cpu_s"] - 1, 4),
        # What the flow adds in both processes, as a share of what the engine needs.
        "cpu_overhead": round((f["total_cpu_s"] - d["total_cpu_s"]) / d["client_cpu_s"], 4),
        "direct_runs": direct,
        "flow_runs": flow,
    }


def resolved_chunk_rows(config: Path) -> int:
    """The rows per chunk a job config resolves to (its own, or the automatic size)."""
    from enrich.planning import chunk_size

    return chunk_size(load_job_config(config)).rows


async def measure_mode(
    work: Path,
    base_url: str,
    *,
    rows: int,
    rounds: int,
    concurrency: int,
    chunks: list[str],
    server: int,
) -> dict[str, Any]:
    """Every chunk size of one mode, direct and flow side by side, round after round."""
    source = write_input(work / "input.jsonl", rows)
    warm_source = write_input(work / "warm.jsonl", 200, offset=rows)
    for kind in ("direct", "flow"):
        warm = write_job(work / f"warm-{kind}", input_path=warm_source, base_url=base_url)
        await _timed(kind, warm, server)
    runs: dict[str, dict[str, list[dict[str, float]]]] = {
        c: {"direct": [], "flow": []} for c in chunks
    }
    sizes: dict[str, int] = {}
    for r in range(rounds):
        for size in chunks:
            for kind in ("direct", "flow"):
                config = write_job(
                    work / f"{size}-{kind}{r}",
                    input_path=source,
                    base_url=base_url,
                    name=f"bench-{kind}-{size}-{r}",
                    concurrency=concurrency,
                    rows_per_chunk=None if size == "auto" else int(size),
                )
                sizes[size] = resolved_chunk_rows(config)
                runs[size][kind].append(await _timed(kind, config, server))
                last = runs[size][kind][-1]
                print(
                    f"e {work.name} chunks {size} round {r + 1}: {kind} {last['wall_s']:.2f} s, "
                    f"CPU {last['client_cpu_s']:.2f} + server {last['server_cpu_s']:.2f} s",
                    file=sys.stderr,
                )
    return {
        size: {
            "rows_per_chunk": sizes[size],
            "chunks": -(-rows // sizes[size]),
            **compare(runs[size]["direct"], runs[size]["flow"]),
        }
        for size in chunks
    }


async def measure(work: Path, args: argparse.Namespace, server: int) -> dict[str, Any]:
    idle_before = tree_cpu_seconds(server)
    await asyncio.sleep(5.0)
    idle = (tree_cpu_seconds(server) - idle_before) / 5.0
    modes: dict[str, Any] = {}
    for mode in args.modes.split(","):
        latency = 0.0 if mode == "cpu" else args.latency
        with SimProcess("--ttft", str(latency)) as sim:
            sizes = await measure_mode(
                work / mode,
                sim.base_url,
                rows=args.rows,
                rounds=args.rounds,
                concurrency=args.concurrency,
                chunks=args.chunks.split(","),
                server=server,
            )
        modes[mode] = {"latency_s": latency, "sizes": sizes}
    return {"modes": modes, "server_idle_cpu_s_per_s": round(idle, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--latency", type=float, default=0.3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--modes", default=",".join(MODES), help="cpu, latency or both")
    parser.add_argument("--chunks", default="auto,50,1000", help="rows per chunk, or auto")
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
            result = asyncio.run(measure(work, args, server.pid))
        finally:
            stop_process(server, grace=20)
    result["server_startup_s"] = round(startup, 2)
    result["setup"] = {
        "rows": args.rows,
        "rounds": args.rounds,
        "concurrency": args.concurrency,
        "latency_s": args.latency,
        "modes": args.modes.split(","),
        "chunks": args.chunks.split(","),
        "measured": (
            "wall time of each run; CPU of this process until Prefect's queues are drained; "
            "CPU of the server's process tree until it is quiet (/proc); the server was "
            "started and warmed first"
        ),
    }
    print(orjson.dumps(result).decode(), flush=True)


if __name__ == "__main__":
    main()
