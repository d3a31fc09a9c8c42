"""The asynchronous probe engine: every target probed concurrently, each within its timeout.

One slow or hung target costs its own timeout and nothing else: probes run as independent
tasks behind a semaphore (bounded concurrency) on one keep-alive connection pool, and the
round ends when the last probe has answered or timed out. The same engine serves the
probers of a realization and ``paydar bench probes``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp
from yarl import URL

from paydar.model.topology import Canary
from paydar.model.wire import as_counter, parse_json
from paydar.probes.models import TargetKind, TargetObservation
from paydar.server.answers import read_up_to
from paydar.workload.contract import InstanceState

__all__ = ["ProbeEngine", "Target", "canary_failure", "gateway_observation", "node_observation", "run_canary"]

MAX_ANSWER_BYTES = 256 * 1024


@dataclass(frozen=True)
class Target:
    """One thing to probe: a node (``/state``), a gateway (``/readyz``), or an app instance
    (its health path, then its canary)."""

    id: str
    kind: TargetKind
    url: str
    health: str = "/readyz"
    canary: Canary | None = None

    @property
    def probe_url(self) -> str:
        return self.url + ("/state" if self.kind is TargetKind.NODE else self.health)


class ProbeEngine:
    """Probes targets over one bounded connection pool."""

    def __init__(self, *, timeout: float, max_concurrency: int) -> None:
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._slots = asyncio.Semaphore(max_concurrency)
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max_concurrency, limit_per_host=0, ttl_dns_cache=None),
            timeout=self.timeout, skip_auto_headers=("User-Agent",), cookie_jar=aiohttp.DummyCookieJar())

    async def close(self) -> None:
        await self.session.close()

    async def probe_all(self, targets: list[Target]) -> list[TargetObservation]:
        """One observation per target, in the order given."""
        return list(await asyncio.gather(*(self.probe(t) for t in targets)))

    async def probe(self, target: Target) -> TargetObservation:
        async with self._slots:
            started = time.monotonic()
            try:
                async with self.session.get(target.probe_url, allow_redirects=False) as response:
                    raw = await read_up_to(response, MAX_ANSWER_BYTES)
                    status = response.status
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                return TargetObservation(target=target.id, alive=False, ready=False,
                                         latency_ms=(time.monotonic() - started) * 1000,
                                         error=_reason(exc))
            latency_ms = (time.monotonic() - started) * 1000
        if target.kind is TargetKind.GATEWAY:
            return gateway_observation(target.id, status, raw, latency_ms)
        if target.kind is TargetKind.APP:
            return await self._app(target, status, started)
        return node_observation(target.id, status, raw, latency_ms)

    async def _app(self, target: Target, health: int, started: float) -> TargetObservation:
        """An app instance is ready when its health path answers 2xx *and* its canary passes: an
        instance that says it is healthy but fails the citizen's request is judged by the request."""
        error = None if 200 <= health < 300 else f"health answered {health}"
        if error is None and target.canary is not None:
            error = await self.canary(target.url, target.canary)
        return TargetObservation(target=target.id, alive=True, ready=error is None,
                                 latency_ms=(time.monotonic() - started) * 1000, error=error)

    async def canary(self, base: str, canary: Canary) -> str | None:
        """Run ``canary`` against ``base`` (an instance, or a gateway's service prefix); None
        when it passes, else what failed."""
        async with self._slots:
            return await run_canary(self.session, base, canary)

    async def get_json(self, url: str) -> dict[str, object] | None:
        """A bounded GET for the integrity and lag checks; None when there is no usable answer."""
        async with self._slots:
            try:
                async with self.session.get(url) as response:
                    if response.status != 200:
                        return None
                    answer = parse_json(await read_up_to(response, MAX_ANSWER_BYTES))
                    return answer if isinstance(answer, dict) else None
            except (TimeoutError, aiohttp.ClientError, OSError, ValueError):
                return None


async def run_canary(session: aiohttp.ClientSession, base: str, canary: Canary) -> str | None:
    """Send ``canary`` to ``base`` + its path on ``session`` (whose timeout bounds it); None when
    the answer passes, else what failed. Probers, drills and benchmarks all run it this way."""
    try:
        # A redirect is the answer, never followed: an instance must not send the canary elsewhere.
        async with session.request(canary.method, URL(base + canary.path, encoded=True), allow_redirects=False,
                                   data=canary.body.encode() if canary.body is not None else None,
                                   headers={"Content-Type": "application/json"}
                                   if canary.body is not None else None) as response:
            return canary_failure(canary, response.status, await read_up_to(response, MAX_ANSWER_BYTES))
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        return f"canary: {_reason(exc)}"


def canary_failure(canary: Canary, status: int, raw: bytes) -> str | None:
    """Why an answer fails ``canary`` (pure); None when it passes."""
    if status != canary.expect_status:
        return f"canary answered {status}, expected {canary.expect_status}"
    if canary.body_contains is not None and canary.body_contains.encode() not in raw:
        return f"canary answer lacks {canary.body_contains[:60]!r}"
    return None


def gateway_observation(target: str, status: int, raw: bytes, latency_ms: float) -> TargetObservation:
    """What a gateway's ``/readyz`` answer means: ready on 200, and the table version it claims."""
    try:
        version: int | None = as_counter(parse_json(raw)["table_version"])
    except (ValueError, KeyError, TypeError):
        version = None
    return TargetObservation(target=target, alive=True, ready=status == 200, latency_ms=latency_ms,
                             error=None if status == 200 else f"status {status}", table_version=version)


def node_observation(target: str, status: int, raw: bytes, latency_ms: float) -> TargetObservation:
    """What a node's ``/state`` answer means: ready only on 200 with a state that parses and no compromise."""
    # A node's answer is untrusted: every field is checked, and any surprise makes it "not ready"
    # (ValidationError is a ValueError), never an exception that would end the whole round.
    try:
        state = InstanceState.model_validate(parse_json(raw))
        position = state.log_position
        lag = {region: max(0, position - s.matched) for region, s in state.standbys.items()}
        compromised = bool(state.compromised)
        return TargetObservation(
            target=target, alive=True, ready=status == 200 and not compromised, latency_ms=latency_ms,
            error=(f"compromised: {str(state.compromised)[:200]}" if compromised else
                   None if status == 200 else f"status {status}"),
            role=state.role.value, epoch=state.epoch, position=position, acked=state.acked_position,
            head=state.chain_head, table_version=state.table_version, compromised=compromised, lag=lag)
    except (ValueError, KeyError, TypeError, AttributeError):
        return TargetObservation(target=target, alive=True, ready=False, latency_ms=latency_ms,
                                 error=f"status {status} with an unusable state document")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connection refused"
    return type(exc).__name__
