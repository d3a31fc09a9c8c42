"""What `paydar status` shows: every component's process, role, epoch, log and health."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from paydar.infra.local.plan import PlannedComponent
from paydar.infra.local.realizer import Realization, probe
from paydar.model.ids import Kind

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
    state = answer[1]
    if component.kind is Kind.GATEWAY:
        return ComponentStatus(**base, health="ready", role="gateway", table_version=state.get("table_version"))
    if component.kind is Kind.PROBER:
        failing = state.get("failing") or {}
        canaries = state.get("canaries") or []
        bad = [c["gateway"] for c in canaries if not c.get("ok")]
        detail = f"round {state.get('round')}; sees down: {', '.join(sorted(failing)) or 'none'}"
        if bad:
            detail += f"; canary failing via {', '.join(bad)}"
        return ComponentStatus(**base, health="ready", role="prober", detail=detail)
    if component.kind is Kind.CONTROLLER:
        last = state.get("last_proposal") or {}
        detail = (f"signers {len(state.get('signers', []))}; quorum {'ok' if state.get('quorum') else 'LOST'}"
                  f" ({state.get('peers_reachable')} peers); judged down: {', '.join(state.get('down', [])) or 'none'}")
        if state.get("intents"):
            named = (f"{i['action']} {i.get('service') or ''} {i['region']}".replace("  ", " ")
                     for i in state["intents"])
            detail += "; intents: " + ", ".join(named)
        if last:
            detail += f"; last proposal v{last.get('version')} {last.get('outcome')}"
        return ComponentStatus(**base, health="ready" if state.get("quorum") else "degraded", role="controller",
                               table_version=state.get("table_version"), detail=detail)
    health = "compromised" if state.get("compromised") else "ready"
    detail = state.get("compromised") or ("read-only" if state.get("mode") == "read-only" else "")
    if not state.get("compromised"):
        backup = state.get("backup")
        age = f"{(time.time() * 1000 - backup['created_ms']) / 60000:.0f} min ago" if backup else "none yet"
        detail = "; ".join(filter(None, [detail, f"backup: {age}" + (f" @{backup['position']}" if backup else "")]))
    return ComponentStatus(**base, health=health, role=state.get("role"), epoch=state.get("epoch"),
                           log_position=state.get("log_position"), acked_position=state.get("acked_position"),
                           table_version=state.get("table_version"), detail=detail or "")


def collect_status(realization: Realization) -> list[ComponentStatus]:
    """Ask supervisord and every component, concurrently, with short timeouts."""
    try:
        processes = {p["name"]: p for p in realization.supervisor.processes()}
    except OSError:
        processes = {}
    components = list(realization.plan.components)
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda c: _status_of(realization, c, processes.get(c.id, {})), components))
