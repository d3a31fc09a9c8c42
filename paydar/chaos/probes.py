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

from paydar.chaos.faults import Fault, replicas_taken
from paydar.chaos.invariants import Violation, ViolationKind, check_acknowledged
from paydar.chaos.safeguard import Safeguard
from paydar.chaos.target import (
    ActivityFailed,
    Configuration,
    Secrets,
    acknowledged_of,
    append_ledger,
    component,
    fault,
    ledger_size,
    load_ledger,
    realization,
    record_abort,
)
from paydar.chaos.workload import read_back
from paydar.gateway.client import GatewayClient
from paydar.infra.local.realizer import Realization
from paydar.model.resilience import cause
from paydar.model.topology import Limit
from paydar.ops.backups import list_vault
from paydar.ops.failover import current_table, fetch_node_state
from paydar.ops.restore import CANDIDATES
from paydar.probes.engine import run_canary
from paydar.vault.manifest import BackupManifest
from paydar.vault.s3 import vault_client

__all__ = ["acknowledged_writes_lost", "backups_intact", "certified_route_unchanged", "citizen_availability",
           "corrupted_documents_served", "read_only_now", "routing_table", "seconds_until_available",
           "seconds_until_compromise_detected", "served_per_region", "served_per_service"]

REQUEST_TIMEOUT = 5.0


def _unaffected(system: Realization) -> list[str]:
    held = fault(system)
    return [r for r in system.topology.region_names if not held or r != held.get("region")]


def read_only_now(system: Realization) -> dict[str, str]:
    """Services the fault in force may leave read-only because they accept it (``accepts:``):
    service -> the region whose replica the fault took. Their reads are still checked."""
    lost = replicas_taken(system.topology, fault(system))
    return {service: region for service, region in lost.items()
            if Limit.READ_ONLY_AFTER_REGION_LOSS in system.topology.service(service).accepts}


def citizen_availability(writes: int = 4, configuration: Configuration = None, secrets: Secrets = None) -> float:
    """Fraction of citizen requests served: ``writes`` fresh documents per service written and read
    back through each unaffected region's gateway; a request counts only when the write was
    acknowledged and the read returned exactly what was written. A service the fault may leave
    read-only by its own declaration counts when it serves a read of an earlier acknowledged write."""
    system = realization(configuration)
    return asyncio.run(_availability(system, writes))[0]


async def _availability(system: Realization, writes: int) -> tuple[float, set[str]]:
    """The share served, and the services with a request not served."""
    outcomes = await served_per_service(system, writes, _unaffected(system), read_only_now(system))
    served = [ok for per in outcomes.values() for ok in per]
    unserved = {service for (_, service), per in outcomes.items() if not all(per)}
    return (sum(served) / len(served) if served else 0.0), unserved


async def served_per_region(system: Realization, writes: int, regions: list[str]) -> dict[str, tuple[int, int]]:
    """Per region: (served, attempted) write-then-read requests through its gateway, ``writes`` per service."""
    outcomes = await served_per_service(system, writes, regions, {})
    return {region: (sum(ok for (r, _), per in outcomes.items() if r == region for ok in per),
                     sum(len(per) for (r, _), per in outcomes.items() if r == region)) for region in regions}


