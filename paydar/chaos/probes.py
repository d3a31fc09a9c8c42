"""Chaos Toolkit probes: what citizens see of the national system, in numbers.

Every probe measures through the gateways of the regions the fault in force does not touch
(all of them when there is none), as a citizen there would. Writes use fresh document ids
and go to the shared ledger, so later probes can prove no acknowledged write was lost.
"""

import asyncio
import hashlib
import time
import uuid
from typing import Any

import aiohttp

from paydar.chaos.faults import Fault
from paydar.chaos.invariants import Violation, ViolationKind, check_acknowledged
from paydar.chaos.target import (
    ActivityFailed,
    Configuration,
    Secrets,
    append_ledger,
    component,
    fault,
    ledger_size,
    load_ledger,
    realization,
)
from paydar.chaos.workload import read_back
from paydar.gateway.client import GatewayClient
from paydar.infra.local.realizer import Realization
from paydar.ops.backups import list_vault
from paydar.ops.failover import current_table, fetch_node_state
from paydar.ops.restore import CANDIDATES
from paydar.vault.manifest import BackupManifest
from paydar.vault.s3 import vault_client

__all__ = ["acknowledged_writes_lost", "backups_intact", "certified_route_unchanged", "citizen_availability",
           "corrupted_documents_served", "routing_table", "seconds_until_available",
           "seconds_until_compromise_detected"]

REQUEST_TIMEOUT = 5.0


def _unaffected(system: Realization) -> list[str]:
    held = fault(system)
    return [r for r in system.topology.region_names if not held or r != held.get("region")]


def citizen_availability(writes: int = 4, configuration: Configuration = None, secrets: Secrets = None) -> float:
    """Fraction of citizen requests served: ``writes`` fresh documents per service written and read
    back through each unaffected region's gateway; a request counts only when the write was
    acknowledged and the read returned exactly what was written."""
    system = realization(configuration)
    return asyncio.run(_availability(system, writes))


async def _availability(system: Realization, writes: int) -> float:
    per_region = await served_per_region(system, writes, _unaffected(system))
    total = sum(n for _, n in per_region.values())
    return sum(served for served, _ in per_region.values()) / total if total else 0.0


async def served_per_region(system: Realization, writes: int, regions: list[str]) -> dict[str, tuple[int, int]]:
    """Per region: (served, attempted) write-then-read requests through its gateway, ``writes`` per
    service; every write goes to the ledger so later probes check it was not lost."""
    run = uuid.uuid4().hex[:8]
    services = [s.id for s in system.topology.services]
    attempts: list[tuple[str, str, str, dict[str, Any]]] = [
        (region, service, f"chaos-{run}-{region}-{n}",
         {"citizen_id": f"{(n * 7919 + 17) % 10**10:010d}", "kind": "national-id-card",
          "data": {"chaos": run, "n": n}})
        for region in regions for service in services for n in range(writes)]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)) as session:
        async def one(region: str, service: str, doc_id: str, document: dict[str, Any]) -> tuple[bool, bool]:
            client = GatewayClient(session, system.plan.gateway(region).url)
            written = await client.put(service, doc_id, document)
            acked = written.ok and written.body.get("acknowledged") is True
            if not acked:
                return False, False
            read = await client.get(service, doc_id)
            return True, read.ok and {k: read.body.get(k) for k in document} == document

        outcomes = await asyncio.gather(*(one(*a) for a in attempts))
    append_ledger(system, [(service, doc_id, document, acked)
                           for (_, service, doc_id, document), (acked, _) in zip(attempts, outcomes, strict=True)])
    counts = {region: [0, 0] for region in regions}
    for (region, *_), (_, served) in zip(attempts, outcomes, strict=True):
        counts[region][0] += served
        counts[region][1] += 1
    return {region: (served, total) for region, (served, total) in counts.items()}


def seconds_until_available(timeout: float = 30.0,
                            configuration: Configuration = None, secrets: Secrets = None) -> float:
    """Seconds until every citizen request through the unaffected gateways is served again;
    raises when that does not happen within ``timeout`` (the experiment then fails)."""
    system = realization(configuration)
    started = time.monotonic()
    last = 0.0
    while time.monotonic() - started < timeout:
        last = asyncio.run(_availability(system, 1))
        if last == 1.0:
            return round(time.monotonic() - started, 3)
        time.sleep(0.1)
    raise ActivityFailed(f"citizens not fully served within {timeout:.0f}s (last availability {last:.2f})")


