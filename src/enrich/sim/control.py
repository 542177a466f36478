"""The simulator's own control routes, beside the provider's API (no auth, not counted).

* `GET /_sim/stats` -- the counters as JSON (`SimStats.to_json`).
* `GET /_sim/arrivals` -- `{"arrivals": [[time, tokens], ...]}`: each chat request that reached
  the quotas (admitted or refused), its wall-clock arrival and the tokens it reserves.
* `POST /_sim/reset` -- zero the counters, refill the buckets, reseed fault injection.
* `POST /_sim/limits` -- a JSON object with any of `rpm`, `tpm`, `rpd`, `tpd` (null removes a
  limit); answers with the limits now in force. Usage so far is kept.
* `POST /_sim/faults` -- a JSON object with any of the fault rates and the shape of an
  injected 429 (`code_429`, `retry_after_429`, `headers_429`); answers with all of them.

A body that names an unknown field or an invalid value gets 400 `{"detail": ...}`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from enrich.sim.config import FAULT_FIELDS, FAULT_SHAPE_FIELDS, LIMIT_FIELDS

if TYPE_CHECKING:
    from enrich.sim.server import SimulatorApp


def add_control_routes(app: web.Application, sim: SimulatorApp) -> None:
    """Register the `/_sim` routes of `sim` on `app`."""

    def settings_route(
        apply: Callable[[Any], object], names: tuple[str, ...]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        """A route that applies a JSON body of changes and answers with every setting."""

        async def post(request: web.Request) -> web.Response:
            try:
                settings = apply(orjson.loads(await request.read()))
            except (ValueError, TypeError) as exc:
                return sim.json_response(400, {"detail": str(exc)})
            return sim.json_response(200, {name: getattr(settings, name) for name in names})

        return post

    async def get_stats(request: web.Request) -> web.Response:
        return sim.json_response(200, sim.counters.snapshot().to_json())

    async def get_arrivals(request: web.Request) -> web.Response:
        return sim.json_response(200, {"arrivals": list(sim.counters.arrivals)})

    async def post_reset(request: web.Request) -> web.Response:
        sim.reset()
        return sim.json_response(200, {"ok": True})

    app.router.add_get("/_sim/stats", get_stats)
    app.router.add_get("/_sim/arrivals", get_arrivals)
    app.router.add_post("/_sim/reset", post_reset)
    app.router.add_post("/_sim/limits", settings_route(sim.set_limits, LIMIT_FIELDS))
    app.router.add_post(
        "/_sim/faults", settings_route(sim.set_faults, FAULT_FIELDS + FAULT_SHAPE_FIELDS)
    )
