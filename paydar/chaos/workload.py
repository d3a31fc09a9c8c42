"""Citizens as tests and benchmarks use them: writers, bursts, and reading everything back.

:class:`Workload` runs concurrent writers while a fault is injected (the Jepsen-style
history): each client writes fresh documents through its gateway in a loop and records in an
:class:`~paydar.chaos.invariants.AckLedger` whether each write was acknowledged. The loop runs on its
own thread and event loop so a test or benchmark can inject faults from the main thread,
then stop the writers and check the history with :func:`paydar.chaos.invariants.check_acknowledged`
over what :func:`read_back` returns. :func:`write_burst` writes a fixed number at once.
(The drill's steady load is Locust: :mod:`paydar.chaos.load`.)
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from paydar.chaos.invariants import AckLedger
from paydar.gateway.client import GatewayClient
from paydar.infra.local.realizer import Realization
from paydar.model.topology import Ledger
from paydar.probes.engine import run_canary

__all__ = ["Workload", "read_back", "write_burst"]

STOP_TIMEOUT = 30.0


@dataclass
class Workload:
    """``clients`` writers per gateway URL, spread round-robin over ``services``; an app service
    in ``ledgers`` is written through its ledger (a fresh record per write)."""

    gateways: dict[str, str]
    services: Sequence[str]
    ledgers: Mapping[str, Ledger] = field(default_factory=dict)
    clients: int = 2
    tag: str = "w"
    ledger: AckLedger = field(default_factory=AckLedger)
    acks: list[tuple[float, float, str, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Workload:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="workload", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> AckLedger:
        """Stop every writer (bounded by each request's timeout) and return the history."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT)
            if self._thread.is_alive():
                raise TimeoutError(f"workload writers did not stop within {STOP_TIMEOUT:.0f}s")
        return self.ledger

    @property
    def acknowledged(self) -> int:
        """Writes acknowledged so far; safe to read while the writers run (unlike the ledger)."""
        return len(self.acks)

    def acked_after(self, moment: float, service: str | None = None) -> float | None:
        """When the first write *sent* after ``moment`` was acknowledged (optionally of one service).

        Writes in flight at ``moment`` do not count: their acknowledgement says nothing about
        recovery from what happened then.
        """
        times = [acked for sent, acked, s, _ in self.acks[:] if sent > moment and service in (None, s)]
        return min(times) if times else None

    async def _run(self) -> None:
        serial = itertools.count()
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await asyncio.gather(*(self._client(session, region, url, serial)
                                   for region, url in self.gateways.items() for _ in range(self.clients)))

    async def _client(self, session: aiohttp.ClientSession, region: str, url: str,
                      serial: itertools.count[int]) -> None:
        client = GatewayClient(session, url)
        while not self._stop.is_set():
            n = next(serial)
            service = self.services[n % len(self.services)]
            doc_id = f"{self.tag}-{region}-{n}"
            sent = time.monotonic()
            if (ledger := self.ledgers.get(service)) is not None:
                document: dict[str, Any] = {"ledger": doc_id}
                failed = await run_canary(session, f"{url}/v1/services/{service}", ledger.write.canary(doc_id))
                acknowledged = failed is None
            else:
                document = {"citizen_id": f"{n % 10**10:010d}", "kind": "national-id-card",
                            "data": {"workload": self.tag, "serial": n}}
                reply = await client.put(service, doc_id, document)
                acknowledged = reply.ok and reply.body.get("acknowledged") is True
            self.ledger.record(service, doc_id, document, acknowledged)
            if acknowledged:
                self.acks.append((sent, time.monotonic(), service, doc_id))
            else:
                await asyncio.sleep(0.02)  # back off briefly while the service fails over


def _document(run: str, n: int) -> dict[str, Any]:
    return {"citizen_id": f"{(n * 7919) % 10**10:010d}", "kind": "national-id-card",
            "data": {"burst": run, "serial": n}}


async def write_burst(realization: Realization, ledger: AckLedger, per_gateway: int, tag: str,
                      concurrency: int = 16) -> None:
    """Write ``per_gateway`` fresh documents through every gateway, across all services."""
    services = [s.id for s in realization.topology.registry_services]
    limit = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        async def one(region: str, n: int) -> None:
            client = GatewayClient(session, realization.plan.gateway(region).url)
            service, doc_id = services[n % len(services)], f"{tag}-{region}-{n}"
            document = _document(tag, n)
            async with limit:
                reply = await client.put(service, doc_id, document)
            ledger.record(service, doc_id, document, reply.ok and reply.body.get("acknowledged") is True)

        await asyncio.gather(*(one(r, n) for r in realization.topology.region_names for n in range(per_gateway)))


READ_ATTEMPTS = 3
RETRY_SECONDS = 1.0


async def read_back(realization: Realization, ledger: AckLedger, region: str,
                    concurrency: int = 16) -> dict[tuple[str, str], dict[str, Any] | None]:
    """Read every acknowledged document through one region's gateway; an app's record by its
    ledger's read request (found: ``{"ledger": id}``, as the record was logged)."""
    limit = asyncio.Semaphore(concurrency)
    ledgers = {sid: http.ledger for sid, http in realization.topology.http_services.items() if http.ledger}
    gateway = realization.plan.gateway(region).url
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        client = GatewayClient(session, gateway)

        async def one(service: str, doc_id: str) -> tuple[tuple[str, str], dict[str, Any] | None]:
            async with limit:
                if (ledger := ledgers.get(service)) is not None:
                    # An app may answer "retry" (its region's copy is behind, its route busy): a record
                    # is lost only when no attempt finds it, and a lost one is never found by retrying.
                    for attempt in range(READ_ATTEMPTS):
                        failed = await run_canary(session, f"{gateway}/v1/services/{service}",
                                                  ledger.read.canary(doc_id))
                        if not failed:
                            return (service, doc_id), {"ledger": doc_id}
                        if attempt + 1 < READ_ATTEMPTS:
                            await asyncio.sleep(RETRY_SECONDS)
                    return (service, doc_id), None
                reply = await client.get(service, doc_id)
            return (service, doc_id), (reply.body if reply.ok else None)

        pairs = await asyncio.gather(*(one(s, d) for s, d, _ in ledger.acknowledged()))
    return dict(pairs)
