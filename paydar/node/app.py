"""HTTP API of the regional node (the citizen document registry).

Public (through gateways):  GET/PUT /v1/documents/{doc_id}, GET /v1/documents?citizen_id=
Between nodes:              POST /v1/replicate            (batch signed by the primary's key)
Control:                    GET/POST /v1/routing-table    (table signed k-of-n by controllers)
Admin (bearer token):       POST /v1/integrity            (verify the whole chain now)
                            POST /v1/backup               (snapshot to the vault now; the signed manifest)
Probes:                     GET /v1/chain/{position}      (entry hash, to compare replicas)
Health:                     /livez /readyz /state /metrics
"""

from __future__ import annotations

import json
import logging
import re

from aiohttp import web

from paydar.model.errors import SignatureError, TableRejected
from paydar.model.routing import TableGuard
from paydar.model.wire import MAX_COUNTER
from paydar.node.backup import BackupUnavailable
from paydar.node.chain import Entry
from paydar.node.errors import BatchRefused, IntegrityViolation, WriteRefused
from paydar.node.models import DOC_ID_PATTERN, DocumentIn, SignedBatch
from paydar.node.receipts import nonce_of, prove, render
from paydar.node.runtime import NodeRuntime
from paydar.server.web import (
    json_error,
    livez,
    metrics_response,
    read_body,
    read_model,
    standard_shedders,
    table_refused,
    unauthorized,
)
from paydar.vault.s3 import VaultError
from paydar.workload.contract import InstanceRole

__all__ = ["build_app"]

log = logging.getLogger(__name__)
RUNTIME = web.AppKey("runtime", NodeRuntime)
_DOC_ID = re.compile(DOC_ID_PATTERN)
MAX_REPLICATION_BYTES = 4 * 1024 * 1024
MAX_TABLE_BYTES = 8 * 1024 * 1024


def _document(runtime: NodeRuntime, entry: Entry, request: web.Request, *, acknowledged: bool = False
              ) -> dict[str, object]:
    stale = runtime.role is not InstanceRole.PRIMARY or not runtime.route.writable
    proof = prove(runtime.f.signer, service=runtime.service, node=runtime.config.component, entry=entry,
                  role=runtime.role.value, stale=stale, acknowledged=acknowledged,
                  nonce=nonce_of(request.headers) or "")
    return render(proof, runtime.region)


def _doc_id(request: web.Request) -> str:
    doc_id = request.match_info["doc_id"]
    if not _DOC_ID.fullmatch(doc_id):
        raise web.HTTPBadRequest(text=json.dumps({"error": f"invalid document id {doc_id[:40]!r}: use 1-128 "
                                                           "letters, digits, '.', '_' or '-'"}),
                                 content_type="application/json")
    return doc_id


