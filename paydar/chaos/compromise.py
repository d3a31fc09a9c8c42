"""Chaos Toolkit actions for *full* compromise: a component holding its own real credentials
that sends anything, to anything it can reach.

Each attack uses the stolen material a compromised component would hold (its key, its port,
its vault identity) and records the fault so ``paydar.chaos.actions.undo_fault`` puts things back:

- ``tamper_link``: a link rewrites every message crossing it (only proofs in the messages help);
- ``equivocate_as_controller``: a controller offers each peer a different successor of the
  held table, at inflated and honest-looking epochs, and pushes them everywhere;
- ``run_poisoning_prober``: a prober signs rounds naming targets that do not exist and
  stamped far in the future;
- ``send_hostile_batches``: a primary signs batches with gaps, future epochs, non-JSON
  bodies and counters beyond 64 bits, to every standby of its service;
- ``open_vault_side_doors``: the vault's filer, master and volume ports are tried without credentials.
"""

import asyncio
import json
import time
import urllib.error
import urllib.request
from typing import Any

from paydar.chaos.faults import Fault
from paydar.chaos.liar import ScriptedProber
from paydar.chaos.reach import LIARS, change_links, offer_everywhere, routes_in_force
from paydar.chaos.target import (
    ActivityFailed,
    Configuration,
    Secrets,
    primaries_now,
    primary_of,
    realization,
    record_fault,
)
from paydar.chaos.target import component as resolve
from paydar.model.ids import Kind, link_id, prober_id
from paydar.model.routing import RoutingTable, sign_table
from paydar.node.chain import GENESIS_HASH, entry_hash
from paydar.node.models import ReplicationBatch, SignedBatch
from paydar.ops.failover import current_table
from paydar.probes.models import ObservationRound

__all__ = ["equivocate_as_controller", "open_vault_side_doors", "run_poisoning_prober", "send_hostile_batches",
           "tamper_link"]


def tamper_link(source: str | None = None, target: str | None = None, configuration: Configuration = None,
                secrets: Secrets = None) -> dict[str, Any]:
    """Make the link from ``source`` to ``target`` rewrite every message body both ways (by
    default the link from a standby's region to the primary's, for the first service)."""
    system = realization(configuration)
    if source is None or target is None:
        sid = system.topology.first_registry_service.id
        route = current_table(system).table.route(sid)
        target = target or primary_of(system, sid)
        source = source or next(r for r in route.regions if r != target)
    primaries = primaries_now(system)
    done = change_links(system, [(source, target)], "tamper")
    return record_fault(system, kind=Fault.TAMPER, component=link_id(source, target), region=None,
                        primaries=primaries, **done)


