"""One side of the CPU-per-row comparison, alone in a process, for a profiler to watch.

Starts an instant simulator as a child process (its CPU is not counted), then runs either the
pipeline (``run_job`` on a generated job) or the bare SDK loop over the same requests, and
prints the CPU seconds of this process per 1,000 rows. Profile it with py-spy:

    .venv/bin/py-spy record --gil -r 500 -f raw -o pipeline.txt -- \\
        .venv/bin/python benchmarks/hot_path.py --side pipeline --rows 6000
    .venv/bin/python benchmarks/summarize_profile.py pipeline.txt
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from enrich.bench.sides import run_bare, run_pipeline
from enrich.bench.workload import bare_messages, write_input, write_job
from enrich.sim.process import SimProcess


async def main(side: str, rows: int, concurrency: int, loop: str) -> None:
    with tempfile.TemporaryDirectory() as tmp, SimProcess() as sim:
        work = Path(tmp)
        source = write_input(work / "input.jsonl", rows)
        if side == "pipeline":
            job = write_job(work / "job", input_path=source, base_url=sim.base_url)
            result = await run_pipeline(job)
        else:
            result = await run_bare(sim.base_url, bare_messages(rows), concurrency=concurrency)
    print(
        f"{side} on {loop}: {result.rows} rows, {result.rows_per_s:.0f} rows/s, "
        f"{result.cpu_s_per_1000_rows:.3f} CPU s per 1,000 rows"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", choices=["pipeline", "bare"], default="pipeline")
    parser.add_argument("--rows", type=int, default=6000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--uvloop", action="store_true", help="Run on uvloop (if installed).")
    args = parser.parse_args()
    started = time.perf_counter()
    if args.uvloop:
        import uvloop

        uvloop.run(main(args.side, args.rows, args.concurrency, "uvloop"))
    else:
        asyncio.run(main(args.side, args.rows, args.concurrency, "asyncio"))
