"""`paydar backup`, `paydar backups`, `paydar restore` and `paydar rebuild`: the vault and rebuilds, from the
operator's side."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
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

from paydar.cli.common import Moment, confirm, console, destructive, operate, out, size, state_option
from paydar.model.errors import BadInput
from paydar.model.topology import WorkloadKind
from paydar.vault.manifest import SNAPSHOT_FORMAT

if TYPE_CHECKING:
    from paydar.infra.local.realizer import Realization
    from paydar.ops.backups import BackupOutcome
    from paydar.ops.restore import RestoreReport

__all__ = ["backup", "backups", "rebuild", "restore"]


@click.group()
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

    def job(realization: Realization) -> list[BackupOutcome]:
        nodes = select_nodes(realization, service, region)
        with Progress(TextColumn("[bold]backing up"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[last]}"), TimeElapsedColumn(), console=console) as progress:
            task = progress.add_task("backup", total=len(nodes), last="")
            return run(realization, nodes, lambda o: progress.update(task, advance=1, last=o.node))

    outcomes = operate(state_dir, job)
    table = Table(title="backups taken")
    for column in ("node", "position", "epoch", "size", "sha256", "result"):
        table.add_column(column)
    for o in outcomes:
        m = o.manifest
        table.add_row(o.node, str(m.position) if m else "", str(m.epoch) if m else "", size(m.size) if m else "",
                      m.sha256[:12] if m else "", "[green]stored[/]" if m else f"[red]{o.error}[/]")
    out.print(table)
    sys.exit(0 if all(o.manifest for o in outcomes) else 1)


@click.group()
def backups() -> None:
    """What the vault holds."""


@backups.command("list")
@click.option("--service", required=True, help="Service identifier (as `paydar status` lists it).")
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

    found = operate(state_dir, lambda r: list_vault(r, service, region, newest=limit))
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
                              str(m.epoch) if m else "", size(m.size) if m else "", m.sha256[:12] if m else "",
                              "[green]verified[/]" if e.problem is None else f"[red]REFUSED: {e.problem}[/]")
        out.print(table if rows else f"the vault holds no backup of service {service}")
    sys.exit(0 if all(row["verified"] for row in rows) else 1)


@click.command()
@click.option("--service", required=True, help="Service identifier (as `paydar status` lists it).")
@click.option("--region", required=True, help="Region of the node to rebuild.")
@click.option("--at", "at", type=Moment(), default=None,
              help="Newest backup taken at or before this time (ISO 8601, any offset such as +03:30; none: UTC).")
@click.option("--position", type=click.IntRange(min=0), default=None,
              help="Newest backup at or before this log position.")
@click.option("--lsn", default=None, metavar="LSN",
              help="PostgreSQL, with --into: recover up to this LSN (as pg_current_wal_lsn() prints it).")
@click.option("--into", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Write the verified store to this directory instead of rebuilding the node (PostgreSQL: "
                   "recover the database there, up to --at or --lsn).")
@state_option
@destructive
def restore(service: str, region: str, at: datetime | None, position: int | None, lsn: str | None,
            into: Path | None, state_dir: Path, yes: bool, dry_run: bool) -> None:
    """Rebuild a node from the vault, verifying before anything is served.

    \b
    1. picks the newest backup (at or before --at / --position);
    2. verifies its manifest's signature against the trust root, the object's
       size and SHA-256, and the whole hash chain; any failure refuses, with the reason;
    3. stops the node, keeps its old data under <state-dir>/restores/, starts it
       on the verified store; it catches up from the current primary and rejoins
       as a standby. If it does not come back, the old data is put back.
    Refuses to restore the writable primary: fail over first. Asks first unless --yes
    (--into changes nothing running and does not ask).

    \b
    A PostgreSQL service (workload: postgres): the base backup is proved with
    pg_verifybackup and every archived WAL file by its own signed manifest. Without
    --into the instance is rebuilt as a standby that replays the WAL and streams from
    the primary; with --into DIR (and --at or --lsn) the database is recovered to that
    point in DIR/pg/db, by a jailed server that is shut down once it gets there.
    """
    from paydar.ops.backups import select_nodes
    from paydar.ops.pgrestore import parse_lsn, restore_postgres
    from paydar.ops.restore import Steps, refuse_primary
    from paydar.ops.restore import restore as restore_registry

    if lsn is not None:
        try:
            position = parse_lsn(lsn)
        except BadInput as exc:
            raise click.BadParameter(str(exc), param_hint="--lsn") from None

    def run(realization: Realization, service: str, region: str, **options: Any) -> RestoreReport:
        postgres = realization.topology.service(service).workload is WorkloadKind.POSTGRES
        return (restore_postgres if postgres else restore_registry)(realization, service, region, **options)

    moment = at
    target = f"the store of node.{service}.{region} into {into}" if into else f"node.{service}.{region}"
    newest = " at or before ".join(["the newest verified backup"] + [w for w in (
        f"{at:%Y-%m-%d %H:%M:%S%z}" if at else "", f"position {position}" if position is not None else "") if w])

    def describe(realization: Realization) -> str:
        select_nodes(realization, service, region)
        if into is None:
            refuse_primary(realization, service, region)  # as the restore itself would
        stop = "" if into else ", stopping the node and keeping its old data under <state-dir>/restores/"
        return f"rebuild {target} from {newest}{stop}"

    confirm(operate(state_dir, describe), yes or into is not None, dry_run)

    def job(realization: Realization) -> RestoreReport:
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                      TimeElapsedColumn(), console=console) as progress:
            task = progress.add_task("restore", total=None)
            steps = Steps(downloaded=lambda n: progress.update(task, advance=n),
                          phase=lambda text: progress.update(task, description=text))
            return run(realization, service, region, at=moment, position=position, into=into, steps=steps)

    report = operate(state_dir, job)
    m = report.manifest
    proof = f"chain head {m.chain_head[:12]}" if m.format == SNAPSHOT_FORMAT else \
        f"pg_verifybackup, its manifest {m.chain_head[:12]}; {report.detail}"
    out.print(f"backup of {m.node} at position {m.position} (epoch {m.epoch}, {m.created:%Y-%m-%d %H:%M:%S} UTC, "
              f"{size(m.size)}) verified in {report.verify_seconds:.2f}s: signature, SHA-256 {m.sha256[:12]}, "
              f"{proof}")
    if into is not None and m.format != SNAPSHOT_FORMAT:
        out.print(f"recovered into {report.path}; no instance was touched")
    elif into is not None:
        out.print(f"verified store written to {report.path}; no node was touched")
    else:
        out.print(f"{report.node} rebuilt and caught up to position {report.caught_up_position} (primary had "
                  f"acknowledged {report.target_position}) in {report.rejoin_seconds:.2f}s; "
                  f"replaced data kept in {report.path}")


@click.command()
@click.option("--service", required=True, help="A PostgreSQL service (workload: postgres), as `paydar status` "
              "lists it.")
@click.option("--region", required=True, help="Region of the instance to rebuild (never the writable primary).")
@click.option("--timeout", default=600.0, show_default=True, type=click.FloatRange(min=1),
              help="Seconds to wait for it to stream again as a standby.")
@state_option
@destructive
def rebuild(service: str, region: str, timeout: float, state_dir: Path, yes: bool, dry_run: bool) -> None:
    """Clone one PostgreSQL instance afresh from its service's current primary.

    \b
    The way back for an instance whose data failed the integrity scan (its agent
    stopped it: `paydar status` shows it compromised) or one that will not rejoin:
    1. refuses the writable primary (fail over first: `paydar failover promote`);
    2. its agent stops the server and keeps its data aside as pg.rejected-<time>
       beside the new one (never deleted), then clones afresh from the primary;
    3. waits until it streams again as a standby in the current epoch.
    Asks first unless --yes.
    """
    from paydar.ops.rebuild import REBUILD_WHY
    from paydar.ops.rebuild import rebuild as run
    from paydar.ops.restore import refuse_primary

    node = f"node.{service}.{region}"

    def describe(realization: Realization) -> str:
        refuse_primary(realization, service, region, why=REBUILD_WHY)
        return f"set aside the data of {node} and clone it afresh from the current primary"

    confirm(operate(state_dir, describe), yes, dry_run)
    with console.status(f"rebuilding {node}") as status:
        report = operate(state_dir, lambda realization: run(realization, service, region, timeout=timeout,
                                                             phase=status.update))
    out.print(f"{report.node} rebuilt in {report.seconds:.1f}s ({report.detail}); it streams as a standby")
