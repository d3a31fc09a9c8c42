"""Chaos Toolkit actions: one attack on one component, and the rollback that undoes it.

Each attack acts through a public interface (supervisord's API, the link proxies' admin
API, HTTP, the vault's S3 API) and records the fault in force, so probes measure citizens
through the other regions and ``undo_fault`` knows what to put back. Targets are roles
("the primary of service 1101"), resolved when the action runs, so experiments stay valid
whatever earlier ones moved.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
from botocore.exceptions import ClientError

from chaos.liar import ScriptedProber
from chaos.probes import seconds_until_available
from chaos.target import Configuration, clear_fault, primary_of, realization, record_fault
from failover.manual import current_table
from infra.local.linkadmin import LinkAdmin
from infra.local.realizer import Realization
from infra.routing import sign_table
from paydar.backups import backup_now
from paydar.restore import restore
from vault.s3 import error_code, load_identity, vault_client

__all__ = ["crash_primary", "encrypt_node_data", "flood_gateway", "hang_primary", "partition_region",
           "push_rogue_table", "run_lying_prober", "tamper_backups_with_region_credentials", "undo_fault"]


def _standby_of(system: Realization, service: str) -> str:
    route = current_table(system).table.route(service)
    return next(r for r in route.regions if r != route.primary)


def crash_primary(service: str, configuration: Configuration = None) -> dict[str, Any]:
    """Stop (crash) the node that is the service's primary; its region counts as affected."""
    system = realization(configuration)
    region = primary_of(system, service)
    node = f"node.{service}.{region}"
    system.supervisor.rpc().supervisor.stopProcess(node, True)
    return record_fault(system, kind="crash", component=node, region=region)


def hang_primary(service: str, configuration: Configuration = None) -> dict[str, Any]:
    """Freeze (SIGSTOP) the service's primary node: a gray failure, alive but not answering."""
    system = realization(configuration)
    region = primary_of(system, service)
    node = f"node.{service}.{region}"
    pid = int(system.supervisor.rpc().supervisor.getProcessInfo(node)["pid"])
    os.kill(pid, signal.SIGSTOP)
    return record_fault(system, kind="hang", component=node, region=region, pid=pid)


def partition_region(service: str, configuration: Configuration = None) -> dict[str, Any]:
    """Cut every link to and from the region holding the service's primary."""
    system = realization(configuration)
    region = primary_of(system, service)
    links = [(a, b) for a in system.topology.region_names for b in system.topology.region_names
             if a != b and region in (a, b)]
    for source, target in links:
        LinkAdmin(system.plan.link(source, target).admin_url, system.link_token()).cut()
    return record_fault(system, kind="partition", component=f"region {region}", region=region,
                        links=[list(link) for link in links])


def encrypt_node_data(service: str, configuration: Configuration = None) -> dict[str, Any]:
    """Ransomware on a standby of the service: back it up first, then overwrite its store with random bytes."""
    system = realization(configuration)
    region = _standby_of(system, service)
    node = f"node.{service}.{region}"
    [outcome] = backup_now(system, [node])
    if outcome.manifest is None:
        raise RuntimeError(f"could not back {node} up before the attack: {outcome.error}")
    for path in system.layout.data(node).glob("registry.sqlite3*"):
        with path.open("r+b") as victim:
            victim.write(os.urandom(path.stat().st_size))
    return record_fault(system, kind="ransomware", component=node, region=region, service=service,
                        backup_position=outcome.manifest.position)


def push_rogue_table(service: str, configuration: Configuration = None) -> dict[str, Any]:
    """With one stolen controller key, sign a table moving the service's primary and offer it to
    every node, gateway and controller; returns how each answered (all must refuse)."""
    system = realization(configuration)
    held = current_table(system).table
    route = held.route(service)
    target = _standby_of(system, service)
    moved = route.model_copy(update={"primary": target, "standbys": tuple(r for r in route.regions if r != target),
                                     "epoch": route.epoch + 50})
    rogue = held.model_copy(update={"version": held.version + 100, "reason": "rogue: one stolen key",
                                    "services": {**held.services, service: moved}})
    signed = sign_table(rogue, [system.keystore().signer(f"controller.{target}")]).model_dump_json().encode()
    answers = asyncio.run(_offer(system, signed))
    record_fault(system, kind="rogue-table", component=f"controller.{target} key", region=None,
                 service=service, route=route.model_dump(mode="json"))
    return {"accepted_by": sorted(c for c, status in answers.items() if status == 200), "answers": answers}


async def _offer(system: Realization, body: bytes) -> dict[str, int]:
    targets = [c for c in system.plan.components if c.kind.value in ("node", "gateway", "controller")]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        async def one(url: str) -> int:
            try:
                async with session.post(url + "/v1/routing-table", data=body,
                                        headers={"Content-Type": "application/json"}) as response:
                    return response.status
            except (aiohttp.ClientError, TimeoutError):
                return 0

        statuses = await asyncio.gather(*(one(c.url) for c in targets))
    return {c.id: status for c, status in zip(targets, statuses)}