async def served_per_service(system: Realization, writes: int, regions: list[str],
                             read_only: dict[str, str]) -> dict[tuple[str, str], list[bool]]:
    """Per (region, service): whether each of ``writes`` write-then-read requests through that
    region's gateway was served; every write goes to the ledger so later probes check it was
    not lost. A service in ``read_only`` whose write is refused is served when an earlier
    acknowledged write of it reads back exactly. An http service is served when its canary
    passes through that gateway (its state is its app's own: nothing goes to the ledger)."""
    run = uuid.uuid4().hex[:8]
    apps = system.topology.http_services
    services = [s.id for s in system.topology.registry_services]
    earlier = {service: acknowledged_of(system, service) for service in read_only}
    attempts: list[tuple[str, str, str, dict[str, Any]]] = [
        (region, service, f"chaos-{run}-{region}-{n}",
         {"citizen_id": f"{(n * 7919 + 17) % 10**10:010d}", "kind": "national-id-card",
          "data": {"chaos": run, "n": n}})
        for region in regions for service in services for n in range(writes)]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)) as session:
        async def read(client: GatewayClient, service: str, doc_id: str, document: dict[str, Any]) -> bool:
            reply = await client.get(service, doc_id)
            return reply.ok and {k: reply.body.get(k) for k in document} == document

        async def one(region: str, service: str, doc_id: str, document: dict[str, Any]) -> tuple[bool, bool]:
            client = GatewayClient(session, system.plan.gateway(region).url)
            written = await client.put(service, doc_id, document)
            if written.ok and written.body.get("acknowledged") is True:
                return True, await read(client, service, doc_id, document)
            known = earlier.get(service)
            return False, known is not None and await read(client, service, *known)

        async def app(region: str, service: str, n: int) -> tuple[str | None, bool, bool]:
            """An app's ledger record written and read back (its id, acknowledged, served), or its canary."""
            base = f"{system.plan.gateway(region).url}/v1/services/{service}"
            ledger = apps[service].ledger
            if ledger is None:
                return None, False, await run_canary(session, base, apps[service].canary) is None
            record = f"chaos-{run}-{region}-{n}"
            written = await run_canary(session, base, ledger.write.canary(record)) is None
            return record, written, written and await run_canary(session, base, ledger.read.canary(record)) is None

        outcomes = await asyncio.gather(*(one(*a) for a in attempts))
        canaries = [(region, service, n) for region in regions for service in apps for n in range(writes)]
        passed = await asyncio.gather(*(app(*c) for c in canaries))
    records = [(service, record, {"ledger": record}, written)
               for (_, service, _), (record, written, _) in zip(canaries, passed, strict=True) if record]
    append_ledger(system, records + [(service, doc_id, document, acked) for (_, service, doc_id, document), (acked, _)
                                     in zip(attempts, outcomes, strict=True)])
    per: dict[tuple[str, str], list[bool]] = {}
    for (region, service, _), (_, _, served) in zip(canaries, passed, strict=True):  # an agency app: its own way
        per.setdefault((region, service), []).append(served)
    for (region, service, *_), (_, served) in zip(attempts, outcomes, strict=True):
        per.setdefault((region, service), []).append(served)
    return per


def seconds_until_available(timeout: float | None = None, configuration: Configuration = None,
                            secrets: Secrets = None, *, hold_to_rto: bool = True) -> float:
    """Seconds until every citizen request through the unaffected gateways is served again.

    Each service is held to its own ``rto``: this raises (the experiment then fails) as soon as
    a service is still not served once its RTO has passed, naming it and, when the fault took a
    replica its writes need, why. ``timeout`` bounds the wait further (default: the largest RTO),
    and so does the safeguard's ``max_wait``. A rollback settling the system for the next
    experiment passes ``hold_to_rto=False``: the cell was judged already, only ``timeout`` counts.
    The :class:`~paydar.chaos.safeguard.Safeguard` of the configuration aborts the wait sooner
    when availability stays below its floor, and leaves ``chaos/aborted.json`` saying why.
    """
    system = realization(configuration)
    topology = system.topology
    guard = Safeguard.of(configuration)
    bound = min(timeout if timeout is not None else max(s.rto for s in topology.services), guard.max_wait)
    lost = replicas_taken(topology, fault(system))
    started = time.monotonic()
    while True:
        share, unserved = asyncio.run(_availability(system, 1))
        elapsed = time.monotonic() - started
        if not unserved:
            return round(elapsed, 3)
        if reason := guard.observe(share, elapsed):
            record_abort(system, reason)
            raise ActivityFailed(f"safeguard: {reason}")
        past_rto = sorted(s for s in unserved if hold_to_rto and elapsed >= topology.service(s).rto)
        if past_rto:
            why = [cause(topology.service(s), lost[s]) for s in past_rto if s in lost]
            missed = ", ".join(f"{s} (rto {topology.service(s).rto:g}s)" for s in past_rto)
            raise ActivityFailed(f"not served again within {elapsed:.0f}s: {missed}; last availability {share:.2f}"
                                 + "".join(f"; {w}" for w in why if w))
        if elapsed >= bound:
            raise ActivityFailed(f"not served again within {elapsed:.0f}s, the most this cell waits (timeout or "
                                 f"--max-wait): {', '.join(sorted(unserved))}; last availability {share:.2f}")
        time.sleep(0.1)


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
