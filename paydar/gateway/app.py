"""HTTP API of the regional gateway: the single window citizens use for every service.

Citizens:        GET/PUT /v1/services/{service}/documents/{doc_id}      (registry services)
                 GET     /v1/services/{service}/documents?citizen_id=
                 any     /v1/services/{service}/{path}                  (http services: the agency's app)
                 GET     /v1/services                      (what is served, and where)
Control:         GET/POST /v1/routing-table                (table signed k-of-n by controllers)
Health:          /livez /readyz /state /metrics
"""

from __future__ import annotations

import logging
import re
import secrets
from typing import TypeVar

from aiohttp import web

from paydar.gateway.router import HOP_HEADER, Router
from paydar.gateway.state import GatewayState
from paydar.model.errors import TableRejected
from paydar.model.routing import TableGuard
from paydar.model.topology import HTTP_METHODS
from paydar.node.models import DOC_ID_PATTERN
from paydar.node.receipts import nonce_of
from paydar.server.web import (
    json_error,
    livez,
    metrics_response,
    read_body,
    standard_shedders,
    table_refused,
)

__all__ = ["build_app"]

log = logging.getLogger(__name__)
ROUTER = web.AppKey("router", Router)
MAX_TABLE_BYTES = 8 * 1024 * 1024
_DOC_ID = re.compile(DOC_ID_PATTERN)


def _unknown(router: Router, service: str) -> web.Response:
    known = sorted(router.f.guard.known_services)
    shown = ", ".join(known[:20]) + (f" and {len(known) - 20} more" if len(known) > 20 else "")
    return json_error(404, f"unknown service {service[:40]!r}; known services: {shown}")


def _database(router: Router, service: str) -> web.Response | None:
    """A postgres service is reached only through its app: a 404 that says so."""
    if not any(s.id == service for s in router.f.topology.postgres_services):
        return None
    apps = [sid for sid, http in router.f.topology.http_services.items() if http.database == service]
    return json_error(404, f"service {service} is an agency's PostgreSQL database; citizens reach it through its "
                           f"app ({', '.join(apps) or 'none declared'}), never directly")


async def proxied(request: web.Request) -> web.StreamResponse:
    """Any other path under a service: an http service's app, or a registry's hint."""
    router = request.app[ROUTER]
    service = request.match_info["service"]
    if (refused := _database(router, service)) is not None:
        return refused
    if router.apps.serves(service):
        response = await router.apps.handle(request, service)
        return _count(router, service, request.method, response)
    if service not in router.f.guard.known_services:
        return _unknown(router, service)
    return json_error(404 if request.method in ("GET", "PUT") else 405,
                      f"service {service} is a document registry: GET or PUT /v1/services/{service}/documents/"
                      "{doc_id}, or GET /documents?citizen_id=")


async def documents(request: web.Request) -> web.StreamResponse:
    router = request.app[ROUTER]
    service = request.match_info["service"]
    if router.apps.serves(service) or _database(router, service) is not None:
        return await proxied(request)
    if service not in router.f.guard.known_services:
        return _unknown(router, service)
    doc_id = request.match_info.get("doc_id")
    if doc_id is not None and not _DOC_ID.fullmatch(doc_id):
        return json_error(400, f"invalid document id {doc_id[:40]!r}: use 1-128 letters, digits, '.', '_' or '-'")
    if doc_id is None and request.method != "GET":
        return json_error(405, "only GET lists documents; PUT a document at /documents/{doc_id}")
    route = router.table.table.route(service)
    if request.method == "PUT" and not route.writable:
        return _count(router, service, request.method, web.json_response(
            {"error": f"service {service} is read-only (table v{router.table.table.version}): no safe primary; "
                      "reads still work, retry the write later"}, status=503, headers={"Retry-After": "2"}))
    body = await read_body(request, router.f.topology.limits.max_body_bytes) if request.method == "PUT" else None
    path = f"/v1/documents/{doc_id}" if doc_id else "/v1/documents"
    hop = 1 if request.headers.get(HOP_HEADER) else 0
    # A relaying gateway's nonce is kept, so the node's receipt answers the gateway that asked first.
    nonce = (nonce_of(request.headers) if hop else None) or secrets.token_hex(16)
    answer = await router.forward(request.method, service, path, request.query_string, body, hop, nonce)
    if answer is None:
        response = web.json_response(
            {"error": f"no region could serve service {service} from {router.region}; retry shortly"},
            status=503, headers={"Retry-After": "1"})
    else:
        headers = {"X-Paydar-Served-By": answer.region}
        if answer.retry_after:
            headers["Retry-After"] = answer.retry_after
        response = web.Response(body=answer.body, status=answer.status, headers=headers,
                                content_type="application/json")
    return _count(router, service, request.method, response)


