"""Operator failover through the controllers' signed path: promote, fence, drain, clear.

The CLI never signs a table. It signs an *intent* with the operator key (which no component
holds) and posts it to every controller; each controller folds it into its own view, and the
resulting table is certified only when ``threshold`` controllers sign it, exactly like an
automatic decision. A promotion is checked here first (refused, changing nothing, when the
candidate provably lacks acknowledged writes) and again by every controller after the old
primary is fenced. Every table read back from a component is verified against the trust root
first: one lying gateway must not steer an operator.
"""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from paydar.failover.intents import Intent, IntentAction, SignedIntent
from paydar.failover.promotion import (
    PromotionCheck,
    PromotionVerdict,
    ReplicaView,
    check_promotion,
    standbys_prove,
)
from paydar.infra.local.realizer import Realization
from paydar.model.errors import BadInput, PaydarError, TableRejected
from paydar.model.identity import TrustRoot
from paydar.model.ids import Kind, gateway_id, node_id
from paydar.model.routing import RoutingTable, SignedTable, TableGuard
from paydar.model.topology import WorkloadKind
from paydar.model.wire import parse_json
from paydar.workload.contract import InstanceState

__all__ = ["FailoverRefused", "PromotionResult", "clear", "current_table", "drain", "fence", "fetch_json",
           "fetch_node_state", "preview", "promote", "send_intent"]

log = logging.getLogger(__name__)
WAIT_SECONDS = 30.0


class FailoverRefused(PaydarError):
    """The failover would risk acknowledged writes (or cannot be proven safe)."""

    def __init__(self, check: PromotionCheck | None, outcome: str) -> None:
        self.check = check
        super().__init__(f"promotion refused: {check}. {outcome}" if check else outcome)


@dataclass
class PromotionResult:
    service: str
    old_primary: str | None
    new_primary: str
    epoch: int
    version: int
    check: PromotionCheck


MAX_ANSWER_BYTES = 64 * 1024 * 1024
"""The largest JSON answer read from a component (a routing table of a very large catalog fits)."""
CHUNK = 64 * 1024


