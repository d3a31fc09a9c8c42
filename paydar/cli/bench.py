"""`paydar bench`: benchmarks print figures; tests never time things."""

from __future__ import annotations

from pathlib import Path

import click

from paydar.cli.common import RUNTIME, config_option, console, fail, print_figures
from paydar.model.errors import PaydarError

__all__ = ["bench"]


@click.group()
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

    print_figures("paydar bench up", run(config=config, writes=writes, concurrency=concurrency,
                                          idle_seconds=idle_seconds, console=console), as_json)


@bench.command("failover")
@config_option
@click.option("--kills", default=10, show_default=True, help="How many times to kill the primary region.")
@click.option("--service", default=None, help="Service whose primary region is killed (default: the first); a "
              "postgres service is written through its app's ledger.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON on stdout.")
def bench_failover(config: Path, kills: int, service: str | None, as_json: bool) -> None:
    """Kill the primary region KILLS times: time to the first acknowledged write, writes lost.

    \b
    Examples:
      paydar bench failover --kills 6
      paydar bench failover --config examples/postgres.yaml --service ID   # ID: a postgres service
    """
    from paydar.bench.failover import bench_failover as run

    try:
        print_figures("paydar bench failover", run(config=config, kills=kills, service=service, console=console),
                       as_json)
    except PaydarError as exc:
        fail(str(exc), RUNTIME)


@bench.command("postgres")
@config_option
@click.option("--service", default=None, help="The postgres service to measure (default: the first).")
@click.option("--clients", default=8, show_default=True, type=click.IntRange(1, 64), help="pgbench clients.")
@click.option("--seconds", default=10, show_default=True, type=click.IntRange(1, 600), help="Seconds per path.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON on stdout.")
def bench_postgres(config: Path, service: str | None, clients: int, seconds: int, as_json: bool) -> None:
    """Commit throughput and latency of a database with its synchronous standbys: pgbench straight
    to the primary, through its region's route, and through another region's route (a link).

    \b
    Example:
      paydar bench postgres --config examples/postgres.yaml --clients 8 --seconds 10
    """
    from paydar.bench.postgres import bench_postgres as run

    try:
        print_figures("paydar bench postgres", run(config=config, service=service, clients=clients,
                                                   seconds=seconds, console=console), as_json)
    except PaydarError as exc:
        fail(str(exc), RUNTIME)


@bench.command("gateway")
@click.option("--config", "config", type=click.Path(path_type=Path), default=Path("examples/http-service.yaml"),
              show_default=True, help="A topology with at least one workload: http service.")
@click.option("--requests", default=4000, show_default=True, type=click.IntRange(4, 1_000_000),
              help="Requests per path (direct and through the gateway).")
@click.option("--concurrency", default=1, show_default=True, type=click.IntRange(1, 256),
              help="Requests in flight; 1 measures latency alone.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON on stdout.")
def bench_gateway(config: Path, requests: int, concurrency: int, as_json: bool) -> None:
    """Requests/s and p50/p99 of an http service's canary, straight to its instance and through
    the gateway, in one run: what the gateway adds."""
    from paydar.bench.gateway import bench_gateway as run

    print_figures("paydar bench gateway", run(config=config, requests=requests, concurrency=concurrency,
                                               console=console), as_json)


@bench.command("restore")
@click.option("--size-mb", default=200, show_default=True, help="Store size to back up and restore.")
@click.option("--document-kb", default=16, show_default=True, help="Size of each document in the store.")
@click.option("--rounds", default=3, show_default=True, help="Alternating raw-GET / restore rounds (medians).")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON on stdout.")
def bench_restore(size_mb: int, document_kb: int, rounds: int, as_json: bool) -> None:
    """Backup and verified-restore MB/s on a real vault, against a raw boto3 GET of the same bytes."""
    from paydar.bench.restore import bench_restore as run

    print_figures("paydar bench restore", run(size_mb=size_mb, document_kb=document_kb, rounds=rounds,
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

    print_figures("paydar bench matrix", run(config=config, users=users, dwell=dwell, only=only, console=console),
                   as_json)


@bench.command("probes")
@click.option("--services", default=6000, show_default=True, help="Synthetic catalog size.")
@click.option("--regions", default=5, show_default=True, help="Regions per service.")
@click.option("--seconds", default=10.0, show_default=True, help="How long to probe.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON on stdout.")
def bench_probes(services: int, regions: int, seconds: float, as_json: bool) -> None:
    """Sustained probes/s and CPU of the probe engine against minimal real HTTP targets."""
    from paydar.bench.scale import bench_probes as run

    print_figures("paydar bench probes", run(services=services, regions=regions, seconds=seconds), as_json)


@bench.command("controller")
@click.option("--services", default=6000, show_default=True, help="Synthetic catalog size.")
@click.option("--regions", default=5, show_default=True, help="Regions (and probers) per service.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON on stdout.")
def bench_controller(services: int, regions: int, as_json: bool) -> None:
    """Time to judge SERVICES x REGIONS targets from signed observations and sign the next table."""
    from paydar.bench.scale import bench_controller as run

    print_figures("paydar bench controller", run(services=services, regions=regions, probers=regions), as_json)
