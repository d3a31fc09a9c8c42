"""The `paydar` command: parse, call the library, render. Nothing else lives here.

Exit codes: 0 healthy / done, 1 an invariant or health check failed, 2 bad usage or input.
Progress and logs go to stderr; `--json` output goes to stdout.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TypeVar

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from paydar.model.errors import PaydarError, TopologyError
from paydar.model.topology import load_topology

if TYPE_CHECKING:
    from paydar.infra.local.realizer import Realization
    from paydar.runbooks.engine import Step

__all__ = ["main"]
T = TypeVar("T")

console = Console(stderr=True)
# Tables stay readable when piped (rich would otherwise fold them to 80 columns).
out = Console(width=None if sys.stdout.isatty() else 200)
DEFAULT_STATE = Path(os.environ.get("PAYDAR_STATE_DIR", ".paydar/state"))
DEFAULT_CONFIG = Path(os.environ.get("PAYDAR_CONFIG", "national.yaml"))

config_option = click.option("--config", "config", type=click.Path(path_type=Path), default=DEFAULT_CONFIG,
                             show_default=True, help="Topology file (env PAYDAR_CONFIG).")
state_option = click.option("--state-dir", type=click.Path(path_type=Path), default=DEFAULT_STATE,
                            show_default=True, help="Where keys, data and logs live (env PAYDAR_STATE_DIR).")


def fail(message: str, code: int = 2) -> NoReturn:
    console.print(f"[bold red]error:[/] {message}")
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log library activity to stderr.")
def cli(verbose: bool) -> None:
    """Paydar keeps government digital services running while they are under attack.

    \b
    Typical session:
      paydar validate                 check national.yaml
      paydar up                       run the whole national system on 127.0.0.1
      paydar status                   every component: role, epoch, log position, health
      paydar failover promote --service 1101 --region isfahan
      paydar failover drain --region tehran   planned evacuation through the controllers
      paydar backup now --service 1101        verified, signed snapshots into the vault
      paydar backups list --service 1101      what the vault holds, each manifest verified
      paydar restore --service 1101 --region tehran   rebuild a node from a verified backup
      paydar down                     stop exactly what `up` started
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s %(message)s")


def _topology_problems(exc: TopologyError) -> NoReturn:
    """Every problem of a topology or stack file, with its location and hint; exit 2."""
    console.print(f"[bold red]{exc.source}: {len(exc.issues)} problem(s)[/]")
    for issue in exc.issues:
        hint = f"\n      hint: {issue.hint}" if issue.hint else ""
        console.print(f"  [yellow]{issue.location}[/]: {issue.message}{hint}")
    sys.exit(2)


@cli.command()
@click.argument("file", type=click.Path(path_type=Path), default=DEFAULT_CONFIG)
def validate(file: Path) -> None:
    """Check a topology file and report every problem with its location and a fix."""
    try:
        topology = load_topology(file)
    except TopologyError as exc:
        _topology_problems(exc)
    nodes = sum(len(s.regions) for s in topology.services)
    out.print(f"{file}: valid — {len(topology.regions)} regions, {len(topology.services)} services, "
              f"{nodes} nodes, vault sites {', '.join(s.name for s in topology.vault.sites)}, "
              f"table threshold {topology.control.threshold} of {len(topology.regions)}")
    for service in topology.services:
        if service.ack_replicas > service.sync_replicas:
            out.print(f"  note: service {service.id} acknowledges a write once {service.ack_replicas} standbys hold "
                      f"it (sync_replicas {service.sync_replicas}): with the primary that is a majority of its "
                      f"{len(service.regions)} replicas, so two primaries of one epoch can never both acknowledge; "
                      f"the cost is waiting for the {service.ack_replicas}th fastest standby and losing write "
                      f"availability once fewer than {service.ack_replicas} standbys answer", markup=False)
    if topology.unsafe:
        console.print(f"[bold red]UNSAFE[/]: this topology gives up {', '.join(topology.unsafe)} on purpose; "
                      "it exists to prove the drill catches it and must never run in production")


