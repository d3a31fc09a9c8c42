"""The N-1 matrix: every component instance of a realization x every fault that applies to it.

Each cell is a Chaos Toolkit experiment built here as data, in the same shape as the files
of the catalog: the citizen steady state (served through every unaffected gateway, nothing
acknowledged lost, nothing corrupted served, plus the attack's own check), the attack, the
probes that time detection and recovery, a dwell under load, and ``undo_fault`` as rollback.
Cells run one after another on one system with :func:`paydar.chaos.catalog.run_experiments`.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any

from paydar.infra.local.plan import ComponentKind
from paydar.infra.local.realizer import Realization

__all__ = ["FAULTS", "Cell", "cells", "experiment", "steady_state"]

FAULTS: dict[str, tuple[str, ...]] = {
    "node": ("crash", "hang", "encrypt", "corrupt", "byzantine-primary"),
    "gateway": ("crash", "hang", "flood"),
    "prober": ("crash", "hang", "lie", "poison"),
    "controller": ("crash", "hang", "rogue-table", "equivocate"),
    "link": ("cut", "drop", "delay", "tamper"),
    "vault": ("crash", "hang", "side-door"),
    "region": ("partition", "stolen-vault-credentials"),
}
"""Faults per kind of component; a region stands for all of its links and its vault identity."""

RECOVERY_TIMEOUT = 30
DETECTION_TIMEOUT = 20


@dataclass(frozen=True)
class Cell:
    """One component instance under one fault."""

    component: str
    fault: str
    action: str
    arguments: dict[str, Any]
    checks: tuple[str, ...] = ()
    """Extra steady-state probes the attack calls for (``certified_route_unchanged``, ``backups_intact``)."""
    detect: bool = False
    """Whether to time the node noticing its own data is compromised."""
    module: str = "paydar.chaos.actions"
    """The extension module holding the action (full-compromise attacks live in ``paydar.chaos.compromise``)."""

    @property
    def name(self) -> str:
        return f"{self.component}:{self.fault}"


def cells(system: Realization, only: tuple[str, ...] = ()) -> list[Cell]:
    """Every cell of the matrix for this realization, narrowed to names matching any ``only`` pattern
    (``fnmatch``: ``node.1101.*``, ``*:crash``, ``gateway.tehran:flood``)."""
    topology = system.topology
    built: list[Cell] = []
    first_service = topology.services[0].id
    for component in system.plan.components:
        kind = component.kind.value
        for fault in FAULTS.get(kind, ()):
            if component.kind is ComponentKind.LINK:
                link = next(li for li in system.plan.links if li.id == component.id)
                built.append(_link_cell(component.id, fault, link.source, link.target))
            else:
                built.append(_component_cell(component.id, kind, fault, component.region, first_service))
    for region in topology.region_names:
        hosted = topology.services_in(region)
        built.append(Cell(f"region.{region}", "partition", "partition_region", {"region": region}))
        if hosted:
            built.append(Cell(f"region.{region}", "stolen-vault-credentials", "tamper_backups_with_region_credentials",
                              {"service": hosted[0].id, "region": region}, checks=("backups_intact",)))
    if only:
        built = [c for c in built if any(fnmatch.fnmatchcase(c.name, pattern) for pattern in only)]
    return built


def _link_cell(component: str, fault: str, source: str, target: str) -> Cell:
    arguments: dict[str, Any] = {"source": source, "target": target}
    if fault == "delay":
        arguments["delay_ms"] = 300
    return Cell(component, fault, f"{fault}_link", arguments, module=_module(f"{fault}_link"))


COMPROMISE_ACTIONS = frozenset({"tamper_link", "equivocate_as_controller", "run_poisoning_prober",
                                "send_hostile_batches", "open_vault_side_doors"})


def _module(action: str) -> str:
    return "paydar.chaos.compromise" if action in COMPROMISE_ACTIONS else "paydar.chaos.actions"


def _component_cell(component: str, kind: str, fault: str, region: str | None, service: str) -> Cell:
    if fault in ("crash", "hang"):
        return Cell(component, fault, f"{fault}_component", {"component": component})
    if fault in ("encrypt", "corrupt"):
        return Cell(component, fault, f"{fault}_node_data", {"node": component}, detect=True)
    if fault == "flood":
        return Cell(component, fault, "flood_gateway", {"region": region, "seconds": 4, "concurrency": 200})
    if fault == "lie":
        return Cell(component, fault, "run_lying_prober", {"region": region}, checks=("certified_route_unchanged",))
    if fault == "rogue-table":
        return Cell(component, fault, "push_rogue_table", {"service": service, "controller": component},
                    checks=("certified_route_unchanged",))
    if fault == "equivocate":
        return Cell(component, fault, "equivocate_as_controller", {"controller": component, "service": service},
                    checks=("certified_route_unchanged",), module="paydar.chaos.compromise")
    if fault == "poison":
        return Cell(component, fault, "run_poisoning_prober", {"region": region},
                    checks=("certified_route_unchanged",), module="paydar.chaos.compromise")
    if fault == "byzantine-primary":
        return Cell(component, fault, "send_hostile_batches", {"node": component}, module="paydar.chaos.compromise")
    if fault == "side-door":
        return Cell(component, fault, "open_vault_side_doors", {}, module="paydar.chaos.compromise")
    raise ValueError(f"no {fault!r} fault for a {kind}")


def _probe(name: str, func: str, arguments: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    provider: dict[str, Any] = {"type": "python", "module": "paydar.chaos.probes", "func": func}
    if arguments:
        provider["arguments"] = arguments
    return {"type": "probe", "name": name, "provider": provider, **extra}


def steady_state(checks: tuple[str, ...] = ()) -> dict[str, Any]:
    """The citizen-level hypothesis every experiment shares, plus the attack's own checks."""
    probes = [
        _probe("citizens-served-through-every-unaffected-gateway", "citizen_availability", {"writes": 1},
               tolerance=[1.0, 1.0]),
        _probe("no-acknowledged-write-lost", "acknowledged_writes_lost", tolerance=0),
        _probe("no-corrupted-document-served", "corrupted_documents_served", tolerance=0),
        *(_probe(check.replace("_", "-"), check, tolerance=True) for check in checks),
    ]
    return {"title": "Citizens are served through every unaffected region; no acknowledged write is lost; "
                     "no corrupted document is served", "probes": probes}


def experiment(cell: Cell, dwell: float) -> dict[str, Any]:
    """The Chaos Toolkit experiment for one cell; the fault is held ``dwell`` seconds under load."""
    method: list[dict[str, Any]] = [
        {"type": "action", "name": f"{cell.fault}-{cell.component}",
         "provider": {"type": "python", "module": cell.module, "func": cell.action, "arguments": cell.arguments}}]
    if cell.detect:
        method.append(_probe("seconds-until-the-node-detects-it", "seconds_until_compromise_detected",
                             {"timeout": DETECTION_TIMEOUT}))
    method.append(_probe("seconds-until-citizens-served-again", "seconds_until_available",
                         {"timeout": RECOVERY_TIMEOUT}, pauses={"after": dwell}))
    return {
        "version": "1.0.0",
        "title": f"N-1: {cell.fault} of {cell.component}",
        "description": "One cell of the N-1 matrix, built by paydar.chaos.matrix.",
        "tags": ["paydar", "n-1", cell.fault],
        "steady-state-hypothesis": steady_state(cell.checks),
        "method": method,
        "rollbacks": [{"type": "action", "name": "undo-the-fault",
                       "provider": {"type": "python", "module": "paydar.chaos.actions", "func": "undo_fault"}}],
    }
