"""How a gateway stands in front of an agency's own web app (``workload: http``).

Any method and any path under ``/v1/services/{id}/`` goes to one of the service's instances,
with the path and query string byte for byte (``/v1/services/{id}/a/b?c`` is ``/a/b?c`` at the
instance) and the body byte for byte. Which instances may serve is the signed routing table's
word, and the table follows the probers' majority judgement of each instance's health and
canary, so one lying prober can neither drain nor restore an instance. Active-active
services go to this region's instance first, then the others through the links;
active-passive services go to the table's primary instance only.

Retries: an attempt that never connected sent nothing, so any method moves on to the next
instance. After that, only idempotent methods (RFC 9110: GET, HEAD, OPTIONS, TRACE, PUT,
DELETE) are retried, on a timeout, a broken answer or a 502/503/504. A POST or PATCH whose
body may have been applied is never sent twice: the citizen gets 504 or 502 saying so.

The gateway is the edge. Hop-by-hop headers are dropped both ways; the citizen's own
``Forwarded``/``X-Forwarded-*`` headers and every ``X-Paydar-*`` header are replaced by what
this gateway saw, so an app may trust them; the answer names the instance's region in
``X-Paydar-Served-By`` (an app's own claim to that header is dropped).

Bounds are the service's own (``http.limits``): body bytes as read, the instance's answer
bytes, the time one instance has, and the requests in flight per service at this gateway,
beyond which requests are shed with 503 + Retry-After without touching other services.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from paydar.gateway.metrics import GatewayMetrics
from paydar.gateway.suspects import PROBATION_TIMEOUT_SECONDS, Suspects
from paydar.model.routing import ServiceRoute, SignedTable
from paydar.model.topology import HttpWorkload, InstanceMode, NationalTopology
from paydar.server.answers import read_up_to
from paydar.server.web import json_error, read_body

__all__ = ["HOP_BY_HOP", "IDEMPOTENT", "SERVED_BY", "Proxy", "candidates", "forwarded_headers", "relayed_headers"]

log = logging.getLogger(__name__)
SERVED_BY = "X-Paydar-Served-By"
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
                        "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"})
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
RETRIED_STATUSES = frozenset({502, 503, 504})
_REPLACED = frozenset({"host", "content-length", "forwarded", "x-real-ip", "x-client-ip", "true-client-ip",
                       "expect"})
"""Replaced by what the gateway saw (or, for ``Expect``, moot: the body is read before it is sent)."""
_REPLACED_PREFIXES = ("x-paydar-", "x-forwarded-")
_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
"""Characters no header may carry (aiohttp refuses to write them): such a header is dropped."""
MAX_HEADERS = 200
"""aiohttp already refuses requests with more header bytes than 8 KiB per line; this bounds the count."""


def _dropped(headers: Iterable[tuple[str, str]]) -> frozenset[str]:
    """Hop-by-hop names, including those a ``Connection`` header lists."""
    named = {part.strip().lower() for key, value in headers if key.lower() == "connection"
             for part in value.split(",")}
    return HOP_BY_HOP | named


def forwarded_headers(headers: Iterable[tuple[str, str]], *, peer: str, host: str, scheme: str,
                      prefix: str) -> CIMultiDict[str]:
    """The headers an instance gets: the citizen's, less hop-by-hop and forwarding ones, plus
    what this gateway saw (pure)."""
    items = list(headers)[:MAX_HEADERS]
    dropped = _dropped(items)
    out: CIMultiDict[str] = CIMultiDict(
        (k, v) for k, v in items
        if k.lower() not in dropped and k.lower() not in _REPLACED and not k.lower().startswith(_REPLACED_PREFIXES))
    # A Host of anything but host characters could smuggle a second "for=" into Forwarded.
    host = host if host and set(host) <= _TOKEN_CHARS else "invalid"
    out["Forwarded"] = f'for="{peer}";host="{host}";proto={scheme}'
    out["X-Forwarded-For"] = peer
    out["X-Forwarded-Host"] = host
    out["X-Forwarded-Proto"] = scheme
    out["X-Forwarded-Prefix"] = prefix
    return out


def relayed_headers(headers: Iterable[tuple[str, str]], region: str) -> CIMultiDict[str]:
    """The headers a citizen gets from an instance's answer: less hop-by-hop ones and the
    length (the gateway sets it), with the instance's region (pure)."""
    items = list(headers)[:MAX_HEADERS]
    dropped = _dropped(items)
    out: CIMultiDict[str] = CIMultiDict(
        (k, v) for k, v in items
        if k.lower() not in dropped and k.lower() != "content-length" and not k.lower().startswith("x-paydar-")
        and not _CONTROL.search(k + v))
    out[SERVED_BY] = region
    return out


def candidates(route: ServiceRoute, mode: InstanceMode, local: str, suspect: Callable[[str], bool]) -> list[str]:
    """The instances to try, in order (pure): the table's primary alone when active-passive;
    otherwise this region's first, then the table's order; suspects last either way."""
    if mode is InstanceMode.ACTIVE_PASSIVE:
        order = [route.primary] if route.primary else []
    else:
        order = sorted(route.regions, key=lambda region: region != local)
    return sorted(order, key=suspect)


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: CIMultiDict[str]
    body: bytes


class _TooLarge(Exception):
    pass