@cli.command()
@config_option
@state_option
def up(config: Path, state_dir: Path) -> None:
    """Start every node, gateway, prober, controller, link proxy and the vault under supervisord; wait until ready."""
    from paydar.infra.local.realizer import AlreadyRunning, UpFailed
    from paydar.infra.local.realizer import up as realize

    try:
        realization = _with_progress("starting the national system", lambda p: realize(config, state_dir, p))
    except TopologyError as exc:
        fail(str(exc))
    except AlreadyRunning as exc:
        fail(str(exc), 1)
    except UpFailed as exc:
        console.print(f"[bold red]up failed:[/] {exc}; everything started was stopped again")
        for component, log_tail in exc.diagnostics.items():
            console.rule(f"last lines of {component}'s log")
            console.print(log_tail, markup=False, highlight=False)
        sys.exit(1)
    except PaydarError as exc:
        fail(str(exc), 1)
    plan = realization.plan
    console.print(f"[green]ready:[/] {len(plan.components)} components from {realization.layout.root}")
    for region in realization.topology.region_names:
        out.print(f"  gateway {region:<10} {plan.gateway(region).url}")
    out.print(f"  vault              {plan.vault.endpoint}")


@cli.command()
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


@cli.command()
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

    served, lost, corrupted = _operate(state_dir, job)
    for region, (ok, total) in served.items():
        flag = "" if ok == total else " [red]FAILING[/]"
        out.print(f"gateway {region}: {ok}/{total} citizen requests served{flag}")
    out.print(f"acknowledged writes lost: {lost}; corrupted documents served: {corrupted}")
    sys.exit(0 if all(ok == total for ok, total in served.values()) and not lost and not corrupted else 1)


@cli.group()
def component() -> None:
    """Restart one supervised component (`paydar status` lists them)."""


@component.command("restart")
@click.argument("name")
@state_option
def component_restart(name: str, state_dir: Path) -> None:
    """Restart NAME (e.g. prober.isfahan) through supervisord and wait until it is running."""
    def job(system: Realization) -> str:
        system.plan.component(name)  # KeyError names the known components
        rpc = system.supervisor.rpc().supervisor
        if rpc.getProcessInfo(name)["statename"] == "RUNNING":
            rpc.stopProcess(name, True)
        rpc.startProcess(name, True)
        return str(rpc.getProcessInfo(name)["statename"])

    out.print(f"{name}: {_operate(state_dir, job)}")


@cli.command()
@state_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")
def status(state_dir: Path, as_json: bool) -> None:
    """Show every component: process, role, epoch, log position, health. Exit 1 if any is unhealthy."""
    from paydar.infra.local.realizer import load_realization
    from paydar.ops.status import collect_status

    try:
        rows = collect_status(load_realization(state_dir))
    except PaydarError as exc:
        fail(str(exc))
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
                          _text(r.epoch), _text(r.log_position), _text(r.acked_position), _text(r.table_version),
                          health, r.detail)
        out.print(table)
    sys.exit(0 if all(r.health == "ready" for r in rows) else 1)


def _text(value: object) -> str:
    return "" if value is None else str(value)


@cli.group()
def failover() -> None:
    """Move a service's primary through the signed routing-table path.

    Each command signs an intent with the operator key (<state-dir>/keys/operator.key, which no
    component holds) and posts it to every controller; the table that results still needs
    control.threshold controller signatures."""