def equivocate_as_controller(controller: str | None = None, service: str | None = None,
                             configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """With ``controller``'s key (default: the last controller), offer each other controller a
    different successor of the held table for ``service`` (default: the first), one at an
    inflated epoch, and push both, signed, to every node, gateway and controller. Returns every
    answer: none may co-sign or obey."""
    system = realization(configuration)
    rogue = resolve(system, controller) if controller else system.plan.of_kind(Kind.CONTROLLER)[-1]
    if rogue.kind is not Kind.CONTROLLER:
        raise ActivityFailed(f"{controller} is not a controller")
    held = current_table(system).table
    sid = service or system.topology.first_registry_service.id
    route = held.route(sid)
    others = [r for r in route.regions if r != route.primary]
    if not others:
        raise ActivityFailed(f"service {sid} has no standby to move its primary to")
    signer = system.keystore().signer(rogue.id)
    now = time.time()
    offers = []
    for n, (region, epoch) in enumerate(((others[0], route.epoch + 1), (others[-1], route.epoch + 1_000_000))):
        moved = route.model_copy(update={"primary": region, "epoch": epoch,
                                         "standbys": tuple(r for r in route.regions if r != region)})
        table = RoutingTable(version=held.version + 1, issued_at=now + n * 0.001,
                             expires_at=now + n * 0.001 + system.topology.control.table_ttl, previous=held.digest(),
                             reason=f"rogue {rogue.id}: equivocation {n}", services={**held.services, sid: moved})
        offers.append(sign_table(table, [signer]).model_dump_json().encode())
    peers = [c for c in system.plan.of_kind(Kind.CONTROLLER) if c.id != rogue.id]
    routes = routes_in_force(system)
    proposals = {peer.id: _post(peer.url + "/v1/proposals", offers[i % 2]) for i, peer in enumerate(peers)}
    pushed = [asyncio.run(offer_everywhere(system, offer)) for offer in offers]
    record_fault(system, kind=Fault.EQUIVOCATE, component=rogue.id, region=None, routes=routes)
    outcome = {"co_signed_by": sorted(p for p, status in proposals.items() if status == 200),
               "obeyed_by": sorted({c for answers in pushed for c, status in answers.items() if status == 200})}
    if outcome["co_signed_by"] or outcome["obeyed_by"]:
        raise ActivityFailed(f"the equivocating controller {rogue.id} got somewhere: {outcome}")
    return outcome


def run_poisoning_prober(region: str | None = None, configuration: Configuration = None,
                         secrets: Secrets = None) -> dict[str, Any]:
    """With ``prober.<region>``'s key (default: the first prober), serve validly signed rounds
    that name unknown targets and services, or are stamped a million seconds ahead; it may cost
    only that prober's vote."""
    system = realization(configuration)
    prober = resolve(system, prober_id(region)) if region else system.plan.of_kind(Kind.PROBER)[0]
    region = str(prober.region)

    def poison(body: ObservationRound) -> ObservationRound:
        if body.round % 2:
            return body.model_copy(update={"tables": {10**9: ("node.", "node.nowhere.nowhere", "gateway.")}})
        future = time.time() + 10**6
        return body.model_copy(update={"started_at": future, "finished_at": future})

    routes = routes_in_force(system)
    liar = ScriptedProber(system, region, lambda _round, _target: True, poison)
    LIARS[str(system.layout.root)] = liar.__enter__()
    return record_fault(system, kind=Fault.POISON, component=prober.id, region=None, routes=routes)


def send_hostile_batches(node: str | None = None, configuration: Configuration = None,
                         secrets: Secrets = None) -> dict[str, str]:
    """With ``node``'s key (an id, or ``node.<service>@primary``; default: the first service's
    primary), send every other replica of its service batches a sane primary never would: a
    gap, a future epoch, a non-JSON body and a position beyond 64 bits. Returns each answer per
    replica; every one must be a refusal (a 4xx, or a reply that applied nothing), never a 5xx
    and never an acknowledgement."""
    system = realization(configuration)
    target = resolve(system, node or f"node.{system.topology.first_registry_service.id}@primary")
    service, sender = str(target.service), target.id
    signer = system.keystore().signer(sender)
    table = current_table(system).table
    epoch = table.route(service).epoch
    doc = json.dumps({"citizen_id": "0000000000", "kind": "canary", "data": {}})

    def entry(position: int, entry_epoch: int, prev: str, body: str) -> dict[str, Any]:
        doc_id = f"hostile-{position}"
        return {"position": position, "epoch": entry_epoch, "doc_id": doc_id, "body": body, "prev_hash": prev,
                "hash": entry_hash(service, position, entry_epoch, doc_id, body, prev, 1), "written_ms": 1}

    first = entry(1, epoch, GENESIS_HASH, doc)
    attacks = {"gap": [first, entry(3, epoch, first["hash"], doc)],
               "future-epoch": [entry(1, epoch + 9, GENESIS_HASH, doc)],
               "not-json": [entry(1, epoch, GENESIS_HASH, "{x")]}
    bodies = {}
    for name, entries in attacks.items():
        batch = ReplicationBatch.model_validate({
            "service": service, "sender": sender, "epoch": epoch, "table_version": table.version, "acked_position": 0,
            "head_position": 9, "prev_position": 0, "prev_hash": GENESIS_HASH, "entries": entries})
        bodies[name] = SignedBatch(batch=batch, signature=signer.sign(batch.model_dump(mode="json"))
                                   ).model_dump_json().encode()
    huge = json.loads(bodies["gap"])
    huge["batch"]["prev_position"] = 2**70
    bodies["beyond-64-bits"] = json.dumps(huge).encode()
    results = {}
    for region in (r for r in system.topology.service(service).regions if r != target.region):
        url = system.plan.node(service, region).url + "/v1/replicate"
        for name, body in bodies.items():
            status, answer = _exchange("POST", url, body)
            applied = status == 200 and answer.get("reply", {}).get("status") == "ok"
            results[f"{region}:{name}"] = f"{status} {'APPLIED' if applied else 'refused'}"
    record_fault(system, kind=Fault.BYZANTINE_PRIMARY, component=sender, region=None)
    wrong = {k: v for k, v in results.items() if v.endswith("APPLIED") or not ("200" <= v[:3] < "500")}
    if wrong:
        raise ActivityFailed(f"hostile batches from {sender} were not refused: {wrong}")
    return results


def open_vault_side_doors(configuration: Configuration = None, secrets: Secrets = None) -> dict[str, int]:
    """Try every vault port beside S3 without credentials: the filer's list, read, delete and
    write, the master's and the volume server's status. Returns each attempt's HTTP status,
    0 when nothing answered; the attempt fails unless every door is unreachable or says 401.
    The master is only asked read-only questions: were its door open, ``/col/delete`` would not ask."""
    system = realization(configuration)
    v = system.plan.vault
    bucket = f"paydar-{system.topology.first_registry_service.id}"
    filer = f"http://127.0.0.1:{v.filer}"
    attempts = {"filer-list": ("GET", f"{filer}/buckets/"), "filer-read": ("GET", f"{filer}/buckets/{bucket}/"),
                "filer-delete": ("DELETE", f"{filer}/buckets/{bucket}/"),
                "filer-write": ("PUT", f"{filer}/buckets/{bucket}/planted"),
                "master-status": ("GET", f"http://127.0.0.1:{v.master}/dir/status"),
                "volume-status": ("GET", f"http://127.0.0.1:{v.volume}/status")}
    results = {name: _request(method, url, b"x" if method == "PUT" else None)
               for name, (method, url) in attempts.items()}
    record_fault(system, kind=Fault.SIDE_DOOR, component="vault", region=None)
    open_doors = {name: status for name, status in results.items() if status not in (0, 401)}
    if open_doors:
        raise ActivityFailed(f"vault side doors answered without credentials: {open_doors}")
    return results


def _post(url: str, body: bytes) -> int:
    return _exchange("POST", url, body)[0]


def _request(method: str, url: str, body: bytes | None) -> int:
    return _exchange(method, url, body)[0]


def _exchange(method: str, url: str, body: bytes | None) -> tuple[int, dict[str, Any]]:
    """(status, JSON body or {}) of one bounded request; status 0 when nothing answered."""
    request = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            status, raw = int(answer.status), answer.read(1 << 20)
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read(1 << 20)
    except (urllib.error.URLError, OSError):
        return 0, {}
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = {}
    return status, parsed if isinstance(parsed, dict) else {}

