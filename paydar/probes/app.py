"""HTTP API of a prober.

Controllers:  GET /v1/observations   (the newest round, signed by this prober's key)
Health:       /livez /readyz /state /metrics
"""

from __future__ import annotations

from aiohttp import web

from paydar.probes.models import ObservationRound, ProberState
from paydar.probes.prober import Prober
from paydar.server.web import json_error, livez, metrics_response

__all__ = ["build_app"]

PROBER = web.AppKey("prober", Prober)


async def observations(request: web.Request) -> web.Response:
    latest = request.app[PROBER].latest
    if latest is None:
        return json_error(503, "no probe round has completed yet; retry shortly")
    return web.Response(body=latest.model_dump_json(), content_type="application/json")


async def readyz(request: web.Request) -> web.Response:
    prober = request.app[PROBER]
    if prober.latest is None:
        return json_error(503, "no probe round has completed yet")
    return web.json_response({"status": "ready", "round": prober.round})


async def state(request: web.Request) -> web.Response:
    prober = request.app[PROBER]
    latest = ObservationRound.model_validate_json(prober.latest.observations) if prober.latest else None
    state = ProberState(component=prober.config.component, region=prober.config.region, round=prober.round,
                        targets=len(prober.targets),
                        failing={o.target: o.error for o in latest.failing} if latest else {},
                        canaries=latest.canaries if latest else (),
                        integrity=tuple(i for i in latest.integrity if i.diverged) if latest else ())
    return web.Response(text=state.model_dump_json(), content_type="application/json")


async def metrics(request: web.Request) -> web.Response:
    return metrics_response(request.app[PROBER].metrics.registry)


def build_app(prober: Prober) -> web.Application:
    app = web.Application(client_max_size=4096)
    app[PROBER] = prober
    app.router.add_get("/v1/observations", observations)
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/state", state)
    app.router.add_get("/metrics", metrics)
    return app
