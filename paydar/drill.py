"""`paydar drill` (for now): up, citizen traffic, a manual then an automatic failover, ransomware on
a standby and its restore from the vault, a check, down.

The later chaos issue replaces the body with the Chaos Toolkit catalog and the N-1 matrix;
the shape stays: bring the system up, act on it from outside through public interfaces,
judge it by citizen-visible invariants, tear down, report.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from rich.console import Console
from rich.table import Table

from chaos.catalog import experiments, run_catalog
from chaos.invariants import AckLedger, check_acknowledged
from chaos.sampler import AvailabilitySampler, Sample
from failover.manual import current_table, fetch_json, promote
from gateway.client import GatewayClient
from infra.errors import PaydarError
from infra.files import write_json_atomic
from infra.local.realizer import Realization, UpFailed, down, load_realization, up
from paydar.backups import backup_now
from paydar.report_html import render_html
from paydar.restore import restore

__all__ = ["DrillReport", "run_drill", "write_burst", "read_back"]

AUTO_FAILOVER_TIMEOUT = 30.0
RANSOMWARE_DETECTION_MARGIN = 10.0


@dataclass
class DrillReport:
    """Figures of one drill; ``passed`` only when every invariant held."""

    state_dir: str
    up_seconds: float = 0.0
    writes_attempted: int = 0
    writes_acknowledged: int = 0
    reads_checked: int = 0
    failover: str = ""
    failover_seconds: float = 0.0
    auto_failover: str = ""
    auto_failover_seconds: float = 0.0
    ransomware: str = ""
    ransomware_detected_seconds: float = 0.0
    restore_seconds: float = 0.0
    lost: int = 0
    corrupted: int = 0
    experiments: list[dict[str, Any]] = field(default_factory=list)
    timeline: dict[str, list[list[float]]] = field(default_factory=dict)
    """Per region: [seconds since timeline_origin, share of sampled requests served in that second]."""
    timeline_origin: float = 0.0
    violations: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def passed(self) -> bool:
        return (not self.error and not self.violations and self.writes_acknowledged > 0
                and all(e["held"] for e in self.experiments))

    @property
    def failure(self) -> str:
        """Why the drill failed, in one line ("" when it passed)."""
        if self.passed:
            return ""
        broke = [e["name"] for e in self.experiments if not e["held"]]
        return self.error or "; ".join(self.violations[:5]) or (
            f"experiments broke: {', '.join(broke)}" if broke else "no write was acknowledged")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"passed": self.passed, "verdict_reason": self.failure}

    def render(self, console: Console) -> None:
        table = Table(title="paydar drill", show_header=False)
        table.add_column("figure")
        table.add_column("value")
        for key in ("state_dir", "up_seconds", "writes_attempted", "writes_acknowledged", "reads_checked",
                    "failover", "failover_seconds", "auto_failover", "auto_failover_seconds", "ransomware",
                    "ransomware_detected_seconds", "restore_seconds", "lost", "corrupted"):
            value = getattr(self, key)
            table.add_row(key.replace("_", " "), f"{value:.2f}" if isinstance(value, float) else str(value))
        for e in self.experiments:
            recovery = f", served again after {e['recovery_seconds']:.2f}s" if e["recovery_seconds"] is not None else ""
            if e.get("availability_during_fault") is not None:
                recovery += f", {e['availability_during_fault']:.1%} served elsewhere during the fault"
            when = "before" if not e["steady_state_before"] else "after"
            unmet = f": {', '.join(e['unmet'])}" if e["unmet"] else ""
            why = "; ".join(e["failed_activities"] or [f"steady state not met {when} the attack{unmet}"])
            outcome = "[green]held[/]" if e["held"] else f"[red]BROKE[/] ({e['status']}; {why})"
            table.add_row(f"experiment {e['name']}", f"{outcome} in {e['seconds']:.1f}s{recovery}")
        verdict = (f"[bold green]PASSED[/]: every acknowledged write readable through every gateway; "
                   f"{len(self.experiments)} experiments held" if self.passed
                   else f"[bold red]FAILED[/]: {self.failure}")
        table.add_row("verdict", verdict)
        console.print(table)


def _document(run: str, n: int) -> dict[str, Any]:
    return {"citizen_id": f"{(n * 7919) % 10**10:010d}", "kind": "national-id-card",
            "data": {"drill": run, "serial": n}}


async def write_burst(realization: Realization, ledger: AckLedger, per_gateway: int, tag: str,
                      concurrency: int = 16) -> None:
    """Write ``per_gateway`` fresh documents through every gateway, across all services."""
    services = [s.id for s in realization.topology.services]
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


async def read_back(realization: Realization, ledger: AckLedger, region: str,
                    concurrency: int = 16) -> dict[tuple[str, str], dict[str, Any] | None]:
    """Read every acknowledged document through one region's gateway."""
    limit = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        client = GatewayClient(session, realization.plan.gateway(region).url)

        async def one(service: str, doc_id: str) -> tuple[tuple[str, str], dict[str, Any] | None]:
            async with limit:
                reply = await client.get(service, doc_id)
            return (service, doc_id), (reply.body if reply.ok else None)

        pairs = await asyncio.gather(*(one(s, d) for s, d, _ in ledger.acknowledged()))
    return dict(pairs)


