"""The benchmark's output: a table for people, a JSON document for tools, the machine it ran on."""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import Any

from rich.table import Table

from enrich.bench.outcome import Outcome, Sizes

_PACKAGES = ("cerebras_cloud_sdk", "aiohttp", "httpx", "pyarrow", "tenacity", "prefect")


def machine() -> dict[str, Any]:
    """CPU model and count, memory, OS, Python and the versions of the packages on the path."""
    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        model = names[0] if names else model
    except OSError:
        pass
    memory_gb = None
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        memory_gb = round(pages * size / 2**30, 1)
    except (ValueError, OSError):
        pass
    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "memory_gb": memory_gb,
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "packages": versions,
    }


def as_json(outcomes: Sequence[Outcome], sizes: Sizes, host: dict[str, Any]) -> dict[str, Any]:
    return {
        "machine": host,
        "sizes": vars(sizes),
        "scenarios": {o.key: o.to_json() for o in outcomes},
    }


def as_table(outcomes: Sequence[Outcome], host: dict[str, Any]) -> Table:
    table = Table(
        title=f"enrich bench on {host['cpus']} x {host['cpu']}, Python {host['python']}",
        title_justify="left",
    )
    for column in ("scenario", "measure", "pipeline", "bare loop", "reference", "target"):
        table.add_column(column)
    table.add_column("reached")
    for o in outcomes:
        mark = "" if o.met is None else (" [green]met[/]" if o.met else " [red]missed[/]")
        table.add_row(
            f"{o.key}. {o.title}",
            o.measure,
            o.pipeline,
            o.baseline,
            o.reference,
            o.target,
            o.reached + mark,
        )
    return table


def as_markdown(outcomes: Sequence[Outcome]) -> str:
    """The table as Markdown, for docs."""
    lines = [
        "| scenario | measure | pipeline | bare loop | reference | target | reached |",
        "|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        mark = "" if o.met is None else (" (met)" if o.met else " (missed)")
        lines.append(
            f"| {o.key}. {o.title} | {o.measure} | {o.pipeline} | {o.baseline} | "
            f"{o.reference} | {o.target} | {o.reached}{mark} |"
        )
    return "\n".join(lines)
