"""Bring the national system up and down, and look at it: validate, up, down, status, check, component restart."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.table import Table

from paydar.cli.common import (
    DEFAULT_CONFIG,
    FAILED,
    RUNTIME,
    config_option,
    console,
    fail,
    operate,
    out,
    state_option,
    text,
    topology_problems,
    with_progress,
)
from paydar.model.errors import BadInput, PaydarError, TopologyError
from paydar.model.resilience import n_minus_one
from paydar.model.topology import WorkloadKind, load_topology

if TYPE_CHECKING:
    from paydar.infra.local.realizer import Realization

__all__ = ["check", "component", "down", "status", "up", "validate"]


@click.command()
@click.argument("file", type=click.Path(path_type=Path), default=DEFAULT_CONFIG)
@click.option("--strict", is_flag=True, help="Exit 1 on any warning or unsafe: entry (for CI gates).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable result on stdout.")
def validate(file: Path, strict: bool, as_json: bool) -> None:
    """Check a topology file: report every problem with its location and a fix (exit 2), then
    analyse each service for the loss of any one region (N-1) and warn, with the numbers and
    the fix, about every service that would stop acknowledging writes. A service whose entry
    states the limit openly (accepts: [read-only-after-region-loss]) is listed as accepted.

    \b
    Exit status: 0 valid (warnings are printed); 1 with --strict when there is any warning
    (accepted limits are not warnings) or unsafe: entry; 2 when the file is not a valid topology.
    """
    try:
        topology = load_topology(file)
    except TopologyError as exc:
        topology_problems(exc)
    findings = n_minus_one(topology)
    warnings = [f for f in findings if not f.accepted]
    notes = [f"service {s.id} acknowledges a write once {s.ack_replicas} standbys hold it (sync_replicas "
             f"{s.sync_replicas}): with the primary that is a majority of its {len(s.regions)} replicas, so two "
             f"primaries of one epoch can never both acknowledge; the cost is that each write waits for "
             f"{s.ack_replicas} standbys, not {s.sync_replicas}"
             for s in topology.services if s.ack_replicas > s.sync_replicas]
    http = [s.id for s in topology.services if s.workload is WorkloadKind.HTTP]
    if http:
        notes.append(f"{len(http)} http service(s) ({', '.join(http[:5])}{', ...' if len(http) > 5 else ''}) "
                     "run behind the gateways locally; the production program does not render them yet")
    waiting = [s.id for s in topology.services if s.workload is WorkloadKind.POSTGRES]
    if waiting:
        shown = ", ".join(waiting[:5]) + (", ..." if len(waiting) > 5 else "")
        notes.append(f"{len(waiting)} postgres service(s) ({shown}): a PostgreSQL server and its agent per region "
                     "locally; the production program does not render them yet")
    nodes = sum(len(s.regions) for s in topology.services if s.workload is WorkloadKind.REGISTRY)
    if as_json:
        out.print_json(json.dumps({
            "file": str(file), "valid": True, "regions": len(topology.regions), "services": len(topology.services),
            "nodes": nodes, "http_services": http, "threshold": topology.control.threshold,
            "warnings": [f.as_dict() for f in warnings], "accepted": [f.as_dict() for f in findings if f.accepted],
            "notes": notes,
            "unsafe": [{"weakening": w.value, "risk": w.risk, "caught_by": w.caught_by} for w in topology.unsafe]}))
    else:
        out.print(f"{file}: valid — {len(topology.regions)} regions, {len(topology.services)} services, "
                  f"{nodes} nodes, vault sites {', '.join(s.name for s in topology.vault.sites)}, "
                  f"table threshold {topology.control.threshold} of {len(topology.regions)}", markup=False)
        for note in notes:
            out.print(f"  note: {note}", markup=False)
        for finding in findings:
            label = "[bold cyan]accepted[/]" if finding.accepted else "[bold yellow]warning[/]"
            console.print(f"{label} ({finding.limit.value}): ", end="")
            console.print(finding.message if finding.accepted else f"{finding.message}; fix: {finding.fix}",
                          markup=False)
        if topology.unsafe:
            console.print(f"[bold red]UNSAFE[/]: this topology gives up {', '.join(topology.unsafe)} on purpose; "
                          "it exists to prove the drill catches it and must never run in production")
    sys.exit(1 if strict and (warnings or topology.unsafe) else 0)


@click.command()
@config_option
@state_option
def up(config: Path, state_dir: Path) -> None:
    """Start every node, gateway, prober, controller, link proxy and the vault under supervisord; wait until ready."""
    from paydar.infra.local.realizer import AlreadyRunning, UpFailed
    from paydar.infra.local.realizer import up as realize

    try:
        realization = with_progress("starting the national system", lambda p: realize(config, state_dir, p))
    except TopologyError as exc:
        fail(str(exc))
    except AlreadyRunning as exc:
        fail(str(exc), FAILED)
    except UpFailed as exc:
        console.print(f"[bold red]up failed:[/] {exc}; everything started was stopped again")
        for component, log_tail in exc.diagnostics.items():
            console.rule(f"last lines of {component}'s log")
            console.print(log_tail, markup=False, highlight=False)
        sys.exit(RUNTIME)
    except BadInput as exc:
        fail(str(exc))
    except PaydarError as exc:
        fail(str(exc), RUNTIME)
    plan = realization.plan
    console.print(f"[green]ready:[/] {len(plan.components)} components from {realization.layout.root}")
    for region in realization.topology.region_names:
        out.print(f"  gateway {region:<10} {plan.gateway(region).url}")
    out.print(f"  vault              {plan.vault.endpoint}")


@click.command()
@state_option
def down(state_dir: Path) -> None:
    """Stop exactly what `up` started (by PID, through supervisord) and leave nothing behind."""
    from paydar.infra.local.realizer import down as stop

    stopped, killed = stop(state_dir)
    if stopped == 0:
        console.print(f"nothing running from {state_dir}")
        return
    console.print(f"stopped {stopped} programs and supervisord"
                  + (f"; had to kill PIDs {killed}" if killed else ""))


@click.command()
@state_option
@click.option("--except-region", "exempt", multiple=True, metavar="REGION",
              help="Do not expect this region's gateway to serve (it is lost or drained); repeatable.")
@click.option("--writes", default=2, show_default=True, type=click.IntRange(1, 100),
              help="Fresh documents written and read back per service and gateway.")
def check(state_dir: Path, exempt: tuple[str, ...], writes: int) -> None:
    """What citizens see, now: write fresh documents of every service through every gateway (but
    the exempted regions') and read them back, then re-read earlier acknowledged writes (this
    command's and the chaos probes') through those gateways. Exit 1 unless every request was
    served and nothing acknowledged was lost or corrupted. Runbooks verify recovery with it."""
    import asyncio

    from paydar.chaos.invariants import ViolationKind, check_acknowledged
    from paydar.chaos.probes import served_per_region
    from paydar.chaos.target import load_ledger
    from paydar.chaos.workload import read_back

    def job(system: Realization) -> tuple[dict[str, tuple[int, int]], int, int]:
        unknown = [r for r in exempt if r not in system.topology.region_names]
        if unknown:
            raise KeyError(f"unknown region {unknown[0]!r}; regions: {', '.join(system.topology.region_names)}")
        regions = [r for r in system.topology.region_names if r not in exempt]
        served = asyncio.run(served_per_region(system, writes, regions))
        ledger = load_ledger(system)
        found = [v for region in regions for v in check_acknowledged(ledger, asyncio.run(
            read_back(system, ledger, region)))]
        return (served, len({(v.service, v.doc_id) for v in found if v.kind is ViolationKind.LOST}),
                len({(v.service, v.doc_id) for v in found if v.kind is ViolationKind.CORRUPTED}))

    served, lost, corrupted = operate(state_dir, job)
    for region, (ok, total) in served.items():
        flag = "" if ok == total else " [red]FAILING[/]"
        out.print(f"gateway {region}: {ok}/{total} citizen requests served{flag}")
    out.print(f"acknowledged writes lost: {lost}; corrupted documents served: {corrupted}")
    sys.exit(0 if all(ok == total for ok, total in served.values()) and not lost and not corrupted else 1)


@click.command()
@state_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")
@click.option("--wait", "wait_seconds", default=0.0, type=click.FloatRange(0, 600), metavar="SECONDS",
              help="Wait up to SECONDS for every component to be healthy (a server rejoining, a region "
                   "returning) before showing them.")
def status(state_dir: Path, as_json: bool, wait_seconds: float) -> None:
    """Show every component: process, role, epoch, log position, health. Exit 1 if any is unhealthy."""
    import time

    from paydar.infra.local.realizer import load_realization
    from paydar.ops.status import collect_status

    deadline = time.monotonic() + wait_seconds
    try:
        system = load_realization(state_dir)
        rows = collect_status(system)
        while time.monotonic() < deadline and not all(r.health == "ready" for r in rows):
            time.sleep(0.5)
            rows = collect_status(system)
    except PaydarError as exc:
        fail(str(exc), RUNTIME)
    if as_json:
        out.print_json(json.dumps([r.as_dict() for r in rows]))
    else:
        table = Table(title=f"national system in {state_dir}")
        for column in ("component", "region", "service", "process", "role", "epoch", "log", "acked",
                       "table", "health", "detail"):
            table.add_column(column)
        colours = {"ready": "green", "degraded": "yellow"}
        for r in rows:
            health = f"[{colours.get(r.health, 'red')}]{r.health}[/]"
            table.add_row(r.component, r.region or "", r.service or "", r.process, r.role or "",
                          text(r.epoch), text(r.log_position), text(r.acked_position), text(r.table_version),
                          health, r.detail)
        out.print(table)
    sys.exit(0 if all(r.health == "ready" for r in rows) else 1)


@click.group()
def component() -> None:
    """Restart one supervised component (`paydar status` lists them)."""


@component.command("restart")
@click.argument("name")
@state_option
def component_restart(name: str, state_dir: Path) -> None:
    """Restart NAME (e.g. prober.<region>) through supervisord and wait until it is running."""
    def job(system: Realization) -> str:
        system.plan.component(name)  # KeyError names the known components
        rpc = system.supervisor.rpc().supervisor
        if rpc.getProcessInfo(name)["statename"] == "RUNNING":
            rpc.stopProcess(name, True)
        rpc.startProcess(name, True)
        return str(rpc.getProcessInfo(name)["statename"])

    out.print(f"{name}: {operate(state_dir, job)}")