def _operate(state_dir: Path, action: Callable[[Realization], T]) -> T:
    """Run an operator action against a running realization; bad input exits 2, refusals exit 1."""
    from botocore.exceptions import BotoCoreError, ClientError

    from paydar.ops.failover import FailoverRefused
    from paydar.infra.local.realizer import load_realization
    from paydar.ops.restore import RestoreFailed
    from paydar.vault.restore import NoBackup, RestoreRefused

    try:
        return action(load_realization(state_dir))
    except (FailoverRefused, RestoreRefused, RestoreFailed, NoBackup) as exc:
        fail(str(exc), 1)
    except (BotoCoreError, ClientError) as exc:
        fail(f"the vault did not answer as expected: {exc}; check `paydar status` (component vault)", 1)
    except KeyError as exc:
        fail(str(exc.args[0]))
    except PaydarError as exc:
        fail(str(exc))


@failover.command()
@click.option("--service", required=True, help="Service identifier, e.g. 1101.")
@click.option("--region", required=True, help="Region whose standby becomes primary.")
@state_option
def promote(service: str, region: str, state_dir: Path) -> None:
    """Promote a standby: the controllers fence the old primary, prove, then promote.

    Refuses (and changes nothing) when the standby lacks acknowledged writes or when that
    cannot be proven. The table is signed by the controllers (k of n), never by this command.
    """
    from paydar.ops.failover import promote as do_promote

    result = _operate(state_dir, lambda r: do_promote(r, service, region))
    out.print(f"service {service}: primary {result.old_primary} -> {result.new_primary}, epoch {result.epoch}, "
              f"table v{result.version} ({result.check})")


@failover.command()
@click.option("--service", required=True, help="Service identifier, e.g. 1101.")
@click.option("--region", required=True, help="Region whose node must not serve as primary.")
@state_option
def fence(service: str, region: str, state_dir: Path) -> None:
    """Fence one node (a suspect replica): it stays a standby and is never promoted.

    If it is the primary, the service fails over to a standby proven to hold every
    acknowledged write. Undo with `paydar failover clear --region R --service ID`.
    """
    from paydar.ops.failover import fence as do_fence

    table = _operate(state_dir, lambda r: do_fence(r, service, region))
    route = table.route(service)
    out.print(f"service {service}: {region} fenced; primary {route.primary}, epoch {route.epoch}, "
              f"table v{table.version}")


@failover.command()
@click.option("--region", required=True, help="Region to evacuate.")
@state_option
def drain(region: str, state_dir: Path) -> None:
    """Planned evacuation: move every primary out of REGION (its nodes stay standbys).

    Each service moves through fence-then-promote, so no acknowledged write is lost.
    Undo with `paydar failover clear --region R` (primaries do not move back by themselves).
    """
    from paydar.ops.failover import drain as do_drain

    table = _operate(state_dir, lambda r: do_drain(r, region))
    moved = ", ".join(f"{sid}->{route.primary}" for sid, route in sorted(table.services.items()))
    out.print(f"{region} drained in table v{table.version}: {moved}")


@failover.command()
@click.option("--region", required=True, help="Region whose intents to withdraw.")
@click.option("--service", default=None, help="Only this service's intents (default: all on the region).")
@state_option
def clear(region: str, service: str | None, state_dir: Path) -> None:
    """Withdraw operator intents (undrain, unfence) on REGION."""
    from paydar.ops.failover import clear as do_clear

    outcomes = _operate(state_dir, lambda r: do_clear(r, region, service))
    out.print(f"intents on {region}{' for ' + service if service else ''} cleared on "
              f"{sum(o == 'accepted' for o in outcomes.values())} controller(s)")


@cli.group()
def backup() -> None:
    """Take backups into the vault (nodes also take them every `storage.backup_interval`)."""


