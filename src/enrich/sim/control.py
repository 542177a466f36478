"""The simulator's own control routes, beside the provider's API (no auth, not counted).

* `GET /_sim/stats` -- the counters as JSON (`SimStats.to_json`).
* `POST /_sim/reset` -- zero the counters, refill the buckets, reseed fault injection.
* `POST /_sim/limits` -- a JSON object with any of `rpm`, `tpm`, `rpd`, `tpd` (null removes a
  limit); answers with the limits now in force. Usage so far is kept.
* `POST /_sim/faults` -- a JSON object with any of the fault rates; answers with all rates.

A body that names an unknown field or an invalid value gets 400 `{"detail": ...}`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson
from aiohttp import web

from enrich.sim.config import FAULT_FIELDS, LIMIT_FIELDS

if TYPE_CHECKING:
    from enrich.sim.server import SimulatorApp


def add_control_routes(app: web.Application, sim: SimulatorApp) -> None:
    """Register the `/_sim` routes of `sim` on `app`."""

    async def get_stats(request: web.Request) -> web.Response:
        return sim.json_response(200, sim.counters.snapshot().to_json())

    async def post_reset(request: web.Request) -> web.Response:
        sim.reset()
        return sim.json_response(200, {"ok": True})

    async def post_limits(request: web.Request) -> web.Response:
        try:
            limits = sim.set_limits(orjson.loads(await request.read()))
        except (ValueError, TypeError) as exc:
            return sim.json_response(400, {"detail": str(exc)})
        return sim.json_response(200, {name: getattr(limits, name) for name in LIMIT_FIELDS})

    async def post_faults(request: web.Request) -> web.Response:
        try:
            faults = sim.set_faults(orjson.loads(await request.read()))
        except (ValueError, TypeError) as exc:
            return sim.json_response(400, {"detail": str(exc)})
        return sim.json_response(200, {name: getattr(faults, name) for name in FAULT_FIELDS})

    app.router.add_get("/_sim/stats", get_stats)
    app.router.add_post("/_sim/reset", post_reset)
    app.router.add_post("/_sim/limits", post_limits)
    app.router.add_post("/_sim/faults", post_faults)