def tamper_backups_with_region_credentials(service: str, region: str, configuration: Configuration = None
                                           ) -> dict[str, str]:
    """With a region's stolen vault credentials, try to delete, shorten and read around the
    service's backups; returns each attempt's outcome (the vault must refuse every one)."""
    system = realization(configuration)
    [outcome] = backup_now(system, [f"node.{service}.{region}"])
    if outcome.manifest is None:
        raise RuntimeError(f"no backup to attack: {outcome.error}")
    m = outcome.manifest
    stolen = vault_client(system.plan.vault.endpoint, load_identity(system.layout.vault_region(region)))
    other = next(r for r in system.topology.service(service).regions if r != region)
    sooner = datetime.now(timezone.utc) + timedelta(minutes=1)
    attempts = {
        "delete-version": lambda: stolen.delete_object(Bucket=m.bucket, Key=m.key, VersionId=m.version_id),
        "shorten-retention": lambda: stolen.put_object_retention(
            Bucket=m.bucket, Key=m.key, VersionId=m.version_id, BypassGovernanceRetention=True,
            Retention={"Mode": "COMPLIANCE", "RetainUntilDate": sooner}),
        "read-other-region": lambda: stolen.list_objects_v2(Bucket=m.bucket, Prefix=f"{other}/"),
        "plant-in-other-region": lambda: stolen.put_object(Bucket=m.bucket, Key=f"{other}/manifests/x.json",
                                                           Body=b"{}"),
    }
    results = {}
    for name, attempt in attempts.items():
        try:
            attempt()
            results[name] = "ALLOWED"
        except ClientError as exc:
            results[name] = error_code(exc)
    record_fault(system, kind="stolen-vault-credentials", component=f"vault identity of {region}", region=None,
                 service=service, backup=m.model_dump(mode="json"))
    return results


def flood_gateway(region: str, seconds: float = 5.0, concurrency: int = 200,
                  configuration: Configuration = None) -> dict[str, int]:
    """Flood one region's gateway with reads for ``seconds`` from ``concurrency`` clients (bounded);
    returns the responses by status (shedding shows as 503)."""
    system = realization(configuration)
    record_fault(system, kind="flood", component=f"gateway.{region}", region=region)
    return asyncio.run(_flood(system.plan.gateway(region).url, seconds, concurrency,
                              system.topology.services[0].id))


async def _flood(url: str, seconds: float, concurrency: int, service: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2),
                                     connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        async def client(n: int) -> None:
            while time.monotonic() < deadline:
                try:
                    async with session.get(f"{url}/v1/services/{service}/documents/flood-{n}") as response:
                        await response.read()
                        key = str(response.status)
                except (aiohttp.ClientError, TimeoutError):
                    key = "error"
                counts[key] = counts.get(key, 0) + 1

        await asyncio.gather(*(client(n) for n in range(concurrency)))
    return counts


SETTLE_TIMEOUT = 60.0
_LIARS: dict[str, ScriptedProber] = {}
"""Lying probers this process runs (Chaos Toolkit runs every activity of an experiment in one process)."""


def run_lying_prober(service: str, region: str, configuration: Configuration = None) -> dict[str, Any]:
    """With ``prober.<region>``'s stolen key, claim every round that the service's primary is down.
    One vantage point out of n must be able neither to trigger nor to block a failover."""
    system = realization(configuration)
    target = f"node.{service}.{primary_of(system, service)}"
    liar = ScriptedProber(system, region, lambda _round, t: t != target)
    _LIARS[str(system.layout.root)] = liar.__enter__()
    return record_fault(system, kind="lying-prober", component=f"prober.{region}", region=None, service=service,
                        route=current_table(system).table.route(service).model_dump(mode="json"))


def undo_fault(configuration: Configuration = None) -> dict[str, Any]:
    """Rollback for every attack above: restart, resume, heal or restore what the fault in force broke,
    then wait (bounded) until citizens are served through every gateway again, so the next
    experiment starts from a settled system."""
    system = realization(configuration)
    held = clear_fault(system)
    if held is None:
        return {"undone": None, "settled_after_seconds": seconds_until_available(SETTLE_TIMEOUT, configuration)}
    kind = held["kind"]
    rpc = system.supervisor.rpc().supervisor
    if kind == "crash" and rpc.getProcessInfo(held["component"])["statename"] != "RUNNING":
        rpc.startProcess(held["component"], True)
    elif kind == "hang":
        os.kill(int(held["pid"]), signal.SIGCONT)
    elif kind == "partition":
        for source, target in held["links"]:
            LinkAdmin(system.plan.link(source, target).admin_url, system.link_token()).heal()
    elif kind == "ransomware":
        restore(system, held["service"], held["region"])
    elif kind == "lying-prober":
        liar = _LIARS.pop(str(system.layout.root), None)
        if liar is not None:
            liar.__exit__(None, None, None)
        rpc.startProcess(held["component"], True)
    return {"undone": held, "settled_after_seconds": seconds_until_available(SETTLE_TIMEOUT, configuration)}
