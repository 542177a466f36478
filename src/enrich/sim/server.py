"""The simulator's aiohttp application: routes, admission, latency, faults and counting.

A chat request goes through the provider's checks in order (auth 403/401, schema 400, model
404, context 400), then fault injection, then the quota buckets (429, nothing charged), and
only then is the deterministic completion produced, delayed by the configured latency and
sent as JSON or SSE. Every response, errors included, carries the rate-limit headers.

Everything runs on one event loop and nothing blocks it: latency is `asyncio.sleep`, and a hung
request waits on an event that the server sets when it stops, or is cancelled when its client
disconnects (handler cancellation is on), so hung requests never outlive either.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from enrich.sim.buckets import AccountQuotas, Refusal
from enrich.sim.catalogue import model_list, public_model_list
from enrich.sim.config import (
    ANSWER_FAULTS,
    GENERATION_FAULTS,
    STREAM_FAULTS,
    Faults,
    Limits,
    SimConfig,
)
from enrich.sim.control import add_control_routes
from enrich.sim.model import (
    Generation,
    chunk_content,
    generate,
    reasoning_model,
    reasoning_text,
    request_digest,
    spoil,
)
from enrich.sim.protocol import (
    DONE_EVENT,
    FAULT_ERRORS,
    WRONG_API_KEY,
    ApiError,
    ChatRequest,
    chunk_event,
    completion_body,
    error_event,
    model_not_found,
    parse_chat_request,
    throttle_fault,
    usage_fields,
)
from enrich.sim.stats import Counters
from enrich.tokens import CHARS_PER_TOKEN

# Reported model timings when the simulator itself is instant (real time_info is never zero).
NOMINAL_TOKENS_PER_SECOND = 3000.0
NOMINAL_PROMPT_TOKENS_PER_SECOND = 100_000.0

_JSON = "application/json"


class SimulatorApp:
    """One simulated account and model server; `app()` builds the aiohttp application."""

    def __init__(self, config: SimConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.quotas = AccountQuotas(config.limits, clock)
        self.faults = config.faults
        self.counters = Counters()
        self._rng = random.Random(config.seed)
        seed_hash = hashlib.blake2b(str(config.seed).encode(), digest_size=10).hexdigest()
        self.fingerprint = "fp_" + seed_hash
        self._closing = asyncio.Event()
        self._models = {
            m: {"id": m, "object": "model", "created": 0, "owned_by": "Cerebras"}
            for m in config.models
        }

    def app(self) -> web.Application:
        """The aiohttp application serving the provider's routes and the `/_sim` controls.

        Serve it with `handler_cancellation=True` (as `LoopSimulator` does), so that a request
        whose client went away, hung or dropped ones included, stops at once.
        """
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_get("/v1/models", self.list_models)
        app.router.add_get("/public/v1/models", self.public_models)
        app.router.add_get("/v1/models/{model_id}", self.get_model)
        app.router.add_get("/v1/tcp_warming", self.tcp_warming)
        add_control_routes(app, self)
        app.router.add_route("*", "/{tail:.*}", self.not_found)
        return app

    # -- controls (also called in-process by the harness, on the server's loop) --

    def reset(self) -> None:
        """Zero the counters, refill the buckets and reseed fault injection."""
        self.counters.clear()
        self.quotas.refill()
        self._rng.seed(self.config.seed)

    def set_limits(self, changes: dict[str, Any]) -> Limits:
        """Change some limits (None removes one), keeping each bucket's usage."""
        limits = self.quotas.limits.replace(changes)
        self.quotas.set_limits(limits)
        return limits

    def set_faults(self, changes: dict[str, Any]) -> Faults:
        """Change some fault rates."""
        self.faults = self.faults.replace(changes)
        return self.faults

    def close(self) -> None:
        """Release hung requests; the server is stopping."""
        self._closing.set()

    # -- responses --

    def _headers(self, content_type: str = _JSON) -> dict[str, str]:
        headers = self.quotas.headers(self.config.openai_headers)
        headers["Content-Type"] = content_type
        return headers

    def json_response(self, status: int, payload: object) -> web.Response:
        """A JSON response carrying the rate-limit headers."""
        return web.Response(status=status, body=orjson.dumps(payload), headers=self._headers())

    def _error(self, error: ApiError, **extra_headers: str) -> web.Response:
        headers = self._headers()
        headers.update(extra_headers)
        return web.Response(status=error.status, body=error.body(), headers=headers)

    def _auth(self, request: web.Request) -> web.Response | None:
        auth = request.headers.get("Authorization", "")
        scheme, _, key = auth.partition(" ")
        if scheme.lower() != "bearer" or not key:
            return self.json_response(403, {"detail": "Not authenticated"})
        if self.config.api_keys and key not in self.config.api_keys:
            return self._error(WRONG_API_KEY)
        return None

    async def not_found(self, request: web.Request) -> web.Response:
        """Unrouted paths: 404 with an empty text/plain body."""
        return web.Response(status=404, body=b"", headers=self._headers("text/plain"))

    async def tcp_warming(self, request: web.Request) -> web.Response:
        """The SDK's connection warm-up: 200 `{}`."""
        return self.json_response(200, {})

    async def list_models(self, request: web.Request) -> web.Response:
        """The models the key may use."""
        return self._auth(request) or self.json_response(200, model_list(self.config))

    async def public_models(self, request: web.Request) -> web.Response:
        """The public catalogue, no key needed: prices, limits, flags (`enrich.sim.catalogue`)."""
        return self.json_response(200, public_model_list(self.config))

    async def get_model(self, request: web.Request) -> web.Response:
        """One model, or 404 `model_not_found`."""
        denied = self._auth(request)
        if denied is not None:
            return denied
        model_id = request.match_info["model_id"]
        if model_id not in self._models:
            return self._error(model_not_found(model_id))
        return self.json_response(200, self._models[model_id])

    # -- chat completions --

    async def chat(self, request: web.Request) -> web.StreamResponse:
        """POST /v1/chat/completions, counted."""
        counters = self.counters
        counters.requests += 1
        counters.in_flight += 1
        if counters.in_flight > counters.max_in_flight:
            counters.max_in_flight = counters.in_flight
        status = 0
        try:
            response = await self._chat(request)
            status = response.status
            return response
        finally:
            counters.in_flight -= 1
            if status:
                counters.by_status[status] = counters.by_status.get(status, 0) + 1

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        created = time.time()
        denied = self._auth(request)
        if denied is not None:
            return denied
        raw = await request.read()
        counters = self.counters
        counters.digests.add(request_digest(raw))
        if request.headers.get("x-stainless-retry-count", "0") != "0":
            counters.retried += 1
        config = self.config
        try:
            chat = parse_chat_request(
                raw,
                models=self._models,
                context_length=config.context_length,
                reserve_default=config.reserve_default,
            )
        except ApiError as error:
            return self._error(error)
        counters.arrivals.append((created, chat.reserve))
        fault = self.faults.pick(self._rng.random()) if self.faults.total else None
        if fault in STREAM_FAULTS and not chat.stream:
            fault = None  # nothing to break in a body sent whole
        if fault in ANSWER_FAULTS and not chat.body.get("response_format"):
            fault = None  # free text has no JSON to spoil
        if fault is not None:
            counters.faults[fault] = counters.faults.get(fault, 0) + 1
            if fault in ("hang", "drop"):
                return await self._abandon(request, hang=fault == "hang")
            elif fault == "fail_429":
                return self._throttle_fault()
            elif fault in FAULT_ERRORS and fault != "error_body":
                return self._error(FAULT_ERRORS[fault])
        refusal = self.quotas.admit(chat.reserve)
        if refusal is not None:
            return self._refused(refusal)
        generation = generate(
            chat.body,
            max_default=config.max_completion_default,
            reasoning_tokens=config.reasoning_tokens,
        )
        if fault in GENERATION_FAULTS:
            generation = spoil(generation, fault, chat.reserve - chat.prompt_tokens)
        queued = time.perf_counter() - started
        try:
            if chat.stream:
                return await self._stream(request, chat, generation, created, queued, fault)
            if fault == "error_body":
                body = {"error": FAULT_ERRORS[fault].fields(), "status_code": 500}
                return self.json_response(200, body)
            delay = self._latency(generation.completion_tokens)
            if delay > 0:
                await asyncio.sleep(delay)
        finally:
            self.quotas.refund(chat.reserve - chat.prompt_tokens - generation.completion_tokens)
        counters.prompt_tokens += chat.prompt_tokens
        counters.completion_tokens += generation.completion_tokens
        body_bytes = completion_body(
            completion_id=f"chatcmpl-{uuid.uuid4()}",
            created=created,
            model=chat.model,
            fingerprint=self.fingerprint,
            content=generation.content,
            finish_reason=generation.finish_reason,
            usage=self._usage(chat, generation),
            time_info=self._time_info(chat, generation, created, queued),
            reasoning=self._reasoning(chat, generation),
        )
        return web.Response(status=200, body=body_bytes, headers=self._headers())

    @staticmethod
    def _reasoning(chat: ChatRequest, generation: Generation) -> str | None:
        """The reasoning text of a body, asked for apart with `reasoning_format: parsed`."""
        if chat.body.get("reasoning_format") != "parsed" or not generation.reasoning_tokens:
            return None
        return reasoning_text(generation)

    @staticmethod
    def _usage(chat: ChatRequest, generation: Generation) -> dict[str, Any]:
        # A reasoning model always reports its reasoning tokens, zero included.
        reasoning = generation.reasoning_tokens if reasoning_model(chat.model) else None
        return usage_fields(chat.prompt_tokens, generation.completion_tokens, reasoning)

    def _latency(self, completion_tokens: int) -> float:
        tps = self.config.tokens_per_second
        return self.config.ttft + (completion_tokens / tps if tps else 0.0)

    def _time_info(
        self, chat: ChatRequest, generation: Generation, created: float, queued: float
    ) -> dict[str, float]:
        config = self.config
        prompt_time = config.ttft or chat.prompt_tokens / NOMINAL_PROMPT_TOKENS_PER_SECOND
        speed = config.tokens_per_second or NOMINAL_TOKENS_PER_SECOND
        completion_time = generation.completion_tokens / speed
        return {
            "queue_time": queued,
            "prompt_time": prompt_time,
            "completion_time": completion_time,
            "total_time": queued + prompt_time + completion_time,
            "created": created,
        }

    def _refused(self, refusal: Refusal) -> web.Response:
        error = ApiError(429, refusal.message, refusal.type, "quota", refusal.code)
        if self.config.retry_after:
            return self._error(error, **{"retry-after": str(max(1, math.ceil(refusal.wait)))})
        return self._error(error)

    def _throttle_fault(self) -> web.Response:
        """An injected 429, shaped as `Faults` says (code, retry-after, headers or none)."""
        faults = self.faults
        error = throttle_fault(faults.code_429)
        headers = self._headers() if faults.headers_429 else {"Content-Type": _JSON}
        if faults.retry_after_429 is not None:
            headers["retry-after"] = f"{faults.retry_after_429:g}"
        return web.Response(status=429, body=error.body(), headers=headers)

    async def _abandon(self, request: web.Request, *, hang: bool) -> web.StreamResponse:
        """Never answer: drop the connection now, or hang until the client or server gives up."""
        if hang:
            await self._closing.wait()
        if request.transport is not None:
            request.transport.abort()
        # The aborted connection cancels this handler; until then, wait for the server to stop.
        await self._closing.wait()
        raise asyncio.CancelledError

    async def _stream(
        self,
        request: web.Request,
        chat: ChatRequest,
        generation: Generation,
        created: float,
        queued: float,
        fault: str | None,
    ) -> web.StreamResponse:
        headers = self._headers("text/event-stream")
        headers["Cache-Control"] = "no-cache"
        response = web.StreamResponse(status=200, headers=headers)
        await response.prepare(request)
        completion_id = f"chatcmpl-{uuid.uuid4()}"
        ids = (completion_id, created, chat.model, self.fingerprint)
        events = [chunk_event(*ids, {"delta": {"role": "assistant"}, "index": 0})]
        if fault == "error_body":
            events.append(error_event(FAULT_ERRORS[fault]))
            await response.write(b"".join(events))
            await response.write_eof()
            return response
        pieces = chunk_content(generation.content)
        if fault in STREAM_FAULTS:
            # The first deltas, then nothing more: a drop aborts the connection, a cut ends
            # the stream as if it were whole.
            events.extend(
                chunk_event(*ids, {"delta": {"content": p}, "index": 0})
                for p in pieces[: max(1, len(pieces) // 2)]
            )
            await response.write(b"".join(events))
            if fault == "stream_cut":
                await response.write_eof()
                return response
            return await self._abandon(request, hang=False)
        tps = self.config.tokens_per_second
        if self.config.ttft or tps:
            # Pace each delta to ttft + (tokens so far) / speed from the start of the stream.
            loop = asyncio.get_running_loop()
            start = loop.time()
            await response.write(events.pop())
            sent = 0
            for piece in pieces:
                sent += len(piece)
                due = self.config.ttft + (-(-sent // CHARS_PER_TOKEN) / tps if tps else 0.0)
                wait = start + due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                await response.write(chunk_event(*ids, {"delta": {"content": piece}, "index": 0}))
        else:
            events.extend(chunk_event(*ids, {"delta": {"content": p}, "index": 0}) for p in pieces)
        final = {"delta": {}, "finish_reason": generation.finish_reason, "index": 0}
        usage = self._usage(chat, generation)
        time_info = self._time_info(chat, generation, created, queued)
        events.append(chunk_event(*ids, final, usage=usage, time_info=time_info))
        events.append(DONE_EVENT)
        await response.write(b"".join(events))
        await response.write_eof()
        self.counters.prompt_tokens += chat.prompt_tokens
        self.counters.completion_tokens += generation.completion_tokens
        return response
