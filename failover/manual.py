"""Manual failover through the signed path: fence, prove, promote, publish.

Until the controllers of the next issue sign tables themselves, an operator's `paydar
failover promote` signs with ``threshold`` controller keys from the local state directory
(a local convenience, named as such). The sequence never risks an acknowledged write:

1. check the candidate with the replicas' current states; refuse early if it lacks writes;
2. publish a fencing table (service read-only, epoch + 1): the old primary stops
   acknowledging, and standbys refuse its replication from the old epoch;
3. re-read the now-stable positions and check again;
4. publish the promotion table (candidate primary, epoch + 2), or, when the check fails,
   reinstate the old primary if it is healthy, else leave the service read-only.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from failover.promotion import PromotionCheck, ReplicaView, check_promotion
from infra.errors import PaydarError
from infra.files import write_json_atomic
from infra.local.plan import ComponentKind, gateway_id, node_id
from infra.local.realizer import Realization
from infra.routing import RouteMode, RoutingTable, ServiceRoute, SignedTable, sign_table

__all__ = ["FailoverRefused", "PromotionResult", "fetch_json", "promote", "publish", "sign_locally"]

log = logging.getLogger(__name__)


class FailoverRefused(PaydarError):
    """The failover would risk acknowledged writes (or cannot be proven safe)."""

    def __init__(self, check: PromotionCheck, outcome: str) -> None:
        self.check = check
        super().__init__(f"promotion refused: {check}. {outcome}")


@dataclass
class PromotionResult:
    service: str
    old_primary: str | None
    new_primary: str
    epoch: int
    version: int
    check: PromotionCheck
    published: dict[str, str] = field(default_factory=dict)


def fetch_json(url: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """GET a JSON document; None when the component does not answer."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def sign_locally(realization: Realization, table: RoutingTable) -> SignedTable:
    """Sign with ``threshold`` controller keys of this state directory (local convenience)."""
    topology = realization.topology
    keystore = realization.keystore()
    regions = topology.region_names[: topology.control.threshold]
    return sign_table(table, [keystore.signer(f"controller.{r}") for r in regions])


def publish(realization: Realization, signed: SignedTable) -> dict[str, str]:
    """Push a table to every node and gateway; record it as the realization's current table."""
    targets = [c for c in realization.plan.components if c.kind in (ComponentKind.NODE, ComponentKind.GATEWAY)]
    body = signed.model_dump_json().encode()

    def push(url: str) -> str:
        request = urllib.request.Request(url + "/v1/routing-table", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=3.0) as response:
                return "accepted" if response.status == 200 else f"status {response.status}"
        except urllib.error.HTTPError as exc:
            return f"refused ({exc.code}): {json.loads(exc.read() or b'{}').get('error', '')}"
        except (urllib.error.URLError, OSError) as exc:
            return f"unreachable: {exc}"

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = dict(zip([c.id for c in targets], pool.map(lambda c: push(c.url), targets)))
    write_json_atomic(realization.layout.table, signed.model_dump(mode="json"))
    return results


def current_table(realization: Realization) -> SignedTable:
    """The newest table any gateway holds, or the recorded one when none answers."""
    best = SignedTable.model_validate_json(realization.layout.table.read_bytes())
    for region in realization.topology.region_names:
        raw = fetch_json(realization.plan.component(gateway_id(region)).url + "/v1/routing-table")
        if raw is not None:
            seen = SignedTable.model_validate(raw)
            if seen.table.version > best.table.version:
                best = seen
    return best


def replica_views(realization: Realization, service: str) -> dict[str, ReplicaView]:
    regions = realization.topology.service(service).regions

    def view(region: str) -> ReplicaView:
        state = fetch_json(realization.plan.component(node_id(service, region)).url + "/state")
        if state is None:
            return ReplicaView(reachable=False)
        return ReplicaView(reachable=True, log_position=int(state["log_position"]),
                           acked_position=int(state["acked_position"]), compromised=bool(state["compromised"]))

    with ThreadPoolExecutor(max_workers=len(regions)) as pool:
        return dict(zip(regions, pool.map(view, regions)))


def _next_table(held: RoutingTable, service: str, route: ServiceRoute, reason: str, ttl: float) -> RoutingTable:
    now = time.time()
    return RoutingTable(version=held.version + 1, issued_at=now, expires_at=now + ttl, reason=reason,
                        services={**held.services, service: route})


def promote(realization: Realization, service: str, region: str) -> PromotionResult:
    """Make ``region`` the primary of ``service`` without losing an acknowledged write."""
    topology = realization.topology
    spec = topology.service(service)
    if region not in spec.regions:
        raise PaydarError(f"service {service} has no replica in {region}; its regions are {', '.join(spec.regions)}")
    ttl = topology.control.table_ttl
    held = current_table(realization).table
    route = held.route(service)
    old = route.primary
    check = check_promotion(region, replica_views(realization, service), primary=old,
                            sync_replicas=spec.sync_replicas)
    if not check.safe:
        raise FailoverRefused(check, "Nothing was changed.")
    others = tuple(r for r in spec.regions if r != region)
    fence = _next_table(held, service, ServiceRoute(primary=None, standbys=(region, *others), epoch=route.epoch + 1,
                                                    mode=RouteMode.READ_ONLY),
                        f"manual failover of {service}: fencing {old}", ttl)
    publish(realization, sign_locally(realization, fence))
    views = replica_views(realization, service)
    check = check_promotion(region, views, primary=old, sync_replicas=spec.sync_replicas)
    if check.safe:
        final = ServiceRoute(primary=region, standbys=others, epoch=route.epoch + 2)
        reason = f"manual failover of {service}: {old} -> {region}"
    elif old is not None and views[old].reachable and not views[old].compromised:
        final = ServiceRoute(primary=old, standbys=tuple(r for r in spec.regions if r != old), epoch=route.epoch + 2)
        reason = f"manual failover of {service} refused; {old} reinstated"
    else:
        raise FailoverRefused(check, f"The service stays read-only in table v{fence.version}.")
    table = _next_table(fence, service, final, reason, ttl)
    published = publish(realization, sign_locally(realization, table))
    if final.primary != region:
        raise FailoverRefused(check, f"{old} was reinstated as primary in table v{table.version}.")
    log.info("promoted service=%s from=%s to=%s epoch=%d", service, old, region, final.epoch)
    return PromotionResult(service=service, old_primary=old, new_primary=region, epoch=final.epoch,
                           version=table.version, check=check, published=published)