async def put_document(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    doc_id = _doc_id(request)
    document = await read_model(request, DocumentIn, limit=runtime.f.topology.limits.max_body_bytes)
    with runtime.metrics.write_seconds.time():
        try:
            entry = await runtime.write(doc_id, document)
        except WriteRefused as exc:
            outcome = "refused" if exc.status == 409 else "unacknowledged"
            runtime.metrics.writes.labels(service=runtime.service, region=runtime.region, outcome=outcome).inc()
            headers = {"Retry-After": str(exc.extra["retry_after"])} if "retry_after" in exc.extra else None
            body = {k: v for k, v in exc.extra.items() if k != "retry_after"}
            return web.json_response({"error": str(exc), **body}, status=exc.status, headers=headers)
    runtime.metrics.writes.labels(service=runtime.service, region=runtime.region, outcome="acknowledged").inc()
    return web.json_response(_document(runtime, entry, request, acknowledged=True), status=200)


async def get_document(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    doc_id = _doc_id(request)
    try:
        entry = await runtime.read(doc_id)
    except IntegrityViolation as exc:
        return json_error(503, f"this replica failed verification and serves nothing ({exc.reason}); "
                               "read from another region")
    if entry is None:
        return json_error(404, f"no document {doc_id!r} in service {runtime.service}")
    return web.json_response(_document(runtime, entry, request))


async def list_documents(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    citizen_id = request.query.get("citizen_id", "")
    if not re.fullmatch(r"[0-9]{10}", citizen_id):
        return json_error(400, "query parameter citizen_id must be a 10-digit national code")
    try:
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        return json_error(400, "limit must be an integer between 1 and 1000")
    if not 1 <= limit <= 1000:
        return json_error(400, "limit must be an integer between 1 and 1000")
    try:
        entries = await runtime.list_documents(citizen_id, request.query.get("after", ""), limit)
    except IntegrityViolation as exc:
        return json_error(503, f"this replica failed verification ({exc.reason}); read from another region")
    return web.json_response({"documents": [_document(runtime, e, request) for e in entries],
                              "stale": runtime.role is not InstanceRole.PRIMARY})


async def replicate(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    signed = await read_model(request, SignedBatch, limit=MAX_REPLICATION_BYTES)
    try:
        reply = await runtime.receive_batch(signed)
    except SignatureError as exc:
        log.warning("replication refused: %s", exc)
        return json_error(403, f"replication refused: {exc}")
    except BatchRefused as exc:
        log.warning("replication refused sender=%s: %s", signed.batch.sender, exc)
        return json_error(exc.status, f"replication from {signed.batch.sender} refused: {exc}")
    except IntegrityViolation as exc:
        return json_error(409, f"replication refused: {exc}")
    return web.json_response(reply.model_dump(mode="json"))


async def get_table(request: web.Request) -> web.Response:
    return web.json_response(request.app[RUNTIME].table.model_dump(mode="json"))


async def post_table(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    try:
        candidate = TableGuard.parse(await read_body(request, MAX_TABLE_BYTES))
        signers = await runtime.offer_table(candidate, source="push")
    except TableRejected as exc:
        return table_refused(exc, runtime.table_version)
    return web.json_response({"accepted": True, "version": runtime.table_version, "signers": sorted(signers),
                              "role": runtime.role.value, "epoch": runtime.epoch})


def _unauthorized(request: web.Request) -> web.Response | None:
    return unauthorized(request, request.app[RUNTIME].f.admin_token)


async def post_backup(request: web.Request) -> web.Response:
    """Take a backup now; answers once the vault holds the snapshot and its signed manifest."""
    if (refused := _unauthorized(request)) is not None:
        return refused
    try:
        signed = await request.app[RUNTIME].backups.backup()
    except BackupUnavailable as exc:
        return json_error(503, f"no backup taken: {exc}")
    except VaultError as exc:
        return json_error(502, f"no backup taken: {exc}")
    return web.json_response(signed.model_dump(mode="json"))


async def post_integrity(request: web.Request) -> web.Response:
    if (refused := _unauthorized(request)) is not None:
        return refused
    runtime = request.app[RUNTIME]
    result = await runtime.verify()
    return web.json_response({"ok": result.ok, "checked": result.checked, "head_hash": result.head_hash,
                              "first_bad_position": result.first_bad_position, "reason": result.reason},
                             status=200 if result.ok else 409)


async def chain_hash(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    raw = request.match_info["position"]
    position = int(raw) if re.fullmatch(r"[0-9]{1,16}", raw) else -1
    if not 0 <= position <= MAX_COUNTER:
        return json_error(400, f"position must be an integer from 0 to {MAX_COUNTER}")
    if runtime.compromised:
        return json_error(503, f"compromised: {runtime.compromised}")
    found = await runtime.chain_hash(position)
    if found is None:
        return json_error(404, f"no entry at position {position}")
    return web.json_response({"position": position, "hash": found})


async def readyz(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    if runtime.compromised:
        return json_error(503, f"compromised: {runtime.compromised}", role=runtime.role.value)
    return web.json_response({"status": "ready", "role": runtime.role.value, "epoch": runtime.epoch})


async def state(request: web.Request) -> web.Response:
    state = await request.app[RUNTIME].state()
    return web.Response(text=state.model_dump_json(), content_type="application/json")


async def metrics(request: web.Request) -> web.Response:
    return metrics_response(request.app[RUNTIME].metrics.registry)


def build_app(runtime: NodeRuntime) -> web.Application:
    """The node's aiohttp application; limits come from the topology."""
    limits = runtime.f.topology.limits
    shedders = standard_shedders(max_inflight=limits.max_inflight_requests, max_queued=limits.max_queued_requests,
                                 citizen=lambda path: path.startswith("/v1/documents"),
                                 on_shed=runtime.metrics.shed.inc)
    # Bodies are bounded per route as they are read (read_body); this is only aiohttp's backstop.
    app = web.Application(client_max_size=MAX_TABLE_BYTES, middlewares=[s.middleware for s in shedders])
    app[RUNTIME] = runtime
    app.router.add_put("/v1/documents/{doc_id}", put_document)
    app.router.add_get("/v1/documents/{doc_id}", get_document)
    app.router.add_get("/v1/documents", list_documents)
    app.router.add_post("/v1/replicate", replicate)
    app.router.add_get("/v1/routing-table", get_table)
    app.router.add_post("/v1/routing-table", post_table)
    app.router.add_post("/v1/integrity", post_integrity)
    app.router.add_post("/v1/backup", post_backup)
    app.router.add_get("/v1/chain/{position}", chain_hash)
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/state", state)
    app.router.add_get("/metrics", metrics)
    return app