def run_drill(*, config: Path, state_dir: Path | None, writes_per_gateway: int, keep: bool,
              console: Console, attach: bool = False) -> DrillReport:
    """Run the drill end to end; a system it started is torn down unless ``keep``.

    With ``attach`` it drills the system already running from ``state_dir`` and leaves it running.
    """
    if attach and state_dir is None:
        raise PaydarError("--attach needs the --state-dir of the running system")
    state_dir = state_dir or Path(".paydar/drills") / time.strftime("%Y%m%d-%H%M%S")
    report = DrillReport(state_dir=str(state_dir))
    started = time.monotonic()
    try:
        if attach:
            realization = load_realization(state_dir)
        else:
            with console.status("bringing the national system up"):
                realization = up(config, state_dir)
    except (UpFailed, PaydarError) as exc:
        report.error = f"{'attach' if attach else 'up'} failed: {exc}"
        return report
    report.up_seconds = 0.0 if attach else time.monotonic() - started
    try:
        _exercise(realization, report, writes_per_gateway, console)
    finally:
        write_json_atomic(state_dir / "report.json", report.as_dict())
        (state_dir / "report.html").write_text(render_html(report.as_dict()))
        if not keep and not attach:
            with console.status("tearing down"):
                down(state_dir)
    return report


def _automatic_failover(realization: Realization, report: DrillReport, console: Console) -> None:
    """Crash one primary node; the controllers must fail its service over on their own."""
    service = realization.topology.services[1] if len(realization.topology.services) > 1 \
        else realization.topology.services[0]
    gateway = realization.plan.gateway(realization.topology.region_names[-1]).url
    old = current_table(realization).table.route(service.id)
    node = f"node.{service.id}.{old.primary}"
    console.print(f"automatic failover: crashing {node} (the primary of {service.id})")
    rpc = realization.supervisor.rpc().supervisor
    started = time.monotonic()
    rpc.stopProcess(node, True)
    deadline = started + AUTO_FAILOVER_TIMEOUT
    while True:
        state = fetch_json(gateway + "/state") or {}
        now = state.get("services", {}).get(service.id, {})
        if now.get("primary") not in (None, old.primary) and now.get("mode") == "read-write":
            break
        if time.monotonic() >= deadline:
            raise PaydarError(f"service {service.id} did not fail over within {AUTO_FAILOVER_TIMEOUT:.0f}s "
                              f"after {node} crashed; last route seen: {now}")
        time.sleep(0.05)
    report.auto_failover_seconds = time.monotonic() - started
    report.auto_failover = f"{service.id}: {old.primary} -> {now['primary']} (epoch {now['epoch']})"
    rpc.startProcess(node, True)  # it rejoins as a standby of the new epoch