@backup.command("now")
@click.option("--service", default=None, help="Only this service's nodes (default: every service).")
@click.option("--region", default=None, help="Only this region's nodes (default: every region).")
@state_option
def backup_now(service: str | None, region: str | None, state_dir: Path) -> None:
    """Each selected node snapshots its store while serving, verifies the copy, uploads it with a
    manifest signed by its own key, and answers once the vault holds both. Exits 1 if any failed.
    """
    from paydar.ops.backups import backup_now as run
    from paydar.ops.backups import select_nodes

    def job(realization: Realization) -> list:  # type: ignore[type-arg]
        nodes = select_nodes(realization, service, region)
        with Progress(TextColumn("[bold]backing up"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[last]}"), TimeElapsedColumn(), console=console) as progress:
            task = progress.add_task("backup", total=len(nodes), last="")
            return run(realization, nodes, lambda o: progress.update(task, advance=1, last=o.node))

    outcomes = _operate(state_dir, job)
    table = Table(title="backups taken")
    for column in ("node", "position", "epoch", "size", "sha256", "result"):
        table.add_column(column)
    for o in outcomes:
        m = o.manifest
        table.add_row(o.node, str(m.position) if m else "", str(m.epoch) if m else "", _size(m.size) if m else "",
                      m.sha256[:12] if m else "", "[green]stored[/]" if m else f"[red]{o.error}[/]")
    out.print(table)
    sys.exit(0 if all(o.manifest for o in outcomes) else 1)


def _size(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.1f} kB"


@cli.group()
def backups() -> None:
    """What the vault holds."""


@backups.command("list")
@click.option("--service", required=True, help="Service identifier, e.g. 1101.")
@click.option("--region", default=None, help="Only this region's backups (default: every region of the service).")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1),
              help="Newest backups shown per region.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")
@state_option
def backups_list(service: str, region: str | None, limit: int, as_json: bool, state_dir: Path) -> None:
    """Every backup of a service, newest first, and whether its manifest verifies (signature by the
    node's key in the trust root, right service, right place). Exits 1 if any does not verify.
    """
    from paydar.ops.backups import list_vault

    found = _operate(state_dir, lambda r: list_vault(r, service, region, newest=limit))
    rows = [{"region": r, "manifest_key": e.key, "verified": e.problem is None, "problem": e.problem,
             **(e.claimed.model_dump(mode="json") if e.claimed else {})} for r, entries in found.items()
            for e in entries]
    if as_json:
        out.print_json(json.dumps(rows))
    else:
        table = Table(title=f"vault backups of service {service}")
        for column in ("region", "created (UTC)", "position", "epoch", "size", "sha256", "manifest"):
            table.add_column(column)
        for r, entries in found.items():
            for e in entries:
                m = e.claimed
                table.add_row(r, f"{m.created:%Y-%m-%d %H:%M:%S}" if m else e.key, str(m.position) if m else "",
                              str(m.epoch) if m else "", _size(m.size) if m else "", m.sha256[:12] if m else "",
                              "[green]verified[/]" if e.problem is None else f"[red]REFUSED: {e.problem}[/]")
        out.print(table if rows else f"the vault holds no backup of service {service}")
    sys.exit(0 if all(row["verified"] for row in rows) else 1)


@cli.command()
@click.option("--service", required=True, help="Service identifier, e.g. 1101.")
@click.option("--region", required=True, help="Region of the node to rebuild.")
@click.option("--at", "at", type=click.DateTime(["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%d %H:%M:%S"]),
              default=None, help="Newest backup taken at or before this UTC time.")
@click.option("--position", type=click.IntRange(min=0), default=None,
              help="Newest backup at or before this log position.")
