"""`paydar backup now` and `paydar backups list` against a local realization.

Backups are taken by the nodes themselves (only a node holds its region's vault identity
and its own signing key); this module asks them over their admin endpoint and reads the
vault with the operator's admin identity to show what it holds.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from paydar.infra.local.realizer import Realization
from paydar.model.errors import BadInput
from paydar.model.identity import TrustRoot
from paydar.model.ids import node_id
from paydar.vault.manifest import BackupManifest
from paydar.vault.restore import Listed, list_backups
from paydar.vault.s3 import vault_client

__all__ = ["BackupOutcome", "backup_now", "list_vault", "select_nodes"]

BACKUP_TIMEOUT = 600.0


@dataclass(frozen=True)
class BackupOutcome:
    """One node's answer to "back up now"."""

    node: str
    manifest: BackupManifest | None
    error: str | None = None


def select_nodes(realization: Realization, service: str | None, region: str | None) -> list[str]:
    """Node ids matching the filters; a clear error for an unknown service or region."""
    topology = realization.topology
    apps = topology.http_services
    if service is not None:
        topology.service(service)  # KeyError with the known ids
        if service in apps:
            raise BadInput(f"service {service} is an agency app (workload: http): its state is its app's own, "
                           "and Paydar holds no backup of it")
    if region is not None and region not in topology.region_names:
        raise BadInput(f"unknown region {region!r}; regions are {', '.join(topology.region_names)}")
    nodes = [node_id(s.id, r) for s in topology.vaulted_services for r in s.regions
             if (service is None or s.id == service) and (region is None or r == region)]
    if not nodes:
        raise BadInput(f"service {service} is not hosted in {region}")
    return nodes


def backup_now(realization: Realization, nodes: list[str],
               done: Callable[[BackupOutcome], None] = lambda _: None) -> list[BackupOutcome]:
    """Ask each node to back up now (a few at a time); ``done`` is called as each one answers."""
    def one(node: str) -> BackupOutcome:
        token = realization.admin_token(node)
        request = urllib.request.Request(realization.plan.component(node).url + "/v1/backup", data=b"",
                                         method="POST", headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(request, timeout=BACKUP_TIMEOUT) as response:
                outcome = BackupOutcome(node, BackupManifest.model_validate(json.loads(response.read())["manifest"]))
        except urllib.error.HTTPError as exc:
            outcome = BackupOutcome(node, None, _error_text(exc))
        except (urllib.error.URLError, OSError, ValueError) as exc:
            outcome = BackupOutcome(node, None, f"node did not answer: {exc}")
        done(outcome)
        return outcome

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(one, nodes))


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(exc.read()).get("error", exc))
    except ValueError:
        return f"HTTP {exc.code}"


def list_vault(realization: Realization, service: str, region: str | None,
               newest: int | None = None) -> dict[str, list[Listed]]:
    """What the vault holds for ``service``, per region, newest first (``newest`` of each), each verified."""
    regions = [region] if region else list(realization.topology.service(service).regions)
    select_nodes(realization, service, region)
    client = vault_client(realization.plan.vault.endpoint, realization.vault_admin())
    trust = TrustRoot.load(realization.layout.trust_root)
    return {r: list_backups(client, trust, service, r, newest=newest) for r in regions}
