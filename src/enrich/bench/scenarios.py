"""The benchmark scenarios: each runs the pipeline and a bare SDK loop against the simulator.

* a. latency-bound: fixed latency, fixed concurrency; rows/s against the bare loop and the
  ideal ``concurrency / latency``.
* b, c. quota-bound, known and unknown limits: see :mod:`enrich.bench.quota`.
* f. a noisy server (random 429s and 5xx on top of a quota): see :mod:`enrich.bench.quota`.
* d. CPU per row: an instant simulator; CPU seconds of this process per 1,000 rows.
* e. Prefect overhead: the same job through the flow and through the engine directly, in a
  child process (``enrich_flows.flowcost``, in the flows layer), so this process never imports
  Prefect; CPU-bound and latency-bound, at the automatic chunk size and at explicit ones, with
  the Prefect server's CPU counted.

Sides alternate round by round (pipeline, bare, pipeline, bare...) so that drift of a noisy
machine falls on both; figures are medians over rounds and targets compare medians.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

from enrich.bench.measure import median
from enrich.bench.outcome import FULL, QUICK, Log, Outcome, Sizes, pct, side_runs
from enrich.bench.quota import quota_known, quota_noisy, quota_unknown
from enrich.bench.sides import SideRun, run_bare, run_pipeline
from enrich.bench.workload import bare_messages, write_input, write_job
from enrich.sim.process import SimProcess

#: Scenario e's module: it runs the flow, so it lives in the flows layer, and the engine starts
#: it by name in a child process (a name, not an import: the engine never loads Prefect).
FLOW_COST_MODULE = "enrich_flows.flowcost"

__all__ = ["FULL", "QUICK", "SCENARIOS", "Outcome", "Sizes", "prefect_overhead", "run_scenarios"]


# -- a. latency-bound ---------------------------------------------------------------------------


async def latency_bound(sizes: Sizes, work: Path, log: Log) -> Outcome:
    rows, conc, latency = sizes.latency_rows, sizes.concurrency, sizes.latency_s
    ideal = conc / latency
    source = write_input(work / "a" / "input.jsonl", rows)
    messages = bare_messages(rows)
    pipeline: list[SideRun] = []
    bare: list[SideRun] = []
    with SimProcess("--ttft", str(latency)) as sim:
        for r in range(sizes.latency_rounds):
            job = write_job(
                work / "a" / f"round{r}", input_path=source, base_url=sim.base_url, concurrency=conc
            )
            pipeline.append(await run_pipeline(job))
            log(f"a round {r + 1}: pipeline {pipeline[-1].rows_per_s:.1f} rows/s")
            bare.append(await run_bare(sim.base_url, messages, concurrency=conc))
            log(f"a round {r + 1}: bare     {bare[-1].rows_per_s:.1f} rows/s")
    p, b = median([x.rows_per_s for x in pipeline]), median([x.rows_per_s for x in bare])
    ratio = p / b if b else 0.0
    return Outcome(
        key="a",
        title="latency-bound",
        setup={"rows": rows, "concurrency": conc, "latency_s": latency, "rounds": len(pipeline)},
        figures={
            "pipeline_rows_per_s": round(p, 2),
            "bare_rows_per_s": round(b, 2),
            "ideal_rows_per_s": round(ideal, 2),
            "pipeline_vs_bare": round(ratio, 4),
            "pipeline_vs_ideal": round(p / ideal, 4),
            "bare_vs_ideal": round(b / ideal, 4),
            "pipeline_runs": side_runs(pipeline),
            "bare_runs": side_runs(bare),
        },
        measure="rows/s",
        pipeline=f"{p:.1f}",
        baseline=f"{b:.1f}",
        reference=f"ideal {ideal:.1f}",
        target=">= 0.9 x bare",
        reached=f"{ratio:.3f} x bare ({p / ideal:.3f} x ideal)",
        met=ratio >= 0.9,
    )


# -- d. CPU per row -----------------------------------------------------------------------------


async def cpu_per_row(sizes: Sizes, work: Path, log: Log) -> Outcome:
    rows, conc = sizes.cpu_rows, sizes.concurrency
    source = write_input(work / "d" / "input.jsonl", rows)
    messages = bare_messages(rows)
    pipeline: list[SideRun] = []
    bare: list[SideRun] = []
    sim_cpu: dict[str, list[float]] = {"pipeline": [], "bare": []}
    with SimProcess() as sim:
        # One small warm-up of each side: imports, first connections, allocator.
        warm = write_job(work / "d" / "warm", input_path=source, base_url=sim.base_url)
        await run_pipeline(warm, stop_after=2.0)
        await run_bare(sim.base_url, messages[:500], concurrency=conc)
        for r in range(sizes.cpu_rounds):
            job = write_job(
                work / "d" / f"round{r}", input_path=source, base_url=sim.base_url, concurrency=conc
            )
            before = sim.cpu_seconds()
            pipeline.append(await run_pipeline(job))
            sim_cpu["pipeline"].append(1000 * (sim.cpu_seconds() - before) / rows)
            before = sim.cpu_seconds()
            bare.append(await run_bare(sim.base_url, messages, concurrency=conc))
            sim_cpu["bare"].append(1000 * (sim.cpu_seconds() - before) / rows)
            log(
                f"d round {r + 1}: pipeline {pipeline[-1].cpu_s_per_1000_rows:.3f}, "
                f"bare {bare[-1].cpu_s_per_1000_rows:.3f} CPU s per 1,000 rows"
            )
    p = median([x.cpu_s_per_1000_rows for x in pipeline])
    b = median([x.cpu_s_per_1000_rows for x in bare])
    ratio = p / b if b else 0.0
    return Outcome(
        key="d",
        title="CPU per row",
        setup={"rows": rows, "concurrency": conc, "latency_s": 0.0, "rounds": len(pipeline)},
        figures={
            "pipeline_cpu_s_per_1000_rows": round(p, 4),
            "bare_cpu_s_per_1000_rows": round(b, 4),
            "pipeline_vs_bare": round(ratio, 4),
            "pipeline_rows_per_s": round(median([x.rows_per_s for x in pipeline]), 1),
            "bare_rows_per_s": round(median([x.rows_per_s for x in bare]), 1),
            "simulator_cpu_s_per_1000_rows": {k: round(median(v), 4) for k, v in sim_cpu.items()},
            "pipeline_runs": side_runs(pipeline),
            "bare_runs": side_runs(bare),
        },
        measure="CPU s / 1,000 rows",
        pipeline=f"{p:.3f}",
        baseline=f"{b:.3f}",
        reference="",
        target="<= 1.2 x bare",
        reached=f"{ratio:.3f} x bare",
        met=ratio <= 1.2,
    )


# -- e. Prefect overhead ------------------------------------------------------------------------

#: Scenario e's targets at the automatic chunk size: the flow's extra wall time, and its extra
#: CPU in the client and the Prefect server together, over the engine's own CPU.
FLOW_WALL_TARGET = 0.03
FLOW_CPU_TARGET = 0.10


def _overheads(entry: dict[str, Any]) -> str:
    return f"+{pct(entry['wall_overhead'])} wall, +{pct(entry['cpu_overhead'])} CPU"


def prefect_overhead(sizes: Sizes, work: Path, log: Log) -> Outcome:
    """Run ``enrich_flows.flowcost`` in a child process and read its JSON.

    For each mode (CPU-bound, latency-bound) and chunk size it reports the engine directly and
    the flow side by side; the target applies to the automatic chunk size.
    """
    command = [
        sys.executable,
        "-m",
        FLOW_COST_MODULE,
        "--rows",
        str(sizes.flow_rows),
        "--rounds",
        str(sizes.flow_rounds),
        "--concurrency",
        str(sizes.concurrency),
        "--latency",
        str(sizes.latency_s),
        "--modes",
        sizes.flow_modes,
        "--chunks",
        sizes.flow_chunks,
        "--work",
        str(work / "e"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.splitlines()[-20:])
        raise RuntimeError(f"the Prefect overhead run failed ({done.returncode}):\n{tail}")
    figures: dict[str, Any] = orjson.loads(lines[-1])
    headline: dict[str, dict[str, Any]] = {}
    for mode, found in figures["modes"].items():
        for size, entry in found["sizes"].items():
            log(
                f"e {mode}-bound, {size} rows a chunk ({entry['chunks']} chunks): "
                f"flow {entry['flow']['wall_s']:.2f} s vs direct {entry['direct']['wall_s']:.2f} s,"
                f" CPU {entry['flow']['total_cpu_s']:.2f} vs {entry['direct']['total_cpu_s']:.2f}"
                f" s: {_overheads(entry)}"
            )
        headline[mode] = found["sizes"].get("auto") or next(iter(found["sizes"].values()))
    met = all(
        e["wall_overhead"] <= FLOW_WALL_TARGET and e["cpu_overhead"] <= FLOW_CPU_TARGET
        for e in headline.values()
    )

    def side(kind: str) -> str:
        return "; ".join(
            f"{mode} {e[kind]['wall_s']:.2f} s, {e[kind]['total_cpu_s']:.2f} CPU s"
            for mode, e in headline.items()
        )

    small = [
        f"{mode}, {size} rows: {_overheads(e)}"
        for mode, found in figures["modes"].items()
        for size, e in found["sizes"].items()
        if size != "auto"
    ]
    return Outcome(
        key="e",
        title="Prefect overhead",
        setup=figures.pop("setup"),
        figures=figures,
        measure="wall s, CPU s (client + server), automatic chunks",
        pipeline=f"flow: {side('flow')}",
        baseline=f"direct: {side('direct')}",
        reference="; ".join(small),
        target=f"<= {pct(FLOW_WALL_TARGET)} wall, <= {pct(FLOW_CPU_TARGET)} CPU",
        reached="; ".join(f"{mode}: {_overheads(e)}" for mode, e in headline.items()),
        met=met,
    )


SCENARIOS = {
    "a": latency_bound,
    "b": quota_known,
    "c": quota_unknown,
    "d": cpu_per_row,
    "f": quota_noisy,
}


async def run_scenarios(keys: str, sizes: Sizes, log: Log) -> list[Outcome]:
    """Run the scenarios named in ``keys`` (e.g. ``"abcdef"``), in order."""
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="enrich-bench-") as tmp:
        work = Path(tmp)
        for key in keys:
            load = os.getloadavg()[0]
            if key == "e":
                outcome = await asyncio.to_thread(prefect_overhead, sizes, work, log)
            else:
                outcome = await SCENARIOS[key](sizes, work, log)
            # Other processes on the machine skew every figure: say how busy it was.
            outcome.setup["load_average_1m"] = [round(load, 2), round(os.getloadavg()[0], 2)]
            outcomes.append(outcome)
    return outcomes
