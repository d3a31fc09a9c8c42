"""HTTP API of a failover controller.

Peers:     POST /v1/proposals         (a proposed table; answers this controller's signature or 409 why not)
           GET/POST /v1/routing-table (the certified table held; adopt a newer certified one)
Operators: GET/POST /v1/intents       (bearer admin token: drain, fence, promote, clear)
Health:    /livez /readyz /state /metrics
"""

from __future__ import annotations

from aiohttp import web

from failover.controller import Controller, Disagreement, Intent
from infra.errors import PaydarError, TableRejected
from infra.routing import SignedTable, TableGuard
from infra.web import json_error, livez, metrics_response, read_model

__all__ = ["build_app"]

CONTROLLER = web.AppKey("controller", Controller)
MAX_TABLE_BYTES = 8 * 1024 * 1024


async def proposals(request: web.Request) -> web.Response:
    controller = request.app[CONTROLLER]
    offer = await read_model(request, SignedTable)
    try:
        signature = await controller.consider(offer)
    except Disagreement as exc:
        return json_error(409, f"not co-signed: {exc}")
    return web.json_response({"signature": signature.model_dump(mode="json")})


async def get_table(request: web.Request) -> web.Response:
    return web.Response(body=request.app[CONTROLLER].f.guard.current.model_dump_json(),  # type: ignore[union-attr]
                        content_type="application/json")


async def post_table(request: web.Request) -> web.Response:
    controller = request.app[CONTROLLER]
    try:
        controller.offer_table(TableGuard.parse(await request.read()), source="push")
    except TableRejected as exc:
        return json_error(409 if exc.reason == "not-newer" else 403, str(exc), reason=exc.reason,
                          held_version=controller.table.version)
    return web.json_response({"accepted": True, "version": controller.table.version})


async def intents(request: web.Request) -> web.Response:
    controller = request.app[CONTROLLER]
    if not controller.check_admin(request.headers.get("Authorization", "")):
        return json_error(401, "admin endpoint: send Authorization: Bearer <admin token from the state dir>")
    if request.method == "GET":
        return web.json_response({"intents": [i.model_dump(mode="json") for i in controller.intents]})
    intent = await read_model(request, Intent)
    try:
        held = controller.apply_intent(intent)
    except (PaydarError, KeyError) as exc:
        return json_error(400, str(exc).strip('"'))
    return web.json_response({"accepted": True, "intents": [i.model_dump(mode="json") for i in held]})


async def readyz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ready", "table_version": request.app[CONTROLLER].table.version})


async def state(request: web.Request) -> web.Response:
    return web.json_response(request.app[CONTROLLER].state())


async def metrics(request: web.Request) -> web.Response:
    return metrics_response(request.app[CONTROLLER].metrics.registry)


def build_app(controller: Controller) -> web.Application:
    app = web.Application(client_max_size=MAX_TABLE_BYTES)
    app[CONTROLLER] = controller
    app.router.add_post("/v1/proposals", proposals)
    app.router.add_get("/v1/routing-table", get_table)
    app.router.add_post("/v1/routing-table", post_table)
    app.router.add_route("GET", "/v1/intents", intents)
    app.router.add_route("POST", "/v1/intents", intents)
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/state", state)
    app.router.add_get("/metrics", metrics)
    return app
