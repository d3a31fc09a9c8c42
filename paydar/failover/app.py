"""HTTP API of a failover controller.

Peers:     POST /v1/prevotes          (would this controller co-sign? 200 agree, or 409 why not; nothing signed)
           POST /v1/proposals         (a proposed table; answers this controller's signature or 409 why not)
           GET/POST /v1/routing-table (the certified table held; adopt a newer certified one)
Operators: GET/POST /v1/intents       (POST: an intent signed by an operator key: drain, fence, promote, clear)
Health:    /livez /readyz /state /metrics
"""

from __future__ import annotations

from aiohttp import web

from paydar.failover.controller import Controller, Disagreement
from paydar.failover.intents import IntentRefused, SignedIntent
from paydar.model.errors import TableRejected
from paydar.model.routing import SignedTable, TableGuard
from paydar.server.web import (
    json_error,
    livez,
    metrics_response,
    read_body,
    read_model,
    standard_shedders,
    table_refused,
)

__all__ = ["build_app"]

CONTROLLER = web.AppKey("controller", Controller)
MAX_TABLE_BYTES = 8 * 1024 * 1024
MAX_INTENT_BYTES = 16 * 1024


async def proposals(request: web.Request) -> web.Response:
    controller = request.app[CONTROLLER]
    offer = await read_model(request, SignedTable, limit=MAX_TABLE_BYTES)
    try:
        signature = await controller.consider(offer)
    except Disagreement as exc:
        return json_error(409, f"not co-signed: {exc}")
    return web.json_response({"signature": signature.model_dump(mode="json")})


async def prevotes(request: web.Request) -> web.Response:
    controller = request.app[CONTROLLER]
    offer = await read_model(request, SignedTable, limit=MAX_TABLE_BYTES)
    try:
        await controller.prevote(offer)
    except Disagreement as exc:
        return json_error(409, f"would not co-sign: {exc}")
    return web.json_response({"agree": True})


async def get_table(request: web.Request) -> web.Response:
    held = request.app[CONTROLLER].f.guard.current
    if held is None:
        raise web.HTTPServiceUnavailable(text="this controller holds no routing table yet; retry shortly")
    return web.Response(body=held.model_dump_json(), content_type="application/json")


async def post_table(request: web.Request) -> web.Response:
    controller = request.app[CONTROLLER]
    try:
        controller.offer_table(TableGuard.parse(await read_body(request, MAX_TABLE_BYTES)), source="push")
    except TableRejected as exc:
        return table_refused(exc, controller.table.version)
    return web.json_response({"accepted": True, "version": controller.table.version})


async def get_intents(request: web.Request) -> web.Response:
    intents = request.app[CONTROLLER].intent_log.intents
    return web.json_response({"intents": [i.model_dump(mode="json") for i in intents]})


async def post_intent(request: web.Request) -> web.Response:
    controller = request.app[CONTROLLER]
    signed = await read_model(request, SignedIntent, limit=MAX_INTENT_BYTES)
    try:
        held = controller.admit_intent(signed)
    except IntentRefused as exc:
        return json_error(exc.status, str(exc))
    return web.json_response({"accepted": True, "intents": [i.model_dump(mode="json") for i in held]})


async def readyz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ready", "table_version": request.app[CONTROLLER].table.version})


async def state(request: web.Request) -> web.Response:
    state = request.app[CONTROLLER].state()
    return web.Response(text=state.model_dump_json(), content_type="application/json")


async def metrics(request: web.Request) -> web.Response:
    return metrics_response(request.app[CONTROLLER].metrics.registry)


def build_app(controller: Controller) -> web.Application:
    # Controllers serve no citizen; every route is control or health, each shed on its own.
    shedders = standard_shedders(max_inflight=16, max_queued=64, citizen=lambda _path: False,
                                 on_shed=controller.metrics.shed.inc)
    app = web.Application(client_max_size=MAX_TABLE_BYTES, middlewares=[s.middleware for s in shedders])
    app[CONTROLLER] = controller
    app.router.add_post("/v1/prevotes", prevotes)
    app.router.add_post("/v1/proposals", proposals)
    app.router.add_get("/v1/routing-table", get_table)
    app.router.add_post("/v1/routing-table", post_table)
    app.router.add_get("/v1/intents", get_intents)
    app.router.add_post("/v1/intents", post_intent)
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/state", state)
    app.router.add_get("/metrics", metrics)
    return app