@click.option("--into", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Write the verified store to this directory instead of rebuilding the node.")
@state_option
def restore(service: str, region: str, at: datetime | None, position: int | None, into: Path | None,
            state_dir: Path) -> None:
    """Rebuild a node from the vault, verifying before anything is served.

    \b
    1. picks the newest backup (at or before --at / --position);
    2. verifies its manifest's signature against the trust root, the object's
       size and SHA-256, and the whole hash chain; any failure refuses, with the reason;
    3. stops the node, keeps its old data under <state-dir>/restores/, starts it
       on the verified store; it catches up from the current primary and rejoins
       as a standby. If it does not come back, the old data is put back.
    Refuses to restore the writable primary: fail over first.
    """
    from paydar.ops.restore import Steps
    from paydar.ops.restore import restore as run

    moment = at.replace(tzinfo=timezone.utc) if at else None

    def job(realization: Realization):  # type: ignore[no-untyped-def]
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                      TimeElapsedColumn(), console=console) as progress:
            task = progress.add_task("restore", total=None)
            steps = Steps(downloaded=lambda n: progress.update(task, advance=n),
                          phase=lambda text: progress.update(task, description=text))
            return run(realization, service, region, at=moment, position=position, into=into, steps=steps)

    report = _operate(state_dir, job)
    m = report.manifest
    out.print(f"backup of {m.node} at position {m.position} (epoch {m.epoch}, {m.created:%Y-%m-%d %H:%M:%S} UTC, "
              f"{_size(m.size)}) verified in {report.verify_seconds:.2f}s: signature, SHA-256 {m.sha256[:12]}, "
              f"chain head {m.chain_head[:12]}")
    if into is not None:
        out.print(f"verified store written to {report.path}; no node was touched")
    else:
        out.print(f"{report.node} rebuilt and caught up to position {report.caught_up_position} (primary had "
                  f"acknowledged {report.target_position}) in {report.rejoin_seconds:.2f}s; "
                  f"replaced data kept in {report.path}")


@cli.command()
@config_option
@click.option("--state-dir", type=click.Path(path_type=Path), default=None,
              help="Run in this state directory (default: a fresh one under .paydar/drills/; with --attach, "
                   "the running system's, env PAYDAR_STATE_DIR or .paydar/state).")
@click.option("--matrix", is_flag=True,
              help="Run the N-1 matrix (every component instance x every fault that applies to it: 101 cells "
                   "for 3 regions x 4 services, ~14 min) instead of the attack catalog (8 experiments).")
@click.option("--only", multiple=True, metavar="PATTERN",
              help="With --matrix: only the cells whose 'component:fault' name matches (shell-style, repeatable), "
                   "e.g. --only 'node.1101.*' --only '*:partition'.")
@click.option("--users", default=6, show_default=True, type=click.IntRange(1, 200),
              help="Locust citizens writing and reading through the gateways (spread evenly) throughout.")
@click.option("--dwell", default=2.0, show_default=True, type=click.FloatRange(0, 60),
              help="With --matrix: seconds each fault is held under load once citizens are served again.")
@click.option("--keep", is_flag=True, help="Leave the system running afterwards.")
@click.option("--attach", is_flag=True, help="Drill the system already running from --state-dir; leave it running.")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None,
              help="Also write the report here.")
def drill(config: Path, state_dir: Path | None, matrix: bool, only: tuple[str, ...], users: int, dwell: float,
          keep: bool, attach: bool, json_path: Path | None) -> None:
    """Prove the national system survives any single fault: bring it up, run steady Locust citizen load
    through every gateway, run every experiment of the attack catalog (chaos/experiments/) or the N-1
    matrix, read every acknowledged write back through every gateway, tear down.

    \b
    Exit status 0 only when every experiment's steady state held (citizens served through the
    unaffected regions, no acknowledged write lost, no corrupted document served) and the final
    read-back found nothing lost or corrupted. The report is <state-dir>/report.json and a
    self-contained <state-dir>/report.html (availability timeline, recovery times, the matrix as a
    heat map); Chaos Toolkit journals are under <state-dir>/chaos/journals/.
    \b
    Examples:
      paydar drill                                    # the catalog on national.yaml
      paydar drill --matrix                           # the whole N-1 matrix
      paydar drill --matrix --only 'gateway.*'        # part of it
      paydar drill --config examples/weakened/no-synchronous-standby.yaml   # must FAIL
    """
    from paydar.drill.run import DrillOptions, run_drill

    if only and not matrix:
        fail("--only narrows the N-1 matrix: add --matrix")
    options = DrillOptions(matrix=matrix, only=only, users=users, dwell=dwell)
    try:
        report = run_drill(config=config, state_dir=state_dir or (DEFAULT_STATE if attach else None), keep=keep,
                           console=console, attach=attach, options=options)
    except PaydarError as exc:
        fail(str(exc))
    if json_path:
        json_path.write_text(json.dumps(report.as_dict(), indent=2))
    report.render(out)
    sys.exit(0 if report.passed else 1)