R = TypeVar("R", bound=web.StreamResponse)


def _count(router: Router, service: str, method: str, response: R) -> R:
    outcome = "ok" if response.status < 400 else ("client_error" if response.status < 500 else "unavailable")
    # Methods are a label: only the standard ones, so a citizen cannot grow the metric without bound.
    shown = method if method in HTTP_METHODS else "other"
    router.metrics.requests.labels(region=router.region, service=service, method=shown, outcome=outcome).inc()
    return response


async def services(request: web.Request) -> web.Response:
    router = request.app[ROUTER]
    table = router.table.table
    return web.json_response({"region": router.region, "table_version": table.version, "services": {
        sid: route.model_dump(mode="json") for sid, route in table.services.items()}})


async def get_table(request: web.Request) -> web.Response:
    return web.json_response(request.app[ROUTER].table.model_dump(mode="json"))


async def post_table(request: web.Request) -> web.Response:
    router = request.app[ROUTER]
    try:
        signers = router.offer_table(TableGuard.parse(await read_body(request, MAX_TABLE_BYTES)), source="push")
    except TableRejected as exc:
        return table_refused(exc, router.table.table.version)
    return web.json_response({"accepted": True, "version": router.table.table.version, "signers": sorted(signers)})


async def readyz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ready", "table_version": request.app[ROUTER].table.table.version})


async def state(request: web.Request) -> web.Response:
    router = request.app[ROUTER]
    table = router.table.table
    state = GatewayState(component=router.config.component, region=router.region, table_version=table.version,
                         table_expires_at=table.expires_at, signers=sorted(router.f.guard.signers),
                         services=dict(table.services))
    return web.Response(text=state.model_dump_json(), content_type="application/json")


async def metrics(request: web.Request) -> web.Response:
    return metrics_response(request.app[ROUTER].metrics.registry)


def build_app(router: Router) -> web.Application:
    """The gateway's aiohttp application; limits come from the topology."""
    limits = router.f.topology.limits

    def app_path(path: str) -> bool:
        # An http service's requests are bounded per service (in the proxy), so a slow agency
        # app holds only its own slots: never the registry services' or the control routes'.
        parts = path.split("/", 4)
        return path.startswith("/v1/services/") and len(parts) > 3 and router.apps.serves(parts[3])

    shedders = standard_shedders(max_inflight=limits.max_inflight_requests, max_queued=limits.max_queued_requests,
                                 citizen=lambda path: path.startswith("/v1/services") and not app_path(path),
                                 on_shed=router.metrics.shed.inc, bounded_elsewhere=app_path)
    # Bodies are bounded per route as they are read (read_body); this is only aiohttp's backstop.
    app = web.Application(client_max_size=MAX_TABLE_BYTES, middlewares=[s.middleware for s in shedders])
    app[ROUTER] = router
    app.router.add_get("/v1/services/{service}/documents/{doc_id}", documents)
    app.router.add_put("/v1/services/{service}/documents/{doc_id}", documents)
    app.router.add_get("/v1/services/{service}/documents", documents)
    app.router.add_route("*", "/v1/services/{service}/{path:.*}", proxied)
    app.router.add_get("/v1/services", services)
    app.router.add_get("/v1/routing-table", get_table)
    app.router.add_post("/v1/routing-table", post_table)
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/state", state)
    app.router.add_get("/metrics", metrics)
    return app