def _ransomware(realization: Realization, report: DrillReport, console: Console) -> None:
    """Back a standby up, encrypt its store in place, wait for it to notice, restore it from the vault."""
    service = realization.topology.services[-1]
    route = current_table(realization).table.route(service.id)
    region = next(r for r in route.regions if r != route.primary)
    node = f"node.{service.id}.{region}"
    [outcome] = backup_now(realization, [node])
    if outcome.manifest is None:
        raise PaydarError(f"backup of {node} failed: {outcome.error}")
    console.print(f"ransomware: encrypting the store of {node} in place (backup at position "
                  f"{outcome.manifest.position})")
    started = time.monotonic()
    for path in realization.layout.data(node).glob("registry.sqlite3*"):
        with path.open("r+b") as victim:
            victim.write(os.urandom(path.stat().st_size))
    deadline = started + realization.topology.storage.integrity_interval + RANSOMWARE_DETECTION_MARGIN
    url = realization.plan.component(node).url + "/state"
    while not (fetch_json(url) or {}).get("compromised"):
        if time.monotonic() >= deadline:
            raise PaydarError(f"{node} did not report itself compromised within "
                              f"{deadline - started:.0f}s of its store being encrypted")
        time.sleep(0.1)
    report.ransomware_detected_seconds = time.monotonic() - started
    console.print(f"restoring {node} from the vault")
    restored = restore(realization, service.id, region)
    report.restore_seconds = time.monotonic() - started - report.ransomware_detected_seconds
    report.ransomware = (f"{node}: detected, restored from position {restored.manifest.position}, caught up to "
                         f"{restored.caught_up_position}")


def _manual_failover(realization: Realization, report: DrillReport, console: Console) -> None:
    """Move the first service's primary to its second region through the controllers."""
    service = realization.topology.services[0]
    target = service.regions[1]
    console.print(f"manual failover: service {service.id} {service.home} -> {target}")
    started = time.monotonic()
    result = promote(realization, service.id, target)
    report.failover = f"{service.id}: {result.old_primary} -> {result.new_primary} (epoch {result.epoch})"
    report.failover_seconds = time.monotonic() - started


def _catalog(realization: Realization, report: DrillReport, console: Console) -> None:
    """Every experiment of the attack catalog, in turn, each rolled back before the next."""
    paths = experiments()
    sampler = AvailabilitySampler(realization).start()
    try:
        done = run_catalog(realization, paths, lambda name: console.print(f"experiment {name}"))
    finally:
        samples = sampler.stop()
    report.experiments = [result.as_dict() for result in done]
    report.timeline_origin = min((s.at for s in samples), default=0.0)
    buckets: dict[str, dict[int, list[bool]]] = {}
    for sample in samples:
        buckets.setdefault(sample.region, {}).setdefault(int(sample.at - report.timeline_origin), []).append(
            sample.served)
    report.timeline = {region: [[second, sum(seen) / len(seen)] for second, seen in sorted(per.items())]
                       for region, per in buckets.items()}
    for experiment in report.experiments:
        experiment["availability_during_fault"] = _served_during(samples, experiment)


def _served_during(samples: list[Sample], experiment: dict[str, Any]) -> float | None:
    """Share of sampled requests served through the unaffected regions within the fault window."""
    if not experiment.get("window"):
        return None
    start, end = experiment["window"]
    seen = [s.served for s in samples if start <= s.at <= end and s.region != experiment.get("affected_region")]
    return round(sum(seen) / len(seen), 4) if seen else None


PHASES = ((_manual_failover, "after"), (_automatic_failover, "auto"), (_ransomware, "restored"),
          (_catalog, "catalog"))
"""Each fault in turn, then a burst of writes tagged with its name."""


def _exercise(realization: Realization, report: DrillReport, per_gateway: int, console: Console) -> None:
    ledger = AckLedger()
    console.print(f"burst: {per_gateway} writes through each of {len(realization.topology.regions)} gateways")
    asyncio.run(write_burst(realization, ledger, per_gateway, "before"))
    for act, tag in PHASES:
        try:
            act(realization, report, console)
        except PaydarError as exc:
            report.error = str(exc)
            return
        console.print(f"burst: writes tagged {tag!r}")
        asyncio.run(write_burst(realization, ledger, per_gateway, tag))
    report.writes_attempted = len(ledger.writes)
    report.writes_acknowledged = ledger.acknowledged_count
    for region in realization.topology.region_names:
        console.print(f"reading every acknowledged write back through gateway {region}")
        violations = check_acknowledged(ledger, asyncio.run(read_back(realization, ledger, region)))
        report.reads_checked += report.writes_acknowledged
        report.lost += sum(1 for v in violations if v.kind.name == "LOST")
        report.corrupted += sum(1 for v in violations if v.kind.name == "CORRUPTED")
        report.violations += [f"via {region}: {v}" for v in violations]