@cli.command()
@click.option("--stack", default="staging", show_default=True,
              help="The stack to render: reads Pulumi.<stack>.yaml in the current directory.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole plan as JSON on stdout.")
def plan(stack: str, as_json: bool) -> None:
    """Render the production stack offline (Pulumi's mock runtime, no CLI, no cloud) and review it:
    resources per region, every open network path, what each vault identity may do, the stack
    outputs, and the resilience policies' verdict. Exit status 1 if a policy is violated.

    \b
    Review a change before `pulumi up`:
      paydar plan --stack staging
      paydar plan --stack production --json > plan.json
    """
    from paydar.infra.production.plan import plan_stack, summary

    try:
        with console.status(f"rendering stack {stack} with Pulumi's mock runtime"):
            found = summary(plan_stack(stack))
    except TopologyError as exc:
        _topology_problems(exc)
    except PaydarError as exc:
        fail(str(exc))
    if as_json:
        out.print_json(json.dumps(found, default=str))
    else:
        _print_plan(found)
    sys.exit(0 if found["passed"] else 1)


def _print_plan(found: dict) -> None:  # type: ignore[type-arg]
    out.print(f"[bold]stack {found['stack']}[/]: {found['resources']} resources")
    for region, counts in found["by_region"].items():
        table = Table(title=f"{region}: resources", show_header=False)
        for token, count in counts.items():
            table.add_row(token, str(count))
        out.print(table)
    for region, paths in found["open_paths"].items():
        out.print(f"[bold]{region}: open network paths[/] (everything else denied)")
        for path in paths:
            out.print(f"  {path}")
    out.print("[bold]vault permissions[/]")
    for name, grants in found["vault_permissions"].items():
        out.print(f"  {name}: {'; '.join(grants)}")
    out.print(f"[bold]outputs[/]: {json.dumps(found['outputs'], indent=1)}")
    for name, verdict in found["policies"].items():
        if verdict == "passed":
            out.print(f"[green]policy {name}: passed[/]")
        else:
            for violation in verdict:
                out.print(f"[red]policy {name}: {violation}[/]")


@cli.group()
def keys() -> None:
    """Component identities (Ed25519 keys, mode 0600, under the state directory)."""


@keys.command("rotate")
@click.option("--component", required=True, help="The component whose key to replace, e.g. controller.tehran.")
@state_option
def keys_rotate(component: str, state_dir: Path) -> None:
    """Give COMPONENT a new key and make every other component refuse the old one.

    The trust root is rewritten and reloaded by every node, gateway and controller (SIGHUP);
    for a controller the others first re-sign the routing table in force; then the new key
    replaces the old file and the component restarts with it. Use it when a key may be stolen
    (see the runbooks lying-prober and compromised-controller-key).
    """
    from paydar.ops.keys import rotate

    done = _operate(state_dir, lambda system: rotate(system, component, lambda text: out.print(f"  {text}")))
    out.print(f"{done.component}: key {done.old_key_id} replaced by {done.new_key_id} in {done.seconds:.1f}s; "
              f"table in force v{done.table_version}; the old key is refused from now on")


@cli.group()
def runbook() -> None:
    """Executable incident runbooks (runbooks/*.md): list, read, run step by step with an incident log."""


@runbook.command("list")
def runbook_list() -> None:
    """Every runbook and when to use it."""
    from paydar.runbooks.engine import available

    table = Table(show_header=True)
    table.add_column("runbook")
    table.add_column("when to use it")
    for book in available():
        table.add_row(book.name, book.summary)
    out.print(table)


