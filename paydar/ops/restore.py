"""`paydar restore`: rebuild one node of a local realization from a verified vault backup.

The order is what makes it safe:
1. choose the manifest and refuse a node that is its service's writable primary (restoring
   it would drop writes acknowledged after the backup; fail over first);
2. download and verify into a staging directory while the node keeps running;
3. only then stop the node, move its data aside (kept, for forensics), put the verified store
   in place with the newest signed table it held, and start it;
4. wait until it serves again as a standby and has caught up with what the primary had
   acknowledged when the restore began.
A failure in 3 or 4 puts the old data back and starts the node as it was.

With ``into`` the verified store is written to a directory instead (a point-in-time copy
for inspection); no node is touched.
"""

from __future__ import annotations

import logging
import shutil
import time
import xmlrpc.client
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from paydar.infra.local.realizer import Realization
from paydar.model.errors import BadInput, PaydarError
from paydar.model.identity import TrustRoot
from paydar.model.ids import node_id
from paydar.model.routing import RouteMode
from paydar.node.store import verify_file
from paydar.ops.backups import select_nodes
from paydar.ops.failover import current_table, fetch_node_state
from paydar.vault.manifest import BackupManifest
from paydar.vault.restore import RestoreRefused, choose, fetch_verified, list_backups
from paydar.vault.s3 import S3Client, vault_client
from paydar.workload.contract import InstanceRole, InstanceState

__all__ = ["RestoreFailed", "RestoreReport", "Steps", "choose_backup", "rebuild_node", "refuse_primary", "restore"]

log = logging.getLogger(__name__)

DB_FILE = "registry.sqlite3"
TABLE_FILE = "table.json"
CANDIDATES = 8
"""Manifests fetched for a restore: the newest at or before the target and a few to name if it is refused."""


class RestoreFailed(PaydarError):
    """The rebuilt node did not come back; it was put back as it was."""


@dataclass(frozen=True)
class RestoreReport:
    node: str
    manifest: BackupManifest
    verify_seconds: float
    path: Path
    """The restored store (``into``) or the kept data that the restore replaced."""
    target_position: int | None = None
    """What the primary had acknowledged when the restore began (None with ``into``)."""
    caught_up_position: int | None = None
    rejoin_seconds: float | None = None
    detail: str = ""
    """What else was proved or reached (a PostgreSQL restore's WAL files and recovery point)."""


@dataclass(frozen=True)
class Steps:
    """Callbacks for progress display: download bytes, then named phases."""

    downloaded: Callable[[int], None] = lambda _: None
    phase: Callable[[str], None] = lambda _: None


def restore(realization: Realization, service: str, region: str, *, at: datetime | None = None,
            position: int | None = None, into: Path | None = None, steps: Steps | None = None,
            rejoin_timeout: float = 120.0) -> RestoreReport:
    """Restore ``node.<service>.<region>`` (or a copy into ``into``) from the vault; see the module doc."""
    steps = steps or Steps()
    node = select_nodes(realization, service, region)[0]
    if into is None:
        refuse_primary(realization, service, region)
    elif (into / DB_FILE).exists():
        raise BadInput(f"{into / DB_FILE} exists; restore into an empty directory (nothing is overwritten)")
    client, _trust, manifest = choose_backup(realization, service, region, at=at, position=position, steps=steps)
    if at is None and position is None:
        _refuse_rollback(realization, node, manifest)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    staging = (into if into is not None else realization.layout.restores / f"{node}-{stamp}" / "verified")
    staging.mkdir(parents=True, exist_ok=True)
    steps.phase(f"downloading and verifying position {manifest.position}")
    started = time.monotonic()
    fetch_verified(client, manifest, staging / DB_FILE, verify_file, steps.downloaded)
    verify_seconds = time.monotonic() - started
    if into is not None:
        return RestoreReport(node, manifest, verify_seconds, into / DB_FILE)
    return rebuild_node(realization, node, manifest, staging, verify_seconds, steps, rejoin_timeout)


def choose_backup(realization: Realization, service: str, region: str, *, at: datetime | None,
                  position: int | None, steps: Steps) -> tuple[S3Client, TrustRoot, BackupManifest]:
    """The vault (as the operator), the trust root, and the newest backup that verifies at or
    before the target."""
    client = vault_client(realization.plan.vault.endpoint, realization.vault_admin(), timeout=60)
    trust = TrustRoot.load(realization.layout.trust_root)
    steps.phase("reading manifests")
    candidates = list_backups(client, trust, service, region, at=at, position=position, newest=CANDIDATES)
    return client, trust, choose(candidates, service=service, region=region, at=at, position=position)


