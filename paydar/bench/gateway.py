"""`paydar bench gateway`: what the gateway adds in front of an agency's app.

A fresh system of the given topology comes up; the benchmark picks its first ``workload: http``
service and, in one run, sends the service's canary request straight to this region's instance
and through this region's gateway, in alternating rounds so that drift in the machine's load
falls on both alike. The figures are requests per second and the p50/p99 latency of each
path, and the p50/p99 the gateway adds.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import aiohttp
from rich.console import Console
from yarl import URL

from paydar.bench.up import percentile
from paydar.infra.local.realizer import Realization, down, up
from paydar.model.errors import BadInput
from paydar.model.topology import Canary

__all__ = ["bench_gateway"]

ROUNDS = 4


def bench_gateway(*, config: Path, requests: int, concurrency: int,
                  console: Console) -> dict[str, float | int | str]:
    """Bring a fresh system up, measure direct and proxied requests, tear it down."""
    with tempfile.TemporaryDirectory(prefix="paydar-bench-") as tmp:
        with console.status("up"):
            realization = up(config, Path(tmp))
        try:
            return asyncio.run(_measure(realization, requests, concurrency, console))
        finally:
            down(Path(tmp))


async def _measure(realization: Realization, requests: int, concurrency: int,
                   console: Console) -> dict[str, float | int | str]:
    services = realization.topology.http_services
    if not services:
        raise BadInput(f"{realization.layout.topology} has no workload: http service to measure; try "
                       "--config examples/http-service.yaml")
    service, http = next(iter(services.items()))
    region = realization.topology.service(service).home
    direct = realization.plan.node(service, region).url
    gateway = f"{realization.plan.gateway(region).url}/v1/services/{service}"
    latencies: dict[str, list[float]] = {"direct": [], "gateway": []}
    seconds = dict.fromkeys(latencies, 0.0)
    failures = dict.fromkeys(latencies, 0)
    per_round = max(1, requests // ROUNDS)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        for base in (direct, gateway):  # warm both paths' connections before measuring
            await _load(session, base, http.canary, min(per_round, 100), concurrency)
        for n in range(ROUNDS):
            for path, base in (("direct", direct), ("gateway", gateway)):
                with console.status(f"round {n + 1}/{ROUNDS}: {per_round} requests {path}"):
                    took, times, failed = await _load(session, base, http.canary, per_round, concurrency)
                seconds[path] += took
                latencies[path] += times
                failures[path] += failed
    figures: dict[str, float | int | str] = {"service": service, "region": region, "requests_per_path":
                                            per_round * ROUNDS, "concurrency": concurrency}
    for path, times in latencies.items():
        figures[f"{path}_requests_per_second"] = round(len(times) / seconds[path], 1)
        figures[f"{path}_p50_ms"] = round(1000 * percentile(times, 50), 3)
        figures[f"{path}_p99_ms"] = round(1000 * percentile(times, 99), 3)
        figures[f"{path}_failures"] = failures[path]
    figures["added_p50_ms"] = round(float(figures["gateway_p50_ms"]) - float(figures["direct_p50_ms"]), 3)
    figures["added_p99_ms"] = round(float(figures["gateway_p99_ms"]) - float(figures["direct_p99_ms"]), 3)
    return figures


async def _load(session: aiohttp.ClientSession, base: str, canary: Canary, count: int,
                concurrency: int) -> tuple[float, list[float], int]:
    """``count`` canary requests with ``concurrency`` in flight: wall seconds, latencies, failures."""
    url = URL(base + canary.path, encoded=True)
    body = canary.body.encode() if canary.body is not None else None
    left = iter(range(count))
    latencies: list[float] = []
    failures = 0

    async def client() -> None:
        nonlocal failures
        for _ in left:
            started = time.perf_counter()
            try:
                async with session.request(canary.method, url, data=body,
                                           timeout=aiohttp.ClientTimeout(total=10)) as response:
                    await response.read()
                    ok = response.status == canary.expect_status
            except (TimeoutError, aiohttp.ClientError):
                ok = False
            latencies.append(time.perf_counter() - started)
            failures += 0 if ok else 1

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies, failures
