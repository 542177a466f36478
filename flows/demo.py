"""The README demo: the sample job (two typed steps) through the Prefect flow, against the
simulator by default, then a few rows of its typed columns.

Unless ``CEREBRAS_API_KEY`` is set, it starts the bundled simulator on a free port (as a child
process, with a little latency so the run looks like one) and points the SDK at it.
"""

from __future__ import annotations

import contextlib
import os

from rich.console import Console

from enrich.sim.process import SimProcess

DEMO_CONFIG = "configs/reviews.yaml"
#: Small chunks, for the demo only, so its 200 rows show several task runs in the UI (a job's
#: own size, chosen from its limits, is 100 rows here).
DEMO_ROWS_PER_CHUNK = 50
# The typed columns of step 1, step 2's summary, and the row's totals.
SHOW_COLUMNS = [
    "row_id",
    "triage_sentiment",
    "triage_topics",
    "summary_completion",
    "total_tokens",
    "cost_usd",
    "status",
]


def run_demo(output: str, config: str = DEMO_CONFIG) -> int:
    """Run the demo job; print where the output went and a few enriched rows. Exit code."""
    import polars as pl

    from enrich.output.layout import LAYOUT
    from enrich.output.reader import read_dataset
    from enrich_flows.enrich import run_enrich

    console = Console()
    overrides = [f"output.path={output}", f"execution.rows_per_chunk={DEMO_ROWS_PER_CHUNK}"]
    with contextlib.ExitStack() as stack:
        if not os.environ.get("CEREBRAS_API_KEY"):
            sim = SimProcess("--ttft", "0.05", "--tokens-per-second", "2000")
            url = stack.enter_context(sim).base_url
            os.environ["CEREBRAS_BASE_URL"] = url
            os.environ["CEREBRAS_API_KEY"] = "demo-key-for-the-local-simulator"
            console.print(f"Using the bundled Cerebras simulator at {url}")
        else:
            console.print("CEREBRAS_API_KEY is set: calling the real Cerebras API")
        ok, figures, message = run_enrich(config, overrides)
    if not ok:
        console.print(f"[red]the run did not complete: {message}")
        return 1
    console.print(
        f"\nEnriched {figures['rows']} rows at {figures['rows_per_s']} rows/s "
        f"({figures['requests']} requests, ${figures['cost_usd']:.6f})."
    )
    console.print(f"Output: {figures['output']} (parts listed in {LAYOUT.manifest})\n")
    frame = pl.from_arrow(read_dataset(figures["output"]))
    assert isinstance(frame, pl.DataFrame)
    shown = frame.select(SHOW_COLUMNS).head(5)
    with pl.Config(fmt_str_lengths=28, tbl_cols=len(SHOW_COLUMNS), tbl_width_chars=140):
        console.print(str(shown), width=max(console.width, 140), soft_wrap=True, markup=False)
    types = ", ".join(f"{c}: {shown.schema[c]}" for c in ("triage_sentiment", "triage_topics"))
    console.print(f"\nTyped columns: {types}")
    return 0