@runbook.command("show")
@click.argument("name")
def runbook_show(name: str) -> None:
    """Print a runbook as Markdown."""
    from rich.markdown import Markdown

    from paydar.runbooks.engine import find

    try:
        out.print(Markdown(find(name).path.read_text(encoding="utf-8")))
    except PaydarError as exc:
        fail(str(exc))


@runbook.command("run")
@click.argument("name")
@state_option
@click.option("--set", "assignments", multiple=True, metavar="NAME=VALUE",
              help="An input the runbook's steps use (see its Inputs section); repeatable.")
@click.option("--yes", is_flag=True, help="Run every step without asking.")
@click.option("--dry-run", is_flag=True, help="Show the steps that would run; run nothing.")
def runbook_run(name: str, state_dir: Path, assignments: tuple[str, ...], yes: bool, dry_run: bool) -> None:
    """Run runbook NAME against the system in --state-dir: each step is shown and (unless --yes)
    confirmed, then run; every step's time, command, exit status and output go to the incident log
    <state-dir>/incidents/. The run stops at the first failing step and says what to do next.

    \b
    Example:
      paydar runbook run region-loss --set REGION=tehran
    """
    from rich.markdown import Markdown

    from paydar.runbooks.engine import find, run

    try:
        book = find(name)
    except PaydarError as exc:
        fail(str(exc))
    values = {}
    for item in assignments:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--set takes NAME=VALUE, got {item!r}")
        values[key] = value
    out.print(f"[bold]{book.title}[/] ({len(book.steps)} steps)")
    if dry_run:
        for number, step in enumerate(book.steps, 1):
            out.print(f"[bold]step {number}[/] ({step.section}): {step.title}\n  $ {step.command}")
        return

    def confirm(step: Step, number: int) -> bool:
        out.print(f"[bold]step {number}/{len(book.steps)}[/] ({step.section}): {step.title}\n  $ {step.command}")
        return yes or click.confirm("run it?", default=True)

    try:
        outcome = run(book, state_dir=state_dir, values=values, confirm=confirm, show=lambda text: out.print(text))
    except PaydarError as exc:
        fail(str(exc))
    if outcome.failed:
        console.print(f"[bold red]step {outcome.failed['step']} failed[/] (exit {outcome.failed['exit']}); "
                      f"nothing after it ran. Incident log: {outcome.log}")
        for section in ("if a step fails", "roll back"):
            if book.sections.get(section):
                console.print(Markdown(f"## {section.capitalize()}\n{book.sections[section]}"))
        sys.exit(1)
    if outcome.stopped:
        console.print(f"stopped at your request; incident log: {outcome.log}")
        sys.exit(1)
    out.print(f"[bold green]all {len(outcome.ran)} steps succeeded[/]; incident log: {outcome.log}")


@cli.group()
def bench() -> None:
    """Benchmarks: print figures (tests never time things)."""


@bench.command("up")
@config_option
@click.option("--writes", default=2000, show_default=True, help="Writes for the throughput figure.")
@click.option("--concurrency", default=16, show_default=True, help="Concurrent writers.")
@click.option("--idle-seconds", default=10.0, show_default=True, help="How long to sample idle CPU.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON on stdout.")
def bench_up(config: Path, writes: int, concurrency: int, idle_seconds: float, as_json: bool) -> None:
    """Time to all-ready, total RSS, idle CPU, and write throughput/latency through one gateway."""
    from paydar.bench.up import bench_up as run

    _print_figures("paydar bench up", run(config=config, writes=writes, concurrency=concurrency,
                                          idle_seconds=idle_seconds, console=console), as_json)


