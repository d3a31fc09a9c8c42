"""Chaos Toolkit actions: one attack on one component, and the rollback that undoes it.

Each attack acts through a public interface (supervisord's API, the link proxies' admin
API, HTTP, the vault's S3 API) and records the fault in force, so probes measure citizens
through the other regions and ``undo_fault`` knows what to put back. Targets are roles
("the primary of the service"), resolved when the action runs, so experiments stay valid
whatever earlier ones moved.
"""

import asyncio
import os
import signal
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from botocore.exceptions import ClientError
from yarl import URL

from paydar.chaos.faults import Fault
from paydar.chaos.impostor import Impostor
from paydar.chaos.liar import ScriptedProber
from paydar.chaos.probes import seconds_until_available
from paydar.chaos.reach import IMPOSTORS, LIARS, change_links, offer_everywhere, routes_in_force
from paydar.chaos.target import (
    ActivityFailed,
    Configuration,
    Secrets,
    clear_fault,
    primaries_now,
    primary_of,
    realization,
    record_fault,
)
from paydar.chaos.target import component as resolve
from paydar.infra.local.plan import PlannedComponent
from paydar.infra.local.realizer import Realization, probe
from paydar.model.errors import PaydarError
from paydar.model.ids import Kind, controller_id, gateway_id, link_id, node_id, prober_id
from paydar.model.routing import sign_table
from paydar.ops.backups import backup_now
from paydar.ops.failover import current_table
from paydar.ops.restore import restore
from paydar.vault.restore import RestoreRefused
from paydar.vault.s3 import error_code, load_identity, vault_client

__all__ = ["corrupt_node_data", "crash_component", "cut_link", "delay_link", "drop_link", "encrypt_node_data",
           "flood_gateway", "flood_instance", "hang_component", "heal_link", "impersonate_instance",
           "partition_region", "push_rogue_table",
           "resume_component", "run_lying_prober", "tamper_backups_with_region_credentials", "undo_fault"]

RESTORE_TIMEOUT = 60.0


def _standby_of(system: Realization, service: str) -> str:
    route = current_table(system).table.route(service)
    return next(r for r in route.regions if r != route.primary)


def _affected(target: PlannedComponent) -> str | None:
    """The region whose citizens an outage of ``target`` leaves without their own window: a
    gateway's. Every other component has peers in other regions, so nobody is exempted."""
    return target.region if target.kind is Kind.GATEWAY else None


