"""The `paydar` command: parse, call the library, render. Nothing else lives here.

Exit codes: 0 healthy / done, 1 an invariant or health check failed, 2 bad usage or input.
Progress and logs go to stderr; `--json` output goes to stdout.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from infra.errors import PaydarError, TopologyError
from infra.topology import load_topology

__all__ = ["main"]

console = Console(stderr=True)
# Tables stay readable when piped (rich would otherwise fold them to 80 columns).
out = Console(width=None if sys.stdout.isatty() else 200)
DEFAULT_STATE = Path(os.environ.get("PAYDAR_STATE_DIR", ".paydar/state"))
DEFAULT_CONFIG = Path(os.environ.get("PAYDAR_CONFIG", "national.yaml"))

config_option = click.option("--config", "config", type=click.Path(path_type=Path), default=DEFAULT_CONFIG,
                             show_default=True, help="Topology file (env PAYDAR_CONFIG).")
state_option = click.option("--state-dir", type=click.Path(path_type=Path), default=DEFAULT_STATE,
                            show_default=True, help="Where keys, data and logs live (env PAYDAR_STATE_DIR).")


def fail(message: str, code: int = 2) -> None:
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
      paydar down                     stop exactly what `up` started
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s %(message)s")


@cli.command()
@click.argument("file", type=click.Path(path_type=Path), default=DEFAULT_CONFIG)
def validate(file: Path) -> None:
    """Check a topology file and report every problem with its location and a fix."""
    try:
        topology = load_topology(file)
    except TopologyError as exc:
        console.print(f"[bold red]{exc.source}: {len(exc.issues)} problem(s)[/]")
        for issue in exc.issues:
            console.print(f"  [yellow]{issue.location}[/]: {issue.message}" + (f"\n      hint: {issue.hint}" if issue.hint else ""))
        sys.exit(2)
    nodes = sum(len(s.regions) for s in topology.services)
    out.print(f"{file}: valid — {len(topology.regions)} regions, {len(topology.services)} services, "
              f"{nodes} nodes, vault sites {', '.join(s.name for s in topology.vault.sites)}, "
              f"table threshold {topology.control.threshold} of {len(topology.regions)}")


@cli.command()
@config_option
@state_option
def up(config: Path, state_dir: Path) -> None:
    """Start every node, gateway, link proxy and the vault under supervisord, and wait until ready."""
    from infra.local.realizer import AlreadyRunning, UpFailed
    from infra.local.realizer import up as realize

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
    from infra.local.realizer import down as stop

    stopped, killed = stop(state_dir)
    if stopped == 0:
        console.print(f"nothing running from {state_dir}")
        return
    console.print(f"stopped {stopped} programs and supervisord"
                  + (f"; had to kill PIDs {killed}" if killed else ""))


@cli.command()
@state_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")
def status(state_dir: Path, as_json: bool) -> None:
    """Show every component: process, role, epoch, log position, health. Exit 1 if any is unhealthy."""
    from infra.local.realizer import load_realization
    from paydar.status import collect_status

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
    """Move a service's primary through the signed routing-table path."""


@failover.command()
@click.option("--service", required=True, help="Service identifier, e.g. 1101.")
@click.option("--region", required=True, help="Region whose standby becomes primary.")
@state_option
def promote(service: str, region: str, state_dir: Path) -> None:
    """Promote a standby: fence the old primary, prove no acknowledged write is missing, publish.

    Refuses (and changes nothing) when the standby lacks acknowledged writes or when that
    cannot be proven. Signs with the local controller keys of the state directory.
    """
    from failover.manual import FailoverRefused
    from failover.manual import promote as do_promote
    from infra.local.realizer import load_realization

    try:
        realization = load_realization(state_dir)
        realization.topology.service(service)
    except KeyError as exc:
        fail(str(exc.args[0]))
    except PaydarError as exc:
        fail(str(exc))
    try:
        result = do_promote(realization, service, region)
    except FailoverRefused as exc:
        fail(str(exc), 1)
    except PaydarError as exc:
        fail(str(exc))
    refused = {k: v for k, v in result.published.items() if v != "accepted"}
    out.print(f"service {service}: primary {result.old_primary} -> {result.new_primary}, epoch {result.epoch}, "
              f"table v{result.version} ({result.check})")
    for component, outcome in refused.items():
        console.print(f"  [yellow]{component}[/]: {outcome} (it will learn the table from its peers)")


@cli.command()
@config_option
@click.option("--state-dir", type=click.Path(path_type=Path), default=None,
              help="Run in this state directory (default: a fresh one under .paydar/drills/).")
@click.option("--writes", default=40, show_default=True, help="Writes per gateway in each burst.")
@click.option("--keep", is_flag=True, help="Leave the system running afterwards.")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, help="Write the report here.")
def drill(config: Path, state_dir: Path | None, writes: int, keep: bool, json_path: Path | None) -> None:
    """Up, a burst of writes and reads through every gateway, a manual failover, a check, down."""
    from paydar.drill import run_drill

    try:
        report = run_drill(config=config, state_dir=state_dir, writes_per_gateway=writes, keep=keep,
                           console=console)
    except TopologyError as exc:
        fail(str(exc))
    if json_path:
        json_path.write_text(json.dumps(report.as_dict(), indent=2))
    report.render(out)
    sys.exit(0 if report.passed else 1)


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
    from paydar.bench import bench_up as run

    figures = run(config=config, writes=writes, concurrency=concurrency, idle_seconds=idle_seconds,
                  console=console)
    if as_json:
        out.print_json(json.dumps(figures))
    else:
        table = Table(title="paydar bench up")
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
