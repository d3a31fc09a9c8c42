"""How a gateway reaches a service: primary first, replicas for reads, other regions last.

Requests go to the service's primary from the signed table this gateway holds. Reads fall
back to a healthy replica (this region's first) and are then marked stale by the node. When
no upstream answers from here, idempotent requests (GET, PUT) are retried once through the
gateways of the other regions, which may still reach the primary over their own links.
A replica's "not found" is not trusted while another path may reach the primary: a replica
can lag, and a citizen who just wrote a document must not be told it does not exist.

Links and ports are not trusted: every document (and every acknowledgement) is served only
after its node's signed receipt verifies (:mod:`paydar.node.receipts`), and the answer citizens get
is rebuilt from the verified entry. An answer whose proof does not hold is dropped as if the
upstream had not answered, and the next path is tried.

An upstream that just timed out is tried last, then with a short timeout
(:mod:`paydar.gateway.suspects`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

import aiohttp

from paydar.gateway.config import GatewayConfig
from paydar.gateway.metrics import GatewayMetrics
from paydar.gateway.proxy import Proxy
from paydar.gateway.suspects import PROBATION_TIMEOUT_SECONDS, Suspects
from paydar.model.errors import SignatureError, TableRejected
from paydar.model.ids import ComponentId, node_id
from paydar.model.routing import SignedTable
from paydar.model.signing import canonical_json
from paydar.model.wire import parse_json
from paydar.node.models import DocumentIn
from paydar.node.receipts import NONCE_HEADER, Proof, check_proof, render
from paydar.server.component import Foundation

__all__ = ["HOP_HEADER", "Router", "Upstream"]

log = logging.getLogger(__name__)
HOP_HEADER = "X-Paydar-Hop"
PROBATION_TIMEOUT = aiohttp.ClientTimeout(total=PROBATION_TIMEOUT_SECONDS)


@dataclass(frozen=True)
class Upstream:
    """A response worth returning to the citizen."""

    status: int
    body: bytes
    region: str
    retry_after: str | None = None


class Router:
    """Routes citizen requests for one gateway."""

    def __init__(self, *, config: GatewayConfig, foundation: Foundation, metrics: GatewayMetrics) -> None:
        self.config = config
        self.f = foundation
        self.metrics = metrics
        self.region = config.region
        timeout = foundation.topology.limits.replication_timeout
        self._timeout = aiohttp.ClientTimeout(total=timeout + 1.5, connect=1.0)
        self.session: aiohttp.ClientSession | None = None
        self.suspects = Suspects()
        self.apps = Proxy(topology=foundation.topology, region=config.region, instances=config.nodes,
                          table=lambda: self.table, metrics=metrics)
        """The http services' side (:mod:`paydar.gateway.proxy`)."""

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256), timeout=self._timeout)
        await self.apps.start()
        self.metrics.table_version.set(self.table.table.version)

    async def stop(self) -> None:
        if self.session:
            await self.session.close()
        await self.apps.stop()

    @property
    def table(self) -> SignedTable:
        assert self.f.guard.current is not None
        return self.f.guard.current

    def offer_table(self, signed: SignedTable, source: str) -> frozenset[str]:
        """Adopt a newer, properly signed table; raise ``TableRejected`` with the reason otherwise."""
        signers = self.f.adopt(signed, source=source, on_refused=lambda reason: self.metrics.tables_refused.labels(
            region=self.region, reason=reason).inc())
        self.metrics.table_version.set(signed.table.version)
        return signers

    async def forward(self, method: str, service: str, path: str, query: str, body: bytes | None,
                      hop: int, nonce: str) -> Upstream | None:
        """The first usable upstream answer, or None when no region could answer."""
        lagging: Upstream | None = None  # a replica's 404: the answer only if nothing better answers
        deferred: list[tuple[str, str]] = []  # suspect upstreams: the last resort
        for _ in range(2):  # a second pass only after learning a newer table from a node
            route = self.table.table.route(service)
            candidates = [route.primary] if route.primary else []
            if method == "GET":
                replicas = sorted(route.standbys, key=lambda r: r != self.region)
                candidates += [r for r in replicas if r not in candidates]
            learned = False
            for region in candidates:
                base = self.config.nodes[service][region]
                if self.suspects.suspect(base):
                    deferred.append((region, base))
                    continue
                answer = self._proven(await self._call(method, base, path, query, body, region, nonce), method,
                                      service, path, query, body, {node_id(service, region)}, nonce)
                if answer is None or (answer.status >= 500 and method == "GET"):
                    continue
                if answer.status == 404 and method == "GET" and region != route.primary:
                    lagging = lagging or answer
                    continue
                if answer.status == 409 and method == "PUT" and self._learn_table(answer.body, region):
                    learned = True
                    break
                return answer
            if not learned:
                break
        if hop == 0:
            relayed = await self._via_other_regions(method, service, path, query, body, nonce)
            if relayed is not None:
                return relayed
        for region, base in dict.fromkeys(deferred):
            answer = self._proven(await self._call(method, base, path, query, body, region, nonce), method, service,
                                  path, query, body, {node_id(service, region)}, nonce)
            if answer is not None and (answer.status < 500 or method != "GET"):
                return answer
        return lagging

    def _learn_table(self, body: bytes, region: str) -> bool:
        """A node refused as not-primary and sent its table: adopt it if it is newer and valid."""
        try:
            raw = parse_json(body).get("table")
            if raw is None:
                return False
            self.offer_table(SignedTable.model_validate(raw), source=f"node in {region}")
            return True
        except (TableRejected, ValueError, AttributeError):
            return False

    async def _via_other_regions(self, method: str, service: str, path: str, query: str,
                                 body: bytes | None, nonce: str) -> Upstream | None:
        citizen_path = f"/v1/services/{service}{path.removeprefix('/v1')}"  # the node's path, as a gateway's
        replicas = {node_id(service, r) for r in self.config.nodes[service]}
        for region, url in sorted(self.config.gateways.items(), key=lambda item: self.suspects.suspect(item[1])):
            answer = self._proven(await self._call(method, url, citizen_path, query, body, region, nonce,
                                                   headers={HOP_HEADER: "1"}), method, service, path, query, body,
                                  replicas, nonce)
            if answer is not None and answer.status < 500:
                log.debug("served through another region service=%s via=%s", service, region)
                return answer
        return None

    def _proven(self, answer: Upstream | None, method: str, service: str, path: str, query: str,
                body: bytes | None, nodes: set[str], nonce: str) -> Upstream | None:
        """``answer`` rebuilt from its verified proofs, or None when a 200 does not prove itself."""
        if answer is None or answer.status != 200:
            return answer
        try:
            rendered = self._verify(parse_json(answer.body), method, service, path, query, body, nodes, nonce)
        except (SignatureError, ValueError, KeyError, TypeError, AttributeError) as exc:
            self.metrics.forged.labels(region=self.region, target_region=answer.region).inc()
            log.warning("answer without a valid proof dropped service=%s from=%s: %s", service, answer.region, exc)
            return None
        return Upstream(200, json.dumps(rendered).encode(), answer.region, answer.retry_after)

    def _verify(self, payload: dict[str, Any], method: str, service: str, path: str, query: str,
                body: bytes | None, nodes: set[str], nonce: str) -> dict[str, Any]:
        trust = self.f.trust
        if path == "/v1/documents":  # a citizen's list: every document proven, and the citizen's own
            # The first value, as the node reads it (aiohttp): a repeated parameter must not split them.
            citizen = next((v for k, v in urllib.parse.parse_qsl(query) if k == "citizen_id"), None)
            documents = []
            for item in payload["documents"]:
                proof = Proof.model_validate(item["proof"])
                entry = check_proof(proof, service=service, nodes=nodes, doc_id=None, nonce=nonce, trust=trust)
                if parse_json(entry.body).get("citizen_id") != citizen:
                    raise SignatureError(f"listed document {entry.doc_id!r} is another citizen's")
                documents.append(render(proof, str(ComponentId.parse(proof.node).region)))
            return {"documents": documents, "stale": bool(payload.get("stale"))}
        doc_id = path.rsplit("/", 1)[1]
        proof = Proof.model_validate(payload["proof"])
        entry = check_proof(proof, service=service, nodes=nodes, doc_id=doc_id, nonce=nonce, trust=trust)
        if method == "PUT":
            sent = canonical_json(DocumentIn.model_validate_json(body or b"").model_dump(mode="json")).decode()
            if not proof.acknowledged or entry.body != sent:
                raise SignatureError("acknowledgement is not for the document that was sent")
        return render(proof, str(ComponentId.parse(proof.node).region))

    async def _call(self, method: str, base: str, path: str, query: str, body: bytes | None, region: str,
                    nonce: str, headers: dict[str, str] | None = None) -> Upstream | None:
        assert self.session is not None
        started = time.monotonic()
        sent = {"Content-Type": "application/json", NONCE_HEADER: nonce, **(headers or {})}
        url = base + path
        on_probation = self.suspects.on_probation(base)
        try:
            async with self.session.request(method, f"{url}?{query}" if query else url, data=body, headers=sent,
                                            timeout=PROBATION_TIMEOUT if on_probation else self._timeout) as response:
                payload = await response.read()
                self.suspects.answered(base)
                return Upstream(response.status, payload, region, response.headers.get("Retry-After"))
        except (TimeoutError, aiohttp.ClientError) as exc:
            if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
                self.suspects.timed_out(base)
            # Per request, so DEBUG: during an outage this fires for every citizen request;
            # paydar_gateway_upstream_seconds and the probers report the outage itself.
            log.debug("upstream unreachable region=%s error=%s", region, type(exc).__name__)
            return None
        finally:
            self.metrics.upstream_seconds.labels(region=self.region, target_region=region).observe(
                time.monotonic() - started)
