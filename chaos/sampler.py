"""Citizen availability over time, per region, while a drill runs.

A background thread writes a fresh document through every region's gateway and reads it
back, every ``interval``; each attempt is one sample (time, region, served or not). The
samples become the drill report's availability timeline, on which the fault windows of the
experiments are drawn. Bounded: one attempt per region in flight, ``MAX_SAMPLES`` kept.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass

import aiohttp

from gateway.client import GatewayClient
from infra.local.realizer import Realization

__all__ = ["AvailabilitySampler", "Sample"]

MAX_SAMPLES = 50_000
REQUEST_TIMEOUT = 2.0


@dataclass(frozen=True)
class Sample:
    at: float
    region: str
    served: bool


class AvailabilitySampler:
    """Start with ``start()``, stop with ``stop()``; ``samples`` holds what was seen."""

    def __init__(self, system: Realization, interval: float = 0.5) -> None:
        self.system = system
        self.interval = interval
        self.samples: deque[Sample] = deque(maxlen=MAX_SAMPLES)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="availability-sampler",
                                        daemon=True)

    def start(self) -> AvailabilitySampler:
        self._thread.start()
        return self

    def stop(self) -> list[Sample]:
        self._stop.set()
        self._thread.join(timeout=10 * REQUEST_TIMEOUT)
        return list(self.samples)

    async def _run(self) -> None:
        services = [s.id for s in self.system.topology.services]
        run = uuid.uuid4().hex[:8]
        n = 0
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)) as session:
            while not self._stop.is_set():
                started = time.monotonic()
                n += 1
                await asyncio.gather(*(self._one(session, region, services[n % len(services)], f"sample-{run}-{n}")
                                       for region in self.system.topology.region_names))
                await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))

    async def _one(self, session: aiohttp.ClientSession, region: str, service: str, doc_id: str) -> None:
        client = GatewayClient(session, self.system.plan.gateway(region).url)
        document = {"citizen_id": "0000000042", "kind": "national-id-card", "data": {"sample": doc_id}}
        at = time.time()
        written = await client.put(service, f"{doc_id}-{region}", document)
        served = written.ok and written.body.get("acknowledged") is True
        if served:
            read = await client.get(service, f"{doc_id}-{region}")
            served = read.ok and read.body.get("data") == document["data"]
        self.samples.append(Sample(at, region, served))
