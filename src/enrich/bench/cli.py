"""``enrich bench``: run the scenarios, print the table and the JSON document.

Each scenario runs the pipeline and a bare AsyncCerebras loop side by side (see
:mod:`enrich.bench.scenarios` and docs/benchmarks.md). Targets are reported, not enforced: the
exit code is 0 whenever every scenario ran.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import typer


def bench_command(
    quick: Annotated[
        bool, typer.Option("--quick", help="Smaller sizes (about 2 minutes).")
    ] = False,
    only: Annotated[
        str,
        typer.Option(
            "--only", "--scenario", help="Scenarios to run, in order: any of a b c d e f."
        ),
    ] = "abcdef",
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the JSON document to this file.")
    ] = None,
    markdown_path: Annotated[
        Path | None, typer.Option("--markdown", help="Also write the table as Markdown.")
    ] = None,
) -> None:
    """Pipeline vs a bare SDK loop on the simulator: throughput, quota, CPU, Prefect overhead,
    a noisy server."""
    import orjson
    from rich.console import Console

    from enrich.bench.report import as_json, as_markdown, as_table, machine
    from enrich.bench.scenarios import FULL, QUICK, run_scenarios

    keys = "".join(k for k in only.lower() if not k.isspace() and k != ",")
    unknown = sorted(set(keys) - set("abcdef"))
    if unknown:
        raise typer.BadParameter(f"unknown scenario(s): {', '.join(unknown)}", param_hint="--only")
    sizes = QUICK if quick else FULL
    err = Console(stderr=True)
    outcomes = asyncio.run(
        run_scenarios(keys, sizes, lambda line: err.print(line, highlight=False))
    )
    host = machine()
    out = Console() if sys.stdout.isatty() else Console(width=160)
    out.print(as_table(outcomes, host))
    document = orjson.dumps(as_json(outcomes, sizes, host), option=orjson.OPT_INDENT_2)
    sys.stdout.write(document.decode() + "\n")
    if json_path is not None:
        json_path.write_bytes(document + b"\n")
    if markdown_path is not None:
        markdown_path.write_text(as_markdown(outcomes) + "\n")
