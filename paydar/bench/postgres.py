"""`paydar bench postgres`: commit throughput and latency of an agency database, with its
synchronous standbys, straight to the primary and through the agents' primary routes, in one run.

PostgreSQL's own ``pgbench`` drives every path with the same script (one INSERT committed per
transaction, so every transaction waits for the standby quorum) and the same clients: straight
to the primary's port, through the primary region's own route, and through another region's
route (across a link proxy, as an app in that region reaches it). Latencies come from pgbench's
per-transaction log.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from rich.console import Console

from paydar.bench.up import percentile
from paydar.infra.local.realizer import Realization, down, probe, up
from paydar.model.errors import BadInput, PaydarError
from paydar.model.files import read_secret
from paydar.ops.failover import current_table
from paydar.postgres.server import BINARIES
from paydar.workload.database import APP_DATABASE, APP_ROLE

__all__ = ["bench_postgres"]

SCRIPT = "INSERT INTO paydar_bench (note) VALUES ('pgbench');\n"
READY_TIMEOUT = 60.0


def bench_postgres(*, config: Path, service: str | None, clients: int, seconds: int,
                   console: Console) -> dict[str, float | int | str]:
    """Bring a fresh system up, run pgbench on every path, report the figures."""
    with tempfile.TemporaryDirectory(prefix="paydar-bench-") as tmp:
        with console.status("up"):
            realization = up(config, Path(tmp) / "state")
        try:
            return _run(realization, _database(realization, service), clients, seconds, Path(tmp), console)
        finally:
            down(Path(tmp) / "state")


def _database(realization: Realization, service: str | None) -> str:
    databases = [s.id for s in realization.topology.postgres_services]
    if not databases:
        raise BadInput("this topology has no postgres service to measure (try examples/postgres.yaml)")
    if service is not None and service not in databases:
        raise BadInput(f"service {service} is not a postgres service; these are: {', '.join(databases)}")
    return service or databases[0]


def _run(realization: Realization, service: str, clients: int, seconds: int, folder: Path,
         console: Console) -> dict[str, float | int | str]:
    agents = [realization.plan.node(service, r) for r in realization.topology.service(service).regions]
    deadline = time.monotonic() + READY_TIMEOUT
    while not all(probe(realization, a) for a in agents):
        if time.monotonic() > deadline:
            raise PaydarError(f"the agents of {service} were not ready within {READY_TIMEOUT:.0f}s")
        time.sleep(0.2)
    lead = current_table(realization).table.route(service).primary
    primary = realization.plan.node(service, str(lead))
    other = next(a for a in agents if a.region != lead)
    password = read_secret(realization.layout.pg_secret(service, "app"))
    assert primary.db_port and primary.route_port and other.route_port
    with psycopg.connect(host="127.0.0.1", port=primary.db_port, user=APP_ROLE, password=password,
                         dbname=APP_DATABASE, autocommit=True) as connection:
        connection.execute("CREATE TABLE IF NOT EXISTS paydar_bench (id bigserial PRIMARY KEY, "
                           "at timestamptz NOT NULL DEFAULT now(), note text)")
    paths = {"direct": primary.db_port, "route": primary.route_port, "route_via_link": other.route_port}
    figures: dict[str, float | int | str] = {"service": service, "primary": str(lead), "clients": clients,
                                             "seconds": seconds,
                                             "ack_replicas": realization.topology.service(service).ack_replicas}
    for name, port in paths.items():
        console.print(f"pgbench {name}: {clients} clients for {seconds}s on port {port}")
        latencies = _pgbench(port, password, clients, seconds, folder / name)
        figures |= {f"{name}_tps": round(len(latencies) / seconds, 1),
                    f"{name}_p50_ms": round(percentile(latencies, 50), 2),
                    f"{name}_p99_ms": round(percentile(latencies, 99), 2)}
    return figures


def _pgbench(port: int, password: str, clients: int, seconds: int, folder: Path) -> list[float]:
    """Run pgbench for ``seconds``; every committed transaction's latency in ms."""
    folder.mkdir(parents=True)
    script = folder / "insert.sql"
    script.write_text(SCRIPT)
    command = [str(BINARIES / "bin" / "pgbench"), "-n", "-c", str(clients), "-j", str(min(clients, 2)),
               "-T", str(seconds), "-f", str(script), "-l", "--log-prefix", str(folder / "log"),
               "-h", "127.0.0.1", "-p", str(port), "-U", APP_ROLE, APP_DATABASE]
    done = subprocess.run(command, env={**os.environ, "PGPASSWORD": password}, capture_output=True, text=True,
                          timeout=seconds + 60, check=False, cwd=folder)
    if done.returncode != 0:
        raise PaydarError(f"pgbench failed on port {port} (exit {done.returncode}): {done.stderr.strip()[-800:]}")
    # Each line: client, transaction, latency in microseconds, script, epoch seconds, microseconds.
    return [int(line.split()[2]) / 1000 for path in folder.glob("log.*") for line in path.read_text().splitlines()
            if line.strip()]
