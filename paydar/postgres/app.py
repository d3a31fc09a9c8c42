"""HTTP API of a PostgreSQL agent: the workload contract, nothing more.

Control:  GET/POST /v1/routing-table    (table signed k-of-n by controllers)
Admin:    POST /v1/rebuild              (this agent's admin token: set its data aside, clone afresh)
          POST /v1/backup               (a base backup into the vault now; its signed manifest)
Health:   /livez /readyz /state /metrics

Citizens never reach it: they reach the agency's app, which reaches its database through the
agent's TCP routes (:mod:`paydar.postgres.route`).
"""

from __future__ import annotations

from aiohttp import web

from paydar.model.errors import TableRejected
from paydar.model.routing import TableGuard
from paydar.postgres.agent import MAX_TABLE_BYTES, PgAgent, RebuildRefused
from paydar.postgres.backup import BackupUnavailable
from paydar.server.web import (
    json_error,
    livez,
    metrics_response,
    read_body,
    standard_shedders,
    table_refused,
    unauthorized,
)

__all__ = ["build_app"]

AGENT = web.AppKey("agent", PgAgent)


async def get_table(request: web.Request) -> web.Response:
    return web.json_response(request.app[AGENT].table.model_dump(mode="json"))


async def post_table(request: web.Request) -> web.Response:
    agent = request.app[AGENT]
    try:
        signers = await agent.offer_table(TableGuard.parse(await read_body(request, MAX_TABLE_BYTES)), source="push")
    except TableRejected as exc:
        return table_refused(exc, agent.table.table.version)
    return web.json_response({"accepted": True, "version": agent.table.table.version, "signers": sorted(signers),
                              "epoch": agent.route.epoch})


async def state(request: web.Request) -> web.Response:
    """200 while the server answers, 503 (with the same document) while it does not."""
    agent = request.app[AGENT]
    return web.Response(text=agent.state().model_dump_json(), content_type="application/json",
                        status=200 if agent.seen is not None else 503)


async def readyz(request: web.Request) -> web.Response:
    agent = request.app[AGENT]
    why = agent.last.reason if agent.last else "no decision yet"
    if not agent.ready:
        return json_error(503, f"not ready: {agent.trouble or why}")
    return web.json_response({"status": "ready", "role": agent.state().role.value, "epoch": agent.enacted})


async def post_rebuild(request: web.Request) -> web.Response:
    """Set this instance's data aside and clone it afresh from the primary; 409 for the primary."""
    agent = request.app[AGENT]
    if (refused := unauthorized(request, agent.f.admin_token)) is not None:
        return refused
    try:
        detail = await agent.rebuild()
    except RebuildRefused as exc:
        return json_error(409, f"not rebuilt: {exc}")
    return web.json_response({"rebuilding": True, "detail": detail}, status=202)


async def post_backup(request: web.Request) -> web.Response:
    """Take a base backup now; answers once the vault holds it and its signed manifest."""
    agent = request.app[AGENT]
    if (refused := unauthorized(request, agent.f.admin_token)) is not None:
        return refused
    try:
        signed = await agent.backups.base_backup()
    except BackupUnavailable as exc:
        return json_error(503, f"no backup taken: {exc}")
    return web.json_response(signed.model_dump(mode="json"))


async def metrics(request: web.Request) -> web.Response:
    return metrics_response(request.app[AGENT].registry)


def build_app(agent: PgAgent) -> web.Application:
    """The agent's aiohttp application."""
    limits = agent.f.topology.limits
    shedders = standard_shedders(max_inflight=limits.max_inflight_requests, max_queued=limits.max_queued_requests,
                                 citizen=lambda _path: False, on_shed=lambda: None)
    app = web.Application(client_max_size=MAX_TABLE_BYTES, middlewares=[s.middleware for s in shedders])
    app[AGENT] = agent
    app.router.add_get("/v1/routing-table", get_table)
    app.router.add_post("/v1/routing-table", post_table)
    app.router.add_post("/v1/rebuild", post_rebuild)
    app.router.add_post("/v1/backup", post_backup)
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/state", state)
    app.router.add_get("/metrics", metrics)
    return app
