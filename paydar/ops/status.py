"""What `paydar status` shows: every component's process, role, epoch, log and health."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from pydantic import ValidationError

from paydar.failover.state import ControllerState
from paydar.gateway.state import GatewayState
from paydar.infra.local.plan import PlannedComponent
from paydar.infra.local.realizer import Realization, probe
from paydar.model.ids import Kind
from paydar.model.routing import RouteMode
from paydar.probes.models import ProberState
from paydar.workload.contract import InstanceState

__all__ = ["ComponentStatus", "collect_status"]


@dataclass(frozen=True)
class ComponentStatus:
    """One row of `paydar status`."""

    component: str
    kind: str
    region: str | None
    service: str | None
    process: str
    pid: int | None
    health: str
    role: str | None = None
    epoch: int | None = None
    log_position: int | None = None
    acked_position: int | None = None
    table_version: int | None = None
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _get(url: str, token: str | None = None) -> tuple[int, dict[str, Any]] | None:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=1.5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read())
        except ValueError:
            return exc.code, {}
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _status_of(realization: Realization, component: PlannedComponent, process: dict[str, Any]) -> ComponentStatus:
    base = {"component": component.id, "kind": component.kind.value, "region": component.region,
            "service": component.service, "process": process.get("statename", "UNKNOWN"),
            "pid": process.get("pid") or None}
    if component.kind is Kind.VAULT:
        return ComponentStatus(**base, health="ready" if probe(realization, component) else "unreachable",
                               detail=realization.plan.vault.endpoint)
    if component.app:  # an agency's app: its health path is all it promises
        ready = probe(realization, component)
        return ComponentStatus(**base, health="ready" if ready else "unreachable", role="app",
                               detail="agency app" + ("" if component.supervised else f" at {component.url}"))
    if component.kind is Kind.LINK:
        answer = _get(component.url + "/v1/link", realization.link_token(component.id))
        if answer is None or answer[0] != 200:
            return ComponentStatus(**base, health="unreachable")
        link = answer[1]
        delay = f", delay {link.get('delay_ms')}ms" if link.get("delay_ms") else ""
        return ComponentStatus(**base, health="ready" if link.get("mode") == "pass" and not delay else "degraded",
                               detail=f"{link.get('mode')}{delay}")
    answer = _get(component.url + "/state")
    if answer is None:
        return ComponentStatus(**base, health="unreachable")
    model = _STATE_MODELS[component.kind]
    try:
        state = model.model_validate(answer[1])
    except ValidationError:
        return ComponentStatus(**base, health="unreachable", detail="its /state does not parse")
    if isinstance(state, GatewayState):
        return ComponentStatus(**base, health="ready", role="gateway", table_version=state.table_version)
    if isinstance(state, ProberState):
        return ComponentStatus(**base, health="ready", role="prober", detail=_prober_detail(state))
    if isinstance(state, ControllerState):
        return ComponentStatus(**base, health="ready" if state.quorum else "degraded", role="controller",
                               table_version=state.table_version, detail=_controller_detail(state))
    assert isinstance(state, InstanceState)
    if component.db_port is not None:  # a PostgreSQL agent: ready only when its server is what the table asks
        health = "compromised" if state.compromised else "ready" if probe(realization, component) else "degraded"
        return ComponentStatus(**base, health=health, role=state.role.value, epoch=state.epoch,
                               log_position=state.log_position, acked_position=state.acked_position,
                               table_version=state.table_version, detail=_database_detail(state))
    return ComponentStatus(**base, health="compromised" if state.compromised else "ready", role=state.role.value,
                           epoch=state.epoch, log_position=state.log_position, acked_position=state.acked_position,
                           table_version=state.table_version, detail=_node_detail(state))


_STATE_MODELS: dict[Kind, type[InstanceState | GatewayState | ProberState | ControllerState]] = {
    Kind.NODE: InstanceState, Kind.GATEWAY: GatewayState, Kind.PROBER: ProberState, Kind.CONTROLLER: ControllerState}


def _prober_detail(state: ProberState) -> str:
    detail = f"round {state.round}; sees down: {', '.join(sorted(state.failing)) or 'none'}"
    bad = [c.gateway for c in state.canaries if not c.ok]
    return detail + (f"; canary failing via {', '.join(bad)}" if bad else "")


def _controller_detail(state: ControllerState) -> str:
    detail = (f"signers {len(state.signers)}; quorum {'ok' if state.quorum else 'LOST'} "
              f"({state.peers_reachable} peers); judged down: {', '.join(state.down) or 'none'}")
    if state.intents:
        detail += "; intents: " + ", ".join(" ".join(filter(None, (i.action.value, i.service, i.region)))
                                            for i in state.intents)
    if state.last_proposal:
        detail += f"; last proposal v{state.last_proposal.version} {state.last_proposal.outcome}"
    return detail


def _node_detail(state: InstanceState) -> str:
    if state.compromised:
        return state.compromised
    backup = state.backup
    age = f"{(time.time() * 1000 - backup.created_ms) / 60000:.0f} min ago @{backup.position}" if backup else "none yet"
    return "; ".join(filter(None, ["read-only" if state.mode is RouteMode.READ_ONLY else "", f"backup: {age}"]))


def _database_detail(state: InstanceState) -> str:
    if state.compromised:
        return f"{state.compromised}; rebuild it: paydar rebuild --service {state.service} --region {state.region}"
    streaming = f"standbys streaming: {', '.join(sorted(state.standbys)) or 'none'}" \
        if state.role.value == "primary" else f"follows {state.primary or 'nobody'}"
    return "; ".join(filter(None, ["read-only" if state.mode is RouteMode.READ_ONLY else "",
                                   f"PostgreSQL {state.chain_head}", streaming]))


def collect_status(realization: Realization) -> list[ComponentStatus]:
    """Ask supervisord and every component, concurrently, with short timeouts."""
    try:
        processes = {p["name"]: p for p in realization.supervisor.processes()}
    except OSError:
        processes = {}
    components = list(realization.plan.components)
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda c: _status_of(realization, c, processes.get(c.id, {})), components))
