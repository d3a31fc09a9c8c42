"""`paydar bench up`: the figures of a running national system on this machine.

Time from `up` to all-ready, total resident memory of every process, idle CPU, and write
throughput with p50/p99 latency through one gateway. Figures are printed, never asserted.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
from rich.console import Console

from paydar.gateway.client import GatewayClient
from paydar.infra.local.realizer import Realization, down, up

__all__ = ["bench_up", "percentile", "process_tree"]

TICKS = os.sysconf("SC_CLK_TCK")


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    tree, stack = [], [root]
    while stack:
        pid = stack.pop()
        tree.append(pid)
        stack.extend(children.get(pid, []))
    return tree


def _rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return 0


def _idle_cpu(pids: list[int], seconds: float) -> float:
    """CPU used by ``pids`` while idle, in percent of one core."""
    before = sum(_cpu_ticks(p) for p in pids)
    started = time.monotonic()
    time.sleep(seconds)  # measuring an interval, not synchronising
    used = (sum(_cpu_ticks(p) for p in pids) - before) / TICKS
    return 100.0 * used / (time.monotonic() - started)


async def _write_load(realization: Realization, writes: int, concurrency: int) -> tuple[float, list[float], int]:
    service = realization.topology.services[0]
    gateway = realization.plan.gateway(service.home).url
    latencies: list[float] = []
    failures = 0
    queue = iter(range(writes))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        client = GatewayClient(session, gateway)

        async def worker() -> None:
            nonlocal failures
            for n in queue:
                started = time.perf_counter()
                reply = await client.put(service.id, f"bench-{n}", {
                    "citizen_id": f"{n:010d}", "kind": "national-id-card", "data": {"n": n}})
                latencies.append(time.perf_counter() - started)
                failures += 0 if reply.ok else 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return elapsed, latencies, failures


def percentile(values: list[float], q: int) -> float:
    """The ``q``-th percentile (1-99) of ``values``, inclusive method."""
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def bench_up(*, config: Path, writes: int, concurrency: int, idle_seconds: float,
             console: Console) -> dict[str, float | int | str]:
    """Bring a fresh system up, measure it, tear it down."""
    with tempfile.TemporaryDirectory(prefix="paydar-bench-") as tmp:
        state_dir = Path(tmp)
        started = time.monotonic()
        with console.status("up"):
            realization = up(config, state_dir)
        up_seconds = time.monotonic() - started
        try:
            pids = process_tree(realization.supervisor.pid() or 0)
            rss = sum(_rss_bytes(p) for p in pids)
            with console.status(f"sampling idle CPU for {idle_seconds:.0f}s"):
                idle = _idle_cpu(pids, idle_seconds)
            with console.status(f"{writes} writes through one gateway"):
                elapsed, latencies, failures = asyncio.run(_write_load(realization, writes, concurrency))
        finally:
            down(state_dir)
    sync = realization.topology.services[0].sync_replicas
    return {
        "regions": len(realization.topology.regions), "services": len(realization.topology.services),
        "processes": len(pids), "up_to_ready_seconds": round(up_seconds, 2),
        "total_rss_mib": round(rss / 2**20, 1), "idle_cpu_percent_of_one_core": round(idle, 1),
        "sync_replicas": sync, "writes": writes, "concurrency": concurrency, "write_failures": failures,
        "writes_per_second": round(writes / elapsed, 1),
        "write_p50_ms": round(1000 * percentile(latencies, 50), 2),
        "write_p99_ms": round(1000 * percentile(latencies, 99), 2),
    }