def crash_component(component: str, configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """Crash (stop through supervisord) one component: an id such as ``gateway.<region>``,
    ``controller.<region>``, ``vault``, or a node by role (``node.<service>@primary``)."""
    system = realization(configuration)
    target = resolve(system, component)
    system.supervisor.rpc().supervisor.stopProcess(target.id, True)
    return record_fault(system, kind=Fault.CRASH, component=target.id, region=_affected(target))


def hang_component(component: str, configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """Freeze (SIGSTOP) one component: a gray failure, alive to the kernel but answering nothing."""
    system = realization(configuration)
    target = resolve(system, component)
    pid = int(system.supervisor.rpc().supervisor.getProcessInfo(target.id)["pid"])
    os.kill(pid, signal.SIGSTOP)
    return record_fault(system, kind=Fault.HANG, component=target.id, region=_affected(target), pid=pid)


def resume_component(component: str, configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """Bring a crashed or frozen component back: SIGCONT if it is stopped, start it if it is not running."""
    system = realization(configuration)
    target = resolve(system, component)
    rpc = system.supervisor.rpc().supervisor
    info = rpc.getProcessInfo(target.id)
    if info["statename"] == "RUNNING":
        os.kill(int(info["pid"]), signal.SIGCONT)  # harmless on a process that is not stopped
        return {"component": target.id, "resumed": "continued"}
    rpc.startProcess(target.id, True)
    return {"component": target.id, "resumed": "started"}


def cut_link(source: str, target: str, configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """Cut the link from region ``source`` to region ``target``: connections refused at once."""
    system = realization(configuration)
    primaries = primaries_now(system)
    done = change_links(system, [(source, target)], "cut")
    return record_fault(system, kind=Fault.CUT, component=link_id(source, target), region=None, primaries=primaries,
                        **done)


def drop_link(source: str, target: str, configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """Blackhole the link: connections are accepted and bytes vanish (a gray partition)."""
    system = realization(configuration)
    primaries = primaries_now(system)
    done = change_links(system, [(source, target)], "drop")
    return record_fault(system, kind=Fault.DROP, component=link_id(source, target), region=None, primaries=primaries,
                        **done)


def delay_link(source: str, target: str, delay_ms: int = 300,
               configuration: Configuration = None, secrets: Secrets = None
               ) -> dict[str, Any]:
    """Add ``delay_ms`` of latency to every chunk the link forwards."""
    system = realization(configuration)
    done = change_links(system, [(source, target)], "delay", delay_ms=delay_ms)
    return record_fault(system, kind=Fault.DELAY, component=link_id(source, target), region=None, **done)


def heal_link(source: str, target: str, configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """Put the link back to passing traffic with no delay."""
    return change_links(realization(configuration), [(source, target)], "heal")


def partition_region(region: str | None = None, service: str | None = None,
                     configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """Cut every link to and from ``region`` (or the region holding ``service``'s primary)."""
    system = realization(configuration)
    if region is None:
        if service is None:
            raise ActivityFailed("partition_region needs a region or a service whose primary's region to cut")
        region = primary_of(system, service)
    names = system.topology.region_names
    done = change_links(system, [(a, b) for a in names for b in names if a != b and region in (a, b)], "cut")
    return record_fault(system, kind=Fault.PARTITION, component=f"region.{region}", region=region, **done)


def _backed_up(system: Realization, node: str) -> int:
    [outcome] = backup_now(system, [node])
    if outcome.manifest is None:
        raise ActivityFailed(f"could not back {node} up before the attack: {outcome.error}")
    return outcome.manifest.position


def encrypt_node_data(node: str, configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """Ransomware: back the node up, then overwrite its store in place with random bytes."""
    system = realization(configuration)
    target = resolve(system, node)
    position = _backed_up(system, target.id)
    for path in system.layout.data(target.id).glob("registry.sqlite3*"):
        with path.open("r+b") as victim:
            victim.write(os.urandom(path.stat().st_size))
    return record_fault(system, kind=Fault.ENCRYPT, component=target.id, region=None, service=target.service,
                        node_region=target.region, backup_position=position)


def corrupt_node_data(node: str, configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """Silent corruption: back the node up, then change the newest record's body in place,
    the way an attacker with disk access forges one document."""
    system = realization(configuration)
    target = resolve(system, node)
    position = _backed_up(system, target.id)
    with sqlite3.connect(system.layout.data(target.id) / "registry.sqlite3", timeout=10) as db:
        changed = db.execute("UPDATE log SET body = CAST(body AS BLOB) || x'20' "
                             "WHERE position = (SELECT max(position) FROM log)").rowcount
    if not changed:
        raise ActivityFailed(f"{target.id} holds no record to corrupt yet; write some documents first")
    return record_fault(system, kind=Fault.CORRUPT, component=target.id, region=None, service=target.service,
                        node_region=target.region, backup_position=position)


def push_rogue_table(service: str, controller: str | None = None,
                     configuration: Configuration = None, secrets: Secrets = None
                     ) -> dict[str, Any]:
    """With one stolen controller key (``controller.<region>``; by default the region the table would
    move the primary to), sign a table moving the service's primary to a standby and offer it to
    every node, gateway and controller; returns how each answered (all must refuse)."""
    system = realization(configuration)
    held = current_table(system).table
    route = held.route(service)
    target = _standby_of(system, service)
    moved = route.model_copy(update={"primary": target, "standbys": tuple(r for r in route.regions if r != target),
                                     "epoch": route.epoch + 50})
    rogue = held.model_copy(update={"version": held.version + 100, "reason": "rogue: one stolen key",
                                    "services": {**held.services, service: moved}})
    stolen = resolve(system, controller or controller_id(target))
    signed = sign_table(rogue, [system.keystore().signer(stolen.id)]).model_dump_json().encode()
    routes = routes_in_force(system)
    answers = asyncio.run(offer_everywhere(system, signed))
    record_fault(system, kind=Fault.ROGUE_TABLE, component=stolen.id, region=None, routes=routes)
    return {"accepted_by": sorted(c for c, status in answers.items() if status == 200), "answers": answers}


def tamper_backups_with_region_credentials(service: str, region: str,
                                           configuration: Configuration = None, secrets: Secrets = None
                                           ) -> dict[str, str]:
    """With a region's stolen vault credentials, try to delete, shorten and read around the
    service's backups; returns each attempt's outcome (the vault must refuse every one)."""
    system = realization(configuration)
    [outcome] = backup_now(system, [node_id(service, region)])
    if outcome.manifest is None:
        raise ActivityFailed(f"no backup to attack: {outcome.error}")
    m = outcome.manifest
    stolen = vault_client(system.plan.vault.endpoint, load_identity(system.layout.vault_region(region)))
    other = next(r for r in system.topology.service(service).regions if r != region)
    sooner = datetime.now(UTC) + timedelta(minutes=1)
    attempts: dict[str, Callable[[], object]] = {
        "delete-version": lambda: stolen.delete_object(Bucket=m.bucket, Key=m.key, VersionId=m.version_id),
        "shorten-retention": lambda: stolen.put_object_retention(
            Bucket=m.bucket, Key=m.key, VersionId=m.version_id, BypassGovernanceRetention=True,
            Retention={"Mode": "COMPLIANCE", "RetainUntilDate": sooner}),
        "read-other-region": lambda: stolen.list_objects_v2(Bucket=m.bucket, Prefix=f"{other}/"),
        "plant-in-other-region": lambda: stolen.put_object(Bucket=m.bucket, Key=f"{other}/manifests/x.json",
                                                           Body=b"{}"),
        # Allowed by S3 (it stacks a new version); backups_intact proves restore never uses it.
        "overwrite-backup": lambda: stolen.put_object(Bucket=m.bucket, Key=m.key, Body=b"encrypted by attacker"),
    }
    results = {}
    for name, attempt in attempts.items():
        try:
            attempt()
            results[name] = "ALLOWED"
        except ClientError as exc:
            results[name] = error_code(exc)
    record_fault(system, kind=Fault.STOLEN_VAULT_CREDENTIALS, component=f"vault identity of {region}", region=None,
                 service=service, backup=m.model_dump(mode="json"))
    return results


def flood_gateway(region: str, seconds: float = 5.0, concurrency: int = 200,
                  configuration: Configuration = None, secrets: Secrets = None) -> dict[str, int]:
    """Flood one region's gateway with reads for ``seconds`` from ``concurrency`` clients (bounded);
    returns the responses by status (shedding shows as 503)."""
    system = realization(configuration)
    record_fault(system, kind=Fault.FLOOD, component=gateway_id(region), region=region)
    service = system.topology.first_registry_service.id
    return asyncio.run(_flood(f"{system.plan.gateway(region).url}/v1/services/{service}/documents/flood", seconds,
                              concurrency))


def flood_instance(component: str, seconds: float = 4.0, concurrency: int = 200,
                   configuration: Configuration = None, secrets: Secrets = None) -> dict[str, int]:
    """Flood one agency app instance (``node.<service>@primary``) directly with GETs of its canary
    path for ``seconds`` from ``concurrency`` clients (bounded), as anything in its region could;
    returns the answers by status. The gateways route around it while it drowns."""
    system = realization(configuration)
    target = resolve(system, component)
    http = system.topology.http_services.get(str(target.service))
    if http is None:
        raise ActivityFailed(f"{target.id} is not an app instance; flood a gateway with flood_gateway")
    record_fault(system, kind=Fault.FLOOD, component=target.id, region=None)
    return asyncio.run(_flood(target.url + http.canary.path, seconds, concurrency))


def impersonate_instance(component: str, configuration: Configuration = None,
                         secrets: Secrets = None) -> dict[str, Any]:
    """Replace one agency app instance (``node.<service>@primary``) with one that answers 200 to its
    health path and 500 to every citizen: probers that run the canary must judge it by the canary."""
    system = realization(configuration)
    target = resolve(system, component)
    try:
        IMPOSTORS[str(system.layout.root)] = Impostor(system, target).__enter__()
    except PaydarError as exc:
        raise ActivityFailed(str(exc)) from None
    return record_fault(system, kind=Fault.LYING_INSTANCE, component=target.id, region=None)


async def _flood(url: str, seconds: float, concurrency: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2),
                                     connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        async def client() -> None:
            while time.monotonic() < deadline:
                try:
                    async with session.get(URL(url, encoded=True)) as response:
                        await response.read()
                        key = str(response.status)
                except (aiohttp.ClientError, TimeoutError):
                    key = "error"
                counts[key] = counts.get(key, 0) + 1

        await asyncio.gather(*(client() for _ in range(concurrency)))
    return counts


SETTLE_TIMEOUT = 60.0


def run_lying_prober(region: str | None = None, service: str | None = None,
                     configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """With ``prober.<region>``'s stolen key, claim every round that ``service``'s primary is down
    (without a service: that every node and gateway is down). One vantage point out of n must be
    able neither to trigger nor to block a failover. Without a region, the first prober outside
    the attacked primary's region lies."""
    system = realization(configuration)
    targets = {node_id(service, primary_of(system, service))} if service else \
        {c.id for c in system.plan.components if c.kind in (Kind.NODE, Kind.GATEWAY)}
    probers = system.plan.of_kind(Kind.PROBER)
    prober = resolve(system, prober_id(region)) if region else \
        next((c for c in probers if not any(t.endswith(f".{c.region}") for t in targets)), probers[0])
    routes = routes_in_force(system)
    liar = ScriptedProber(system, str(prober.region), lambda _round, t: t not in targets)
    LIARS[str(system.layout.root)] = liar.__enter__()
    return record_fault(system, kind=Fault.LIE, component=prober.id, region=None, routes=routes)


def _restore_when_allowed(system: Realization, held: dict[str, Any]) -> None:
    """Restore a node whose data an attack destroyed. A node that was the writable primary is
    first failed over by the controllers (it reports itself compromised), so wait for that."""
    deadline = time.monotonic() + RESTORE_TIMEOUT
    while True:
        try:
            restore(system, held["service"], held["node_region"])
            return
        except RestoreRefused:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.5)


def undo_fault(configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """Rollback for every attack above: restart, resume, heal or restore what the fault in force broke,
    then wait (bounded) until citizens are served through every gateway again, so the next
    experiment starts from a settled system."""
    system = realization(configuration)
    held = clear_fault(system)
    if held is None:
        return {"undone": None, "settled_after_seconds": _settle(configuration)}
    kind = held["kind"]
    for source, target in held.get("links", []):
        heal_link(source, target, configuration)
    if kind in (Fault.CRASH, Fault.HANG):
        resume_component(held["component"], configuration)
    elif kind in (Fault.ENCRYPT, Fault.CORRUPT):
        _restore_when_allowed(system, held)
    elif kind == Fault.LYING_INSTANCE:
        impostor = IMPOSTORS.pop(str(system.layout.root), None)
        if impostor is not None:
            impostor.__exit__(None, None, None)
    elif kind in (Fault.LIE, Fault.POISON):
        liar = LIARS.pop(str(system.layout.root), None)
        if liar is not None:
            liar.__exit__(None, None, None)
        system.supervisor.rpc().supervisor.startProcess(held["component"], True)
    return {"undone": held, "settled_after_seconds": _settle(configuration)}


def _settle(configuration: Configuration) -> float:
    """Wait until citizens are served through every gateway again, so the next experiment starts
    from a settled system; the cell was judged already, so only the settle timeout counts.

    An http service's route drops the instances judged down and takes them back once they are
    judged up again, a few rounds later: that wait is bounded by the same timeout, so the next
    experiment does not see a route move that this one caused."""
    started = time.monotonic()
    seconds = seconds_until_available(SETTLE_TIMEOUT, configuration, hold_to_rto=False)
    system = realization(configuration)
    apps = {s.id: set(s.regions) for s in system.topology.services if s.http is not None}
    while apps and time.monotonic() - started < SETTLE_TIMEOUT:
        routes = current_table(system).table.services
        if all(set(routes[sid].regions) == regions for sid, regions in apps.items()):
            break
        time.sleep(0.1)
    # A database server back from a fault rejoins as a standby (rewound when it was the primary):
    # the next experiment may attack that standby, so it waits until every agent is ready.
    agents = [c for c in system.plan.components if c.db_port is not None]
    while agents and time.monotonic() - started < SETTLE_TIMEOUT:
        agents = [c for c in agents if not probe(system, c)]
        if agents:
            time.sleep(0.2)
    return seconds
