"""The result index over 1,000,000 results: its size, the memory it takes to build, lookups/s.

A child process writes an output location with ``--results`` distinct results in Parquet parts
of ``--per-part`` rows (the columns an enriched part has: a review text, ``row_id``,
``request_hash``, the completion and its usage), so that this process's memory is the index's
alone. This process then builds :class:`~enrich.output.index.ResultIndex` over it and prints one
JSON object: the index's own bytes, RSS before and after the build and the peak (``VmHWM``)
during it, the build time, and how fast a chunk's hashes are looked up and their results read.

    .venv/bin/python benchmarks/index_1m.py                     # 1,000,000 results
    .venv/bin/python benchmarks/index_1m.py --results 100000    # a quick check
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

_WRITE = """
import hashlib, sys
import pyarrow as pa
from enrich.results import Result, encode, results_table
from enrich.storage import Store
from enrich.output.layout import LAYOUT
from enrich.usage import Usage

root, total, per_part = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
store = Store(root)
for start in range(0, total, per_part):
    n = min(per_part, total - start)
    hashes = [
        hashlib.blake2b(str(start + i).encode(), digest_size=16).hexdigest() for i in range(n)
    ]
    results = [
        Result(f"label {start + i}", "stop", Usage(prompt_tokens=60, completion_tokens=3),
               "gpt-oss-120b", f"req-{start + i}", 1, 0.2, 0.0001)
        for i in range(n)
    ]
    table = results_table(hashes, results)
    table = table.add_column(0, "row_id", pa.array([f"r-{start + i}" for i in range(n)]))
    table = table.add_column(0, "text", pa.array(["x" * 200] * n))
    slot = f"s{start // per_part:06d}"
    store.write_bytes(LAYOUT.part(slot, f"{slot}-c", "parquet"), encode(table, "parquet"))
"""


def _status() -> dict[str, int]:
    """VmRSS and VmHWM of this process, in bytes."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


def _reset_peak() -> None:
    """Start VmHWM again from the current RSS (Linux 4.0+), so the peak is the build's."""
    Path("/proc/self/clear_refs").write_text("5")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=int, default=1_000_000)
    parser.add_argument("--per-part", type=int, default=5_000)
    args = parser.parse_args(argv)

    from enrich.output.index import ResultIndex
    from enrich.storage import Store

    with tempfile.TemporaryDirectory(prefix="enrich-index-") as tmp:
        root = str(Path(tmp) / "out")
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", _WRITE, root, str(args.results), str(args.per_part)],
            check=True,
        )
        written = time.perf_counter() - started
        store = Store(root)
        _reset_peak()
        before = _status()
        started = time.perf_counter()
        index = ResultIndex.build(store, completion_column="completion")
        built = time.perf_counter() - started
        after = _status()
        assert len(index) == args.results

        # A chunk's worth of hashes spread over the whole output (the worst case for the
        # decoded-file cache: each lookup reads a few files).
        chunk = [
            hashlib.blake2b(str(i).encode(), digest_size=16).hexdigest()
            for i in range(0, args.results, max(1, args.results // args.per_part))
        ]
        started = time.perf_counter()
        found = index.lookup(chunk)
        spread = time.perf_counter() - started
        # A chunk whose hashes sit in one part (a rerun under the same rows, re-chunked).
        local = [
            hashlib.blake2b(str(i).encode(), digest_size=16).hexdigest()
            for i in range(args.per_part)
        ]
        started = time.perf_counter()
        index.lookup(local)
        near = time.perf_counter() - started
        assert len(found.results) == len(chunk)

    report = {
        "results": args.results,
        "parts": -(-args.results // args.per_part),
        "index_bytes": index.nbytes,
        "rss_before_mb": round(before["VmRSS"] / 2**20, 1),
        "rss_after_mb": round(after["VmRSS"] / 2**20, 1),
        "rss_growth_mb": round((after["VmRSS"] - before["VmRSS"]) / 2**20, 1),
        "peak_growth_during_build_mb": round((after["VmHWM"] - before["VmRSS"]) / 2**20, 1),
        "build_s": round(built, 2),
        "write_s": round(written, 1),
        "lookup_spread_hashes": len(chunk),
        "lookup_spread_s": round(spread, 3),
        "lookup_one_part_hashes": len(local),
        "lookup_one_part_s": round(near, 3),
    }
    print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    return report


if __name__ == "__main__":
    main()
