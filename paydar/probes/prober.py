"""One prober: a vantage point that probes every node and gateway of every region, each round.

A round probes every target concurrently (liveness and readiness with role, epoch and log
position in one request), then signs the round with the prober's key. Two slower checks run
in the background on their own schedules so they never stretch a round: the canary
transaction through each gateway (the citizen's view) and the integrity check (chain hashes
of a service's replicas compared at the same log position).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable

import aiohttp

from paydar.model.ids import ComponentId, gateway_id, node_id
from paydar.model.signing import Signer
from paydar.model.topology import NationalTopology
from paydar.model.wire import parse_json
from paydar.probes.config import ProberConfig
from paydar.probes.engine import ProbeEngine, Target
from paydar.probes.metrics import ProberMetrics
from paydar.probes.models import (
    CanaryObservation,
    IntegrityObservation,
    ObservationRound,
    SignedObservations,
    TargetKind,
    TargetObservation,
)

__all__ = ["Prober", "targets_of"]

log = logging.getLogger(__name__)
CANARY_CITIZEN = "0000000000"


def targets_of(config: ProberConfig, topology: NationalTopology) -> list[Target]:
    """Every node, app instance and gateway this prober watches, as reached from its region."""
    apps = topology.http_services
    targets = [Target(node_id(service, region), TargetKind.APP, url, health=http.health_path, canary=http.canary)
               if (http := apps.get(service)) else Target(node_id(service, region), TargetKind.NODE, url)
               for service, regions in config.nodes.items() for region, url in regions.items()]
    targets += [Target(gateway_id(region), TargetKind.GATEWAY, url) for region, url in config.gateways.items()]
    return targets


class Prober:
    """Runs rounds forever; ``latest`` is the newest signed round."""

    def __init__(self, *, config: ProberConfig, topology: NationalTopology, signer: Signer,
                 metrics: ProberMetrics, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.topology = topology
        self.signer = signer
        self.metrics = metrics
        self.settings = topology.probes
        self.targets = targets_of(config, topology)
        self.round = 0
        self.latest: SignedObservations | None = None
        self._clock = clock
        self._engine: ProbeEngine | None = None
        self._canaries: tuple[CanaryObservation, ...] = ()
        self._integrity: tuple[IntegrityObservation, ...] = ()
        self._last_obs: dict[str, TargetObservation] = {}
        self._background: dict[str, asyncio.Task[None]] = {}
        self._next: dict[str, float] = {"canary": 0.0, "integrity": 0.0}
        self._canary_turn = 0
        self._apps = topology.http_services
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._engine = ProbeEngine(timeout=self.settings.timeout, max_concurrency=self.settings.max_concurrency)
        self._task = asyncio.create_task(self._run(), name="probe-rounds")

    async def stop(self) -> None:
        for task in [self._task, *self._background.values()]:
            if task:
                task.cancel()
        for task in [self._task, *self._background.values()]:
            if task:
                with contextlib.suppress(asyncio.CancelledError, Exception):  # shutting down: whatever it raised
                    await task
        if self._engine:
            await self._engine.close()

    async def _run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.run_round()
            except Exception:  # a bug in one round must not stop the vantage point
                log.exception("probe round failed round=%d", self.round + 1)
            await asyncio.sleep(max(0.0, self.settings.interval - (time.monotonic() - started)))

    def _engine_(self) -> ProbeEngine:
        assert self._engine is not None, "prober not started"
        return self._engine

    async def run_round(self) -> SignedObservations:
        """Probe every target once, sign the round and make it the latest."""
        started_at = self._clock()
        began = time.monotonic()
        observations = await self._engine_().probe_all(self.targets)
        self._last_obs = {o.target: o for o in observations}
        self._schedule_background()
        self.round += 1
        body = ObservationRound.of(observations, prober=self.config.component, region=self.config.region,
                                   round=self.round, started_at=started_at, finished_at=self._clock(),
                                   canaries=self._canaries, integrity=self._integrity)
        self.latest = SignedObservations.seal(body, self.signer)
        self._export(observations, time.monotonic() - began)
        return self.latest

    def _export(self, observations: list[TargetObservation], seconds: float) -> None:
        vantage = self.config.region
        m = self.metrics
        for target, observation in zip(self.targets, observations, strict=True):
            m.success.labels(vantage, target.kind.value, target.id).set(1 if observation.ready else 0)
            m.duration.labels(vantage, target.kind.value).observe(observation.latency_ms / 1000)
            if observation.role == "primary":
                parsed = ComponentId.parse(target.id)
                service, region = str(parsed.service), str(parsed.region)
                for peer, lag in observation.lag.items():
                    m.replication_lag.labels(vantage, service, region, peer).set(lag)
        m.rounds.labels(vantage).inc()
        m.round_seconds.labels(vantage).set(seconds)

    def _schedule_background(self) -> None:
        now = time.monotonic()
        for name, job, every in (("canary", self._canary, self.settings.canary_interval),
                                 ("integrity", self._check_integrity, self.settings.integrity_interval)):
            running = self._background.get(name)
            if now >= self._next[name] and (running is None or running.done()):
                self._next[name] = now + every
                self._background[name] = asyncio.create_task(job(), name=name)

    # -- the citizen's view --------------------------------------------------------------

    async def _canary(self) -> None:
        # A database has no citizen's view of its own: its app's canary is the one that reaches it.
        services = [s.id for s in self.topology.registry_services] + list(self._apps)
        if not services:
            return
        service = services[self._canary_turn % len(services)]
        self._canary_turn += 1
        results = await asyncio.gather(*(self._canary_through(region, url, service)
                                         for region, url in self.config.gateways.items()))
        self._canaries = tuple(results)

    async def _canary_through(self, region: str, url: str, service: str) -> CanaryObservation:
        gateway = gateway_id(region)
        http = self._apps.get(service)
        if http is not None:  # an agency app: its own canary, through this gateway
            started = time.monotonic()
            failure = await self._engine_().canary(f"{url}/v1/services/{service}", http.canary)
            return self._canary_seen(gateway, service, failure, time.monotonic() - started)
        doc = f"canary-{self.config.region}-{region}"
        marker = f"{self.config.component}:{self.round}:{time.time_ns()}"
        document = {"citizen_id": CANARY_CITIZEN, "kind": "canary", "data": {"marker": marker}}
        session = self._engine_().session
        limit = aiohttp.ClientTimeout(total=self.topology.limits.replication_timeout + 2 * self.settings.timeout)
        started = time.monotonic()
        error = None
        try:
            path = f"{url}/v1/services/{service}/documents/{doc}"
            async with session.put(path, json=document, timeout=limit) as response:
                if response.status != 200:
                    error = f"write answered {response.status}"
            if error is None:
                async with session.get(path, timeout=limit) as response:
                    body = parse_json(await response.read()) if response.status == 200 else {}
                    if response.status != 200:
                        error = f"read answered {response.status}"
                    elif body.get("data", {}).get("marker") != marker:
                        error = "read back a different canary than was written"
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError, AttributeError) as exc:
            error = type(exc).__name__ if not isinstance(exc, asyncio.TimeoutError) else "timeout"
        return self._canary_seen(gateway, service, error, time.monotonic() - started)

    def _canary_seen(self, gateway: str, service: str, error: str | None, seconds: float) -> CanaryObservation:
        self.metrics.canary_success.labels(self.config.region, gateway).set(0 if error else 1)
        self.metrics.canary_duration.labels(self.config.region).observe(seconds)
        return CanaryObservation(gateway=gateway, service=service, ok=error is None,
                                 latency_ms=seconds * 1000, error=error)

    # -- integrity -----------------------------------------------------------------------

    async def _check_integrity(self) -> None:
        chained = {s.id for s in self.topology.registry_services}  # hash chains are the registry's
        checks = await asyncio.gather(*(self._compare(service, regions)
                                        for service, regions in self.config.nodes.items() if service in chained))
        self._integrity = tuple(c for c in checks if c is not None)

    async def _compare(self, service: str, regions: dict[str, str]) -> IntegrityObservation | None:
        positions = {r: o.position for r in regions
                     if (o := self._last_obs.get(node_id(service, r))) and o.ready and o.position is not None}
        if len(positions) < 2:
            return None
        # The lower median, not the minimum: one replica claiming position 0 (or a huge one) must
        # not move the comparison to genesis and switch the check off for everyone.
        ordered = sorted(p for p in positions.values() if p is not None)
        position = ordered[(len(ordered) - 1) // 2]
        answers = await asyncio.gather(*(self._engine_().get_json(f"{regions[r]}/v1/chain/{position}")
                                         for r in positions))
        hashes = {r: str(a["hash"]) for r, a in zip(positions, answers, strict=True) if a and "hash" in a}
        if len(hashes) < 2:
            return None
        majority, votes = Counter(hashes.values()).most_common(1)[0]
        diverged = tuple(sorted(r for r, h in hashes.items() if h != majority)) if votes * 2 > len(hashes) else ()
        self.metrics.integrity_ok.labels(self.config.region, service).set(0 if diverged else 1)
        if diverged:
            log.warning("chain hashes differ service=%s position=%d diverged=%s", service, position, diverged)
        return IntegrityObservation(service=service, position=position, hashes=hashes, diverged=diverged)
