"""Requests per second the simulator serves, measured from a separate load-generating process.

Starts `python -m enrich.sim --port 0` (zero latency, no quotas unless extra server arguments
say otherwise) as a subprocess, reads its URL from the first line it prints, then sends
`--requests` chat completions from this process with an aiohttp client at `--concurrency`,
each with a distinct prompt, and prints one JSON object: throughput, client-side latency
percentiles, the server's CPU time per request, and the server's own counters.

    .venv/bin/python benchmarks/sim_load.py --requests 20000 --concurrency 256
    .venv/bin/python benchmarks/sim_load.py --stream -- --tokens-per-second 3000
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from typing import Any

import aiohttp
import orjson

from enrich.sim.process import SimProcess


async def run_load(
    base_url: str, *, requests: int, concurrency: int, stream: bool, max_tokens: int
) -> dict[str, Any]:
    """Send `requests` completions with `concurrency` workers; returns client-side figures."""
    url = f"{base_url}/v1/chat/completions"
    headers = {"Authorization": "Bearer bench", "Content-Type": "application/json"}
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    next_index = 0
    transport_errors = 0
    # Generous, but bounded: a simulator started with --hang must not stall the run forever.
    timeout = aiohttp.ClientTimeout(total=10)

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal next_index, transport_errors
        while next_index < requests:
            i = next_index
            next_index += 1
            body = orjson.dumps(
                {
                    "messages": [{"role": "user", "content": f"Describe row {i} in one line."}],
                    "model": "gpt-oss-120b",
                    "max_completion_tokens": max_tokens,
                    "stream": stream,
                }
            )
            sent = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers, timeout=timeout) as resp:
                    await resp.read()
                    statuses[resp.status] += 1
            except (aiohttp.ClientError, TimeoutError):
                transport_errors += 1
                continue
            latencies.append(time.perf_counter() - sent)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        if not latencies:
            return 0.0
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 2)

    return {
        "requests": requests,
        "elapsed_s": round(elapsed, 3),
        "requests_per_s": round(requests / elapsed, 1),
        "status": {str(k): v for k, v in sorted(statuses.items())},
        "transport_errors": transport_errors,
        "latency_ms": {"p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "max": pct(1.0)},
    }


async def fetch_stats(base_url: str, *, reset: bool = False) -> dict[str, Any]:
    """The server's counters (and optionally reset them)."""
    async with aiohttp.ClientSession() as session:
        if reset:
            async with session.post(f"{base_url}/_sim/reset") as resp:
                await resp.read()
        async with session.get(f"{base_url}/_sim/stats") as resp:
            result: dict[str, Any] = orjson.loads(await resp.read())
            return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--warmup", type=int, default=1_000)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("server_args", nargs="*", help="extra `enrich sim` options, after --")
    args = parser.parse_args()

    with SimProcess(*args.server_args) as sim:
        base_url = sim.base_url
        options = {"stream": args.stream, "max_tokens": args.max_tokens}
        asyncio.run(
            run_load(base_url, requests=args.warmup, concurrency=args.concurrency, **options)
        )
        asyncio.run(fetch_stats(base_url, reset=True))
        cpu_before = sim.cpu_seconds()
        result = asyncio.run(
            run_load(base_url, requests=args.requests, concurrency=args.concurrency, **options)
        )
        server_cpu = sim.cpu_seconds() - cpu_before
        result["concurrency"] = args.concurrency
        result["stream"] = args.stream
        result["server_cpu_ms_per_request"] = round(server_cpu * 1000 / args.requests, 3)
        result["server_stats"] = asyncio.run(fetch_stats(base_url))
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
