"""`enrich sim`: run the simulator as a process until SIGINT or SIGTERM.

When it is ready it prints exactly one line, `enrich sim listening on http://HOST:PORT`, so a
script that starts it with `--port 0` can read the port from its first line of output.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated, Any

import typer

from enrich.sim.config import DEFAULT_MODELS, Faults, Limits, SimConfig
from enrich.sim.harness import LoopSimulator


def _rate(what: str) -> Any:
    """A fault-rate option (a probability per chat request)."""
    return typer.Option(min=0.0, max=1.0, help=f"Share of chat requests that {what}.")


def sim_command(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on; 0 picks a free one.")] = 0,
    ttft: Annotated[float, typer.Option(help="Seconds before the first token.")] = 0.0,
    tokens_per_second: Annotated[
        float, typer.Option(help="Completion speed; 0 answers instantly.")
    ] = 0.0,
    rpm: Annotated[int | None, typer.Option(help="Requests per minute quota.")] = None,
    tpm: Annotated[int | None, typer.Option(help="Tokens per minute quota.")] = None,
    rpd: Annotated[int | None, typer.Option(help="Requests per day quota.")] = None,
    tpd: Annotated[int | None, typer.Option(help="Tokens per day quota.")] = None,
    max_completion_default: Annotated[
        int, typer.Option(help="Longest natural completion, in tokens.")
    ] = 48,
    context_length: Annotated[int, typer.Option(help="Context window, in tokens.")] = 131072,
    reserve_default: Annotated[
        int, typer.Option(help="Tokens reserved when a request sets no max_completion_tokens.")
    ] = 16384,
    fail_429: Annotated[float, _rate("get a 429 at random (see --code-429)")] = 0.0,
    fail_500: Annotated[float, _rate("get a 500")] = 0.0,
    fail_503: Annotated[float, _rate("get a 503")] = 0.0,
    hang: Annotated[float, _rate("never get an answer")] = 0.0,
    drop: Annotated[float, _rate("have their connection dropped")] = 0.0,
    error_body: Annotated[float, _rate("get a 200 with an error body")] = 0.0,
    code_429: Annotated[
        str, typer.Option(help="Error code of the random 429s (e.g. rate_limit_exceeded).")
    ] = "queue_exceeded",
    retry_after_429: Annotated[
        float | None, typer.Option(help="retry-after seconds on the random 429s; none if unset.")
    ] = None,
    headers_429: Annotated[
        bool,
        typer.Option(
            "--headers-429/--no-headers-429",
            help="Whether the random 429s carry the rate-limit headers (a proxy's do not).",
        ),
    ] = True,
    invalid_json: Annotated[
        float, _rate("with a response_format get JSON that does not parse")
    ] = 0.0,
    truncated_json: Annotated[float, _rate("with a response_format get JSON cut short")] = 0.0,
    reasoning_starved: Annotated[
        float, _rate("get an empty answer, the budget spent on reasoning")
    ] = 0.0,
    reasoning_tokens: Annotated[
        int,
        typer.Option(
            min=0, help="Tokens a gpt-oss model reasons per request (medium effort); 0: none."
        ),
    ] = 0,
    retry_after: Annotated[
        bool, typer.Option("--retry-after/--no-retry-after", help="Send retry-after on quota 429s.")
    ] = True,
    openai_headers: Annotated[
        bool, typer.Option(help="Also send OpenAI-style x-ratelimit-*-requests/-tokens headers.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed for fault injection.")] = 0,
    models: Annotated[str, typer.Option(help="Comma-separated model catalogue.")] = ",".join(
        DEFAULT_MODELS
    ),
    api_keys: Annotated[
        str, typer.Option(help="Comma-separated accepted API keys; empty accepts any.")
    ] = "",
    deprecated: Annotated[
        list[str] | None,
        typer.Option(help="MODEL=YYYY-MM-DD: a served model marked deprecated (repeatable)."),
    ] = None,
    retired: Annotated[
        list[str] | None,
        typer.Option(help="MODEL=YYYY-MM-DD: a model retired on that day (repeatable)."),
    ] = None,
) -> None:
    """Serve a Cerebras-compatible chat completions API with quotas, latency and faults."""
    try:
        config = SimConfig(
            host=host,
            port=port,
            models=tuple(m.strip() for m in models.split(",") if m.strip()),
            deprecated=_dated("--deprecated", deprecated or []),
            retired=_dated("--retired", retired or []),
            api_keys=frozenset(k.strip() for k in api_keys.split(",") if k.strip()),
            ttft=ttft,
            tokens_per_second=tokens_per_second or None,
            max_completion_default=max_completion_default,
            context_length=context_length,
            reserve_default=reserve_default,
            limits=Limits(rpm=rpm, tpm=tpm, rpd=rpd, tpd=tpd),
            faults=Faults(
                fail_429=fail_429,
                fail_500=fail_500,
                fail_503=fail_503,
                hang=hang,
                drop=drop,
                error_body=error_body,
                code_429=code_429,
                retry_after_429=retry_after_429,
                headers_429=headers_429,
                invalid_json=invalid_json,
                truncated_json=truncated_json,
                reasoning_starved=reasoning_starved,
            ),
            reasoning_tokens=reasoning_tokens,
            retry_after=retry_after,
            openai_headers=openai_headers,
            seed=seed,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    asyncio.run(serve(config))


def _dated(option: str, values: list[str]) -> dict[str, str]:
    """``MODEL=YYYY-MM-DD`` values as a dict; anything else is a ``ValueError``."""
    dated: dict[str, str] = {}
    for value in values:
        model, _, day = value.partition("=")
        if not (model.strip() and len(day.strip()) == 10):
            raise ValueError(f"{option} {value!r}: expected MODEL=YYYY-MM-DD")
        dated[model.strip()] = day.strip()
    return dated


async def serve(config: SimConfig) -> None:
    """Serve until SIGINT or SIGTERM, announcing the URL on stdout once listening."""
    runner = LoopSimulator(config)
    url = await runner.start()
    print(f"enrich sim listening on {url}", flush=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    try:
        await stopping.wait()
    finally:
        await runner.stop()