def fetch_json(url: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """GET a JSON document; None when the component does not answer, answers nonsense, answers
    more than :data:`MAX_ANSWER_BYTES`, or takes longer than ``timeout`` for the whole answer
    (a component trickling bytes cannot hold the caller)."""
    deadline = time.monotonic() + timeout
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = bytearray()
            while chunk := response.read1(CHUNK):  # what has arrived: a trickle cannot hold a read
                body += chunk
                if len(body) > MAX_ANSWER_BYTES or time.monotonic() > deadline:
                    log.warning("answer from %s cut off: more than %d bytes or %.1fs", url, MAX_ANSWER_BYTES,
                                timeout)
                    return None
            answer = parse_json(bytes(body))
            return answer if isinstance(answer, dict) else None
    except (urllib.error.URLError, OSError, ValueError):
        return None


def fetch_node_state(url: str, timeout: float = 2.0) -> InstanceState | None:
    """A node's ``/state`` (its own, unproven word); None when it does not answer or answers nonsense."""
    answer = fetch_json(url, timeout)
    try:
        return InstanceState.model_validate(answer) if answer is not None else None
    except ValidationError:
        return None


def current_table(realization: Realization) -> SignedTable:
    """The newest *certified* table any gateway holds, or the recorded initial one.

    Each gateway's table is verified against the trust root and the threshold before it
    counts; one that does not verify is logged and ignored, whatever version it claims.
    """
    topology = realization.topology
    guard = TableGuard(trust=TrustRoot.load(realization.layout.trust_root), threshold=topology.control.threshold,
                       known_services=[s.id for s in topology.services])
    recorded = SignedTable.model_validate_json(realization.layout.table.read_bytes())
    for region in topology.region_names:
        raw = fetch_json(realization.plan.component(gateway_id(region)).url + "/v1/routing-table")
        if raw is None:
            continue
        try:
            guard.restore(SignedTable.model_validate(raw))
        except (TableRejected, ValueError) as exc:
            log.warning("table from gateway.%s ignored: %s", region, exc)
    # The table recorded at `up` is the fallback when no gateway answers with one that verifies
    # (after a key rotation its signatures may no longer).
    return guard.current or recorded


def send_intent(realization: Realization, action: IntentAction, region: str,
                service: str | None = None) -> dict[str, str]:
    """Sign an intent with the operator key and post it to every controller; raise unless
    ``threshold`` of them took it."""
    intent = Intent.new(action, region, service, time.time())
    body = SignedIntent.seal(intent, realization.operator()).model_dump_json().encode()

    def post(url: str) -> str:
        request = urllib.request.Request(url + "/v1/intents", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=3.0):
                return "accepted"
        except urllib.error.HTTPError as exc:
            try:
                return f"refused: {parse_json(exc.read()).get('error', exc.code)}"
            except (ValueError, AttributeError):
                return f"refused ({exc.code})"
        except (urllib.error.URLError, OSError) as exc:
            return f"unreachable: {exc}"

    controllers = realization.plan.of_kind(Kind.CONTROLLER)
    with ThreadPoolExecutor(max_workers=len(controllers)) as pool:
        outcomes = dict(zip([c.id for c in controllers], pool.map(lambda c: post(c.url), controllers), strict=True))
    taken = sum(1 for o in outcomes.values() if o == "accepted")
    if taken < realization.topology.control.threshold:
        detail = "; ".join(f"{c}: {o}" for c, o in outcomes.items())
        raise PaydarError(f"only {taken} controller(s) took the {action} intent, "
                          f"{realization.topology.control.threshold} needed: {detail}")
    return outcomes


def _wait_for(realization: Realization, done: Callable[[RoutingTable], bool], what: str,
              timeout: float = WAIT_SECONDS) -> RoutingTable:
    deadline = time.monotonic() + timeout
    while True:
        table = current_table(realization).table
        if done(table):
            return table
        if time.monotonic() >= deadline:
            raise PaydarError(f"{what} not reflected in the routing table within {timeout:.0f}s (held v"
                              f"{table.version}); see `paydar status` for the controllers' view")
        time.sleep(0.1)


def replica_views(realization: Realization, service: str) -> dict[str, ReplicaView]:
    regions = realization.topology.service(service).regions

    def view(region: str) -> ReplicaView:
        state = fetch_node_state(realization.plan.component(node_id(service, region)).url + "/state")
        if state is None:
            return ReplicaView(reachable=False)
        return ReplicaView(reachable=True, log_position=state.log_position, acked_position=state.acked_position,
                           compromised=bool(state.compromised))

    with ThreadPoolExecutor(max_workers=len(regions)) as pool:
        return dict(zip(regions, pool.map(view, regions), strict=True))


def _known(realization: Realization, service: str | None, region: str) -> None:
    topology = realization.topology
    if region not in topology.region_names:
        raise BadInput(f"unknown region {region!r}; regions: {', '.join(topology.region_names)}")
    if service is not None:
        spec = topology.service(service)
        if region not in spec.regions:
            raise BadInput(f"service {service} has no replica in {region}; its regions are "
                              f"{', '.join(spec.regions)}")


def promote(realization: Realization, service: str, region: str) -> PromotionResult:
    """Make ``region`` the primary of ``service`` without losing an acknowledged write."""
    _known(realization, service, region)
    spec = realization.topology.service(service)
    held = current_table(realization).table
    route = held.route(service)
    old = route.primary
    views = replica_views(realization, service)
    streaming = spec.workload is WorkloadKind.POSTGRES
    if streaming:
        views = standbys_prove(views, old)
    check = check_promotion(region, views, primary=old, sync_replicas=spec.ack_replicas)
    # A PostgreSQL standby's position moves until the fence stops the stream, so being a few
    # bytes behind another standby now proves nothing: the controllers check it once positions
    # are final, and refuse (this command then says so) if it still lacks a commit.
    if not check.safe and not (streaming and check.verdict is PromotionVerdict.LACKS_WRITES):
        raise FailoverRefused(check, "Nothing was changed.")
    send_intent(realization, IntentAction.PROMOTE, region, service)
    try:
        table = _wait_for(realization, lambda t: t.route(service).writable and t.route(service).epoch > route.epoch + 1,
                          f"promotion of {service} to {region}")
    except PaydarError:
        clear(realization, region, service)  # an intent nobody acted on must not fire later by surprise
        raise
    final = table.route(service)
    if final.primary != region:
        clear(realization, region, service)
        raise FailoverRefused(None, f"promotion refused by the controllers after fencing: {final.primary} is "
                                    f"primary in table v{table.version} (the candidate could not be proven to "
                                    "hold every acknowledged write)")
    log.info("promoted service=%s from=%s to=%s epoch=%d", service, old, region, final.epoch)
    return PromotionResult(service=service, old_primary=old, new_primary=region, epoch=final.epoch,
                           version=table.version, check=check)


def preview(realization: Realization, action: IntentAction, region: str, service: str | None = None) -> str:
    """What ``promote``, ``fence`` or ``drain`` would do now, checked against the running system
    (unknown names are refused as they would be, and so is a promotion the safety check refuses
    now: :class:`FailoverRefused`); nothing is sent."""
    _known(realization, service, region)
    held = current_table(realization).table
    if action is IntentAction.DRAIN:
        moving = [sid for sid, route in sorted(held.services.items()) if route.primary == region]
        return (f"move every primary out of {region} through fence-then-promote: {len(moving)} service(s) "
                f"({', '.join(moving) or 'none'}) in table v{held.version}")
    if service is None:
        raise BadInput(f"{action.value} needs a service")
    route = held.route(service)
    now = f"primary now {route.primary or 'none (read-only)'}, epoch {route.epoch}, table v{held.version}"
    if action is IntentAction.FENCE:
        then = ("it fails over to a standby proven to hold every acknowledged write" if route.primary == region
                else "it is not the primary, so no primary moves")
        return f"fence {node_id(service, region)} ({now}): {then}"
    check = check_promotion(region, replica_views(realization, service), primary=route.primary,
                            sync_replicas=realization.topology.service(service).ack_replicas)
    if not check.safe:
        raise FailoverRefused(check, f"It would be refused now ({now}); nothing was changed.")
    return (f"promote {node_id(service, region)} ({now}), fencing the old primary first; the safety check "
            f"says now: {check}")


def fence(realization: Realization, service: str, region: str) -> RoutingTable:
    """Keep ``service`` off ``region`` (a suspect node): it stays a standby, never a primary."""
    _known(realization, service, region)
    send_intent(realization, IntentAction.FENCE, region, service)
    return _wait_for(realization, lambda t: t.route(service).primary != region and t.route(service).writable,
                     f"fence of {service} in {region}")


def drain(realization: Realization, region: str) -> RoutingTable:
    """Planned evacuation: every primary in ``region`` moves elsewhere, through the signed path."""
    _known(realization, None, region)
    send_intent(realization, IntentAction.DRAIN, region)
    hosted = [s.id for s in realization.topology.services_in(region)]
    return _wait_for(realization, lambda t: all(t.route(s).primary != region and t.route(s).writable for s in hosted),
                     f"drain of {region}")


def clear(realization: Realization, region: str, service: str | None = None) -> dict[str, str]:
    """Withdraw the operator intents on ``region`` (and ``service``): undrain, unfence."""
    _known(realization, service, region)
    return send_intent(realization, IntentAction.CLEAR, region, service)