@bench.command("failover")
@config_option
@click.option("--kills", default=10, show_default=True, help="How many times to kill the primary region.")
@click.option("--service", default=None, help="Service whose primary region is killed (default: the first).")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON on stdout.")
def bench_failover(config: Path, kills: int, service: str | None, as_json: bool) -> None:
    """Kill the primary region KILLS times: time to the first acknowledged write, writes lost."""
    from paydar.bench.failover import bench_failover as run

    try:
        _print_figures("paydar bench failover", run(config=config, kills=kills, service=service, console=console),
                       as_json)
    except PaydarError as exc:
        fail(str(exc), 1)


@bench.command("restore")
@click.option("--size-mb", default=200, show_default=True, help="Store size to back up and restore.")
@click.option("--document-kb", default=16, show_default=True, help="Size of each document in the store.")
@click.option("--rounds", default=3, show_default=True, help="Alternating raw-GET / restore rounds (medians).")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON on stdout.")
def bench_restore(size_mb: int, document_kb: int, rounds: int, as_json: bool) -> None:
    """Backup and verified-restore MB/s on a real vault, against a raw boto3 GET of the same bytes."""
    from paydar.bench.restore import bench_restore as run

    _print_figures("paydar bench restore", run(size_mb=size_mb, document_kb=document_kb, rounds=rounds,
                                               console=console), as_json)


@bench.command("matrix")
@config_option
@click.option("--users", default=6, show_default=True, type=click.IntRange(1, 200), help="Locust citizens.")
@click.option("--dwell", default=2.0, show_default=True, type=click.FloatRange(0, 60),
              help="Seconds each fault is held under load once citizens are served again.")
@click.option("--only", multiple=True, metavar="PATTERN", help="Only these cells ('component:fault', shell-style).")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON on stdout.")
def bench_matrix(config: Path, users: int, dwell: float, only: tuple[str, ...], as_json: bool) -> None:
    """Wall time of the whole N-1 matrix on a fresh system (target: 15 minutes for 3 regions x 4
    services), and per fault: cells held, time until served again, availability elsewhere, data lost."""
    from paydar.bench.matrix import bench_matrix as run

    _print_figures("paydar bench matrix", run(config=config, users=users, dwell=dwell, only=only, console=console),
                   as_json)


@bench.command("probes")
@click.option("--services", default=6000, show_default=True, help="Synthetic catalog size.")
@click.option("--regions", default=5, show_default=True, help="Regions per service.")
@click.option("--seconds", default=10.0, show_default=True, help="How long to probe.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON on stdout.")
def bench_probes(services: int, regions: int, seconds: float, as_json: bool) -> None:
    """Sustained probes/s and CPU of the probe engine against minimal real HTTP targets."""
    from paydar.bench.scale import bench_probes as run

    _print_figures("paydar bench probes", run(services=services, regions=regions, seconds=seconds), as_json)


@bench.command("controller")
@click.option("--services", default=6000, show_default=True, help="Synthetic catalog size.")
@click.option("--regions", default=5, show_default=True, help="Regions (and probers) per service.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON on stdout.")
def bench_controller(services: int, regions: int, as_json: bool) -> None:
    """Time to judge SERVICES x REGIONS targets from signed observations and sign the next table."""
    from paydar.bench.scale import bench_controller as run

    _print_figures("paydar bench controller", run(services=services, regions=regions, probers=regions), as_json)


def _print_figures(title: str, figures: dict[str, float | int | str], as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps(figures))
        return
    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in figures.items():
        table.add_row(key, f"{value:.3f}" if isinstance(value, float) else str(value))
    out.print(table)


def _with_progress(what: str, job):  # type: ignore[no-untyped-def]
    """Run ``job(progress_callback)`` under a progress bar of components ready."""
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[last]}"), TimeElapsedColumn(), console=console,
                  transient=False) as progress:
        task = progress.add_task(what, total=None, last="")

        def update(component: str, done: int, total: int) -> None:
            progress.update(task, completed=done, total=total, last=f"{component} ready")

        return job(update)


def main() -> None:
    cli(prog_name="paydar")


if __name__ == "__main__":
    main()