def seconds_until_compromise_detected(timeout: float = 20.0, node: str | None = None,
                                      configuration: Configuration = None, secrets: Secrets = None) -> float:
    """Seconds until ``node`` (by default the one the fault in force attacked) reports its own data
    compromised (ransomware, forged records); raises when it does not within ``timeout``."""
    system = realization(configuration)
    node = node or (fault(system) or {}).get("component")
    if not node:
        raise ActivityFailed("no node named and no attack on a node in force")
    url = component(system, node).url + "/state"
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if (state := fetch_node_state(url)) and state.compromised:
            return round(time.monotonic() - started, 3)
        time.sleep(0.1)
    raise ActivityFailed(f"{node} did not notice its compromised data within {timeout:.0f}s")


REUSE_SECONDS = 2.0
_checked: dict[str, tuple[float, tuple[int, ...], list[Violation]]] = {}
"""Per state directory: when the ledger was last read back, its size then, and what was found."""


def _violations(configuration: Configuration, kind: ViolationKind) -> int:
    """Distinct acknowledged writes that some unaffected gateway fails in this way.

    The lost and the corrupted probes run back to back over the same writes: a read-back less
    than ``REUSE_SECONDS`` old, of a ledger that has not grown since, answers both.
    """
    system = realization(configuration)
    key, size = str(system.layout.root), ledger_size(system)
    at, seen, found = _checked.get(key, (0.0, (), []))
    if time.monotonic() - at > REUSE_SECONDS or seen != size:
        ledger = load_ledger(system)

        async def through_every_gateway() -> list[dict[tuple[str, str], dict[str, Any] | None]]:
            return await asyncio.gather(*(read_back(system, ledger, region) for region in _unaffected(system)))

        found = [v for reads in asyncio.run(through_every_gateway()) for v in check_acknowledged(ledger, reads)]
        _checked[key] = (time.monotonic(), size, found)
    return len({(v.service, v.doc_id) for v in found if v.kind is kind})


def acknowledged_writes_lost(configuration: Configuration = None, secrets: Secrets = None) -> int:
    """Acknowledged writes of the experiment's ledger that an unaffected gateway cannot return."""
    return _violations(configuration, ViolationKind.LOST)


def corrupted_documents_served(configuration: Configuration = None, secrets: Secrets = None) -> int:
    """Acknowledged writes an unaffected gateway returns with other content than acknowledged."""
    return _violations(configuration, ViolationKind.CORRUPTED)


def certified_route_unchanged(configuration: Configuration = None, secrets: Secrets = None) -> bool:
    """After an attack on routing (a rogue table, a lying prober): every service's route is still
    the one certified before it (True when no such attack is in force)."""
    system = realization(configuration)
    held = fault(system)
    if not held or "routes" not in held:
        return True
    now = {sid: route.model_dump(mode="json") for sid, route in current_table(system).table.services.items()}
    return bool(now == held["routes"])


def backups_intact(configuration: Configuration = None, secrets: Secrets = None) -> bool:
    """After a stolen-credentials attack: the attacked backup version is still there, byte for
    byte, and its manifest still verifies (True when no such attack is in force)."""
    system = realization(configuration)
    held = fault(system)
    if not held or held.get("kind") != Fault.STOLEN_VAULT_CREDENTIALS:
        return True
    m = BackupManifest.model_validate(held["backup"])
    admin = vault_client(system.plan.vault.endpoint, system.vault_admin())
    body = admin.get_object(Bucket=m.bucket, Key=m.key, VersionId=m.version_id)["Body"].read()
    listed = list_vault(system, m.service, m.region, newest=CANDIDATES)[m.region]
    return (len(body), hashlib.sha256(body).hexdigest()) == (m.size, m.sha256) and \
        any(entry.verified == m for entry in listed)


def routing_table(configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """The newest certified routing table a gateway holds: version and each service's route."""
    table = current_table(realization(configuration)).table
    return {"version": table.version,
            "services": {sid: {"primary": route.primary, "epoch": route.epoch, "mode": route.mode.value}
                         for sid, route in table.services.items()}}