def _refuse_rollback(realization: Realization, node: str, manifest: BackupManifest) -> None:
    """Refuse a backup older than the newest one the node itself reports having taken.

    The node's own record is out of reach of its region's vault credentials: whoever hides
    the newest manifest in the vault cannot also change what the node remembers.
    """
    state = fetch_node_state(realization.plan.component(node).url + "/state")
    known = state.backup.position if state and state.backup else -1
    if known > manifest.position:
        raise RestoreRefused(f"{node} reports its last backup at position {known}, but the newest backup that "
                             f"verifies in the vault is at position {manifest.position}: a newer one is missing or "
                             "hidden. Investigate `paydar backups list`; restore an older one only with --position")


def refuse_primary(realization: Realization, service: str, region: str, *,
                   why: str = "restoring it would drop writes acknowledged after the backup") -> None:
    """Refuse when the verified table *or the node itself* says it is the writable primary:
    neither a lying gateway nor a stale table may make restore rebuild the real primary."""
    route = current_table(realization).table.route(service)
    state = fetch_node_state(realization.plan.component(node_id(service, region)).url + "/state")
    says_primary = state is not None and state.role is InstanceRole.PRIMARY and state.mode is RouteMode.READ_WRITE
    if says_primary or (route.primary == region and route.writable):
        others = [r for r in route.regions if r != region]
        raise RestoreRefused(
            f"node.{service}.{region} is the writable primary of service {service} (epoch {route.epoch}): "
            f"{why}. Fail over first: "
            f"`paydar failover promote --service {service} --region {others[0] if others else '<other>'}`")


def rebuild_node(realization: Realization, node: str, manifest: BackupManifest, staging: Path,
                 verify_seconds: float, steps: Steps, rejoin_timeout: float) -> RestoreReport:
    """Swap ``node``'s data directory for the verified one in ``staging`` (the old one kept beside
    it), start the node and wait until it has caught up; a failure puts the old data back."""
    layout = realization.layout
    data_dir = layout.data(node)
    kept = staging.parent / "replaced"
    target = _primary_acked(realization, manifest.service)
    rpc = realization.supervisor.rpc().supervisor
    steps.phase(f"stopping {node}")
    _stop(rpc, node)
    swapped = False
    try:
        if data_dir.exists():
            data_dir.rename(kept)
        staging.rename(data_dir)
        if (kept / TABLE_FILE).exists():  # the newest signed table it held: a restart obeys it (fail static)
            shutil.copy2(kept / TABLE_FILE, data_dir / TABLE_FILE)
        swapped = True
        steps.phase(f"starting {node} and catching up to position {target}")
        started = time.monotonic()
        rpc.startProcess(node, True)
        caught_up = _wait_rejoined(realization, node, target, rejoin_timeout)
    except BaseException as exc:
        _put_back(realization, node, data_dir, kept, swapped)
        raise RestoreFailed(f"{node} did not rejoin after the restore ({exc}); its previous data was put back "
                            "and it was started as it was") from exc
    log.info("restore done node=%s position=%d caught_up=%d", node, manifest.position, caught_up)
    return RestoreReport(node, manifest, verify_seconds, kept, target, caught_up, time.monotonic() - started)


def _stop(rpc: Any, node: str) -> None:
    """Stop a program; one that is not running (crashed on unreadable data) is already stopped."""
    try:
        rpc.stopProcess(node, True)
    except xmlrpc.client.Fault as exc:
        if "NOT_RUNNING" not in exc.faultString:
            raise


def _primary_acked(realization: Realization, service: str) -> int:
    """What the current primary has acknowledged: the rebuilt node must reach at least this."""
    route = current_table(realization).table.route(service)
    if route.primary is None:
        return 0
    state = fetch_node_state(realization.plan.component(node_id(service, route.primary)).url + "/state")
    return state.acked_position if state else 0


def _wait_rejoined(realization: Realization, node: str, target: int, timeout: float) -> int:
    url = realization.plan.component(node).url + "/state"
    deadline = time.monotonic() + timeout
    last: InstanceState | None = None
    while time.monotonic() < deadline:
        last = fetch_node_state(url, timeout=1.0)
        if last and not last.compromised and last.log_position >= target:
            return last.log_position
        time.sleep(0.1)
    raise TimeoutError(f"not caught up to position {target} within {timeout:.0f}s; last state: {last}")


def _put_back(realization: Realization, node: str, data_dir: Path, kept: Path, swapped: bool) -> None:
    rpc = realization.supervisor.rpc().supervisor
    _stop(rpc, node)
    if kept.exists():
        if swapped or data_dir.exists():
            shutil.rmtree(data_dir, ignore_errors=True)
        kept.rename(data_dir)
    rpc.startProcess(node, True)