class Proxy:
    """The gateway's side of every http service."""

    def __init__(self, *, topology: NationalTopology, region: str, instances: Mapping[str, Mapping[str, str]],
                 table: Callable[[], SignedTable], metrics: GatewayMetrics) -> None:
        self.region = region
        self.services = topology.http_services
        self.instances = {sid: dict(instances[sid]) for sid in self.services}
        self._table = table
        self.metrics = metrics
        self.inflight = dict.fromkeys(self.services, 0)
        self.suspects = Suspects()
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        # Bytes exactly as the app sent them (no decompression), and no header the citizen did not send.
        self.session = aiohttp.ClientSession(
            # No pool-wide limit: each service's own bound caps its connections, so one service
            # can never wait on another's.
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=5.0), auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),  # one citizen's cookies are never another's
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"))

    async def stop(self) -> None:
        if self.session:
            await self.session.close()

    def serves(self, service: str) -> bool:
        return service in self.services

    async def handle(self, request: web.Request, service: str) -> web.StreamResponse:
        """Proxy one citizen request for http service ``service``."""
        http = self.services[service]
        if self.inflight[service] >= http.limits.max_concurrency:
            self.metrics.shed.inc()
            return web.json_response({"error": f"service {service} has {http.limits.max_concurrency} requests in "
                                               f"flight at gateway {self.region}, its bound; retry shortly"},
                                     status=503, headers={"Retry-After": "1"})
        self.inflight[service] += 1
        gauge = self.metrics.app_inflight.labels(region=self.region, service=service)
        gauge.inc()
        try:
            return await self._handle(request, service, http)
        finally:
            self.inflight[service] -= 1
            gauge.dec()

    async def _handle(self, request: web.Request, service: str, http: HttpWorkload) -> web.StreamResponse:
        body = await read_body(request, http.limits.max_body_bytes) if request.body_exists else None
        # rel_url, not raw_path: an absolute-form target (GET http://host/v1/...) has its path here too.
        target = request.rel_url.raw_path + (f"?{request.rel_url.raw_query_string}"
                                             if request.rel_url.raw_query_string else "")
        parts = target.split("/", 4)  # ['', 'v1', 'services', <id as sent>, <path and query>]
        tail = "/" + (parts[4] if len(parts) > 4 else "")
        peer = request.remote or "unknown"
        headers = forwarded_headers(request.headers.items(), peer=peer, host=request.host, scheme=request.scheme,
                                    prefix=f"/v1/services/{service}")
        if body is not None:
            headers.popall("Content-Encoding", None)  # aiohttp decoded the body as it was read
        route = self._table().table.route(service)
        order = candidates(route, http.mode, self.region, lambda r: self.suspects.suspect(self.instances[service][r]))
        if not order:
            return web.json_response({"error": f"service {service} has no active instance in routing table "
                                               f"v{self._table().table.version}; retry shortly"},
                                     status=503, headers={"Retry-After": "1"})
        retry = request.method in IDEMPOTENT
        failures: list[str] = []
        fallback: tuple[_Answer, str] | None = None
        for region in order:
            answer, why, sent = await self._attempt(request.method, self.instances[service][region], tail, headers,
                                                    body, http, region)
            if answer is not None and not 200 <= answer.status <= 599:
                why, answer = f"answered status {answer.status}, which no gateway relays", None
            if answer is not None and (answer.status not in RETRIED_STATUSES or not retry):
                return web.Response(status=answer.status, body=answer.body,
                                    headers=relayed_headers(answer.headers.items(), region))
            if answer is not None:
                fallback = fallback or (answer, region)
                failures.append(f"{region}: answered {answer.status}")
                continue
            failures.append(f"{region}: {why}")
            if sent and not retry:
                status = 504 if why == "timeout" else 502
                return json_error(status, f"the instance of service {service} in {region} did not answer "
                                          f"({why}); the {request.method} may have been applied there, so it was "
                                          "not sent again: check before retrying")
        if fallback is not None:
            answer, region = fallback
            return web.Response(status=answer.status, body=answer.body,
                                headers=relayed_headers(answer.headers.items(), region))
        return web.json_response({"error": f"no instance of service {service} answered from {self.region}: "
                                           + "; ".join(failures) + "; retry shortly"},
                                 status=503, headers={"Retry-After": "1"})

    async def _attempt(self, method: str, base: str, tail: str, headers: CIMultiDict[str], body: bytes | None,
                       http: HttpWorkload, region: str) -> tuple[_Answer | None, str, bool]:
        """One instance's answer, or why there is none and whether the request may have reached it."""
        assert self.session is not None, "proxy not started"
        seconds = min(http.limits.timeout, PROBATION_TIMEOUT_SECONDS) if self.suspects.on_probation(base) \
            else http.limits.timeout
        started = time.monotonic()
        try:
            async with self.session.request(method, URL(base + tail, encoded=True), headers=headers, data=body,
                                            allow_redirects=False,
                                            timeout=aiohttp.ClientTimeout(total=seconds)) as response:
                payload = await read_up_to(response, http.limits.max_response_bytes + 1)
                if len(payload) > http.limits.max_response_bytes:
                    raise _TooLarge
                self.suspects.answered(base)
                return _Answer(response.status, CIMultiDict(response.headers), payload), "", True
        except aiohttp.ClientConnectorError:
            return None, "connection refused", False
        except _TooLarge:
            return None, f"answer larger than {http.limits.max_response_bytes} bytes", True
        except TimeoutError:
            self.suspects.timed_out(base)
            return None, "timeout", True
        except (aiohttp.ClientError, OSError) as exc:
            return None, type(exc).__name__, True
        finally:
            self.metrics.upstream_seconds.labels(region=self.region, target_region=region).observe(
                time.monotonic() - started)
