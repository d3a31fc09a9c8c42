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

from paydar.model.wire import as_counter, parse_json
from paydar.probes.models import TargetKind, TargetObservation
from paydar.workload.contract import InstanceState

__all__ = ["ProbeEngine", "Target", "gateway_observation", "node_observation"]

MAX_ANSWER_BYTES = 256 * 1024


@dataclass(frozen=True)
class Target:
    """One thing to probe: a node (``/state``) or a gateway (``/readyz``)."""

    id: str
    kind: TargetKind
    url: str

    @property
    def probe_url(self) -> str:
        return self.url + ("/state" if self.kind is TargetKind.NODE else "/readyz")


class ProbeEngine:
    """Probes targets over one bounded connection pool."""

    def __init__(self, *, timeout: float, max_concurrency: int) -> None:
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._slots = asyncio.Semaphore(max_concurrency)
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max_concurrency, limit_per_host=0, ttl_dns_cache=None),
            timeout=self.timeout, skip_auto_headers=("User-Agent",))

    async def close(self) -> None:
        await self.session.close()

    async def probe_all(self, targets: list[Target]) -> list[TargetObservation]:
        """One observation per target, in the order given."""
        return list(await asyncio.gather(*(self.probe(t) for t in targets)))

    async def probe(self, target: Target) -> TargetObservation:
        async with self._slots:
            started = time.monotonic()
            try:
                async with self.session.get(target.probe_url) as response:
                    raw = await response.content.read(MAX_ANSWER_BYTES)
                    status = response.status
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                return TargetObservation(target=target.id, alive=False, ready=False,
                                         latency_ms=(time.monotonic() - started) * 1000,
                                         error=_reason(exc))
            latency_ms = (time.monotonic() - started) * 1000
        if target.kind is TargetKind.GATEWAY:
            return gateway_observation(target.id, status, raw, latency_ms)
        return node_observation(target.id, status, raw, latency_ms)

    async def get_json(self, url: str) -> dict[str, object] | None:
        """A bounded GET for the integrity and lag checks; None when there is no usable answer."""
        async with self._slots:
            try:
                async with self.session.get(url) as response:
                    if response.status != 200:
                        return None
                    answer = parse_json(await response.content.read(MAX_ANSWER_BYTES))
                    return answer if isinstance(answer, dict) else None
            except (TimeoutError, aiohttp.ClientError, OSError, ValueError):
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
