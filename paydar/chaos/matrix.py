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

from paydar.chaos.faults import FAULTS, ON_APPS, REGISTRY, Fault
from paydar.chaos.roles import attackable_apps
from paydar.infra.local.realizer import Realization
from paydar.model.ids import Kind
from paydar.model.topology import WorkloadKind

__all__ = ["Cell", "cells", "experiment", "steady_state"]


DETECTION_TIMEOUT = 20
ROLES = ("primary", "standby")
"""The roles a node's faults run in, as :func:`paydar.chaos.target.component` resolves them."""


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
    (``fnmatch``: ``node.<service>@*``, ``*:crash``, ``gateway.<region>:flood``).

    A service's node faults run twice, on its primary and on a standby, each resolved from the
    routing table when the cell starts (``node.<service>@primary:hang``): what a cell attacks
    does not depend on which cells ran before it and moved primaries. An http service's
    instances get the app faults instead (crash, hang, flood, lying-instance), by the same roles.
    """
    topology = system.topology
    built: list[Cell] = []
    first_service = topology.first_registry_service.id
    apps, attackable = topology.http_services, set(attackable_apps(topology))
    for service in topology.services:
        if service.workload is WorkloadKind.POSTGRES:
            built += [_component_cell(f"{Kind.NODE.value}.{service.id}@{role}", Kind.NODE.value, fault, None,
                                      first_service) for role in ROLES for fault in FAULTS["postgres"]]
            continue
        built += _instance_cells(service.id, service.id in apps, service.id in attackable, first_service)
    for component in system.plan.components:
        kind = component.kind.value
        if component.kind is Kind.NODE:
            continue
        for fault in FAULTS.get(kind, ()):
            if component.kind is Kind.LINK:
                link = next(li for li in system.plan.links if li.id == component.id)
                built.append(_link_cell(component.id, fault, link.source, link.target))
            else:
                built.append(_component_cell(component.id, kind, fault, component.region, first_service))
    for region in topology.region_names:
        built.append(_cell(f"region.{region}", Fault.PARTITION, {"region": region}))
        if hosted := [s for s in topology.services_in(region) if s.workload is WorkloadKind.REGISTRY]:
            built.append(_cell(f"region.{region}", Fault.STOLEN_VAULT_CREDENTIALS,
                               {"service": hosted[0].id, "region": region}))
    if only:
        built = [c for c in built if any(fnmatch.fnmatchcase(c.name, pattern) for pattern in only)]
    return built


def _cell(component: str, fault: Fault, arguments: dict[str, Any]) -> Cell:
    spec = REGISTRY[fault]
    return Cell(component, fault.value, spec.action, arguments, checks=spec.checks, detect=spec.detect,
                module=spec.module)


def _instance_cells(service: str, app: bool, attackable: bool, first_service: str) -> list[Cell]:
    """A service's instance cells by role: node faults, or app faults for an app Paydar runs (an
    instance given by URL is not Paydar's to crash; region partitions still cut it off)."""
    if app and not attackable:
        return []
    built = []
    for role in ROLES:
        node = f"{Kind.NODE.value}.{service}@{role}"
        built += [_app_cell(node, fault) for fault in FAULTS["app"]] if app else \
            [_component_cell(node, Kind.NODE.value, fault, None, first_service) for fault in FAULTS[Kind.NODE.value]]
    return built


def _app_cell(component: str, fault: Fault) -> Cell:
    spec = ON_APPS.get(fault, REGISTRY[fault])
    arguments: dict[str, Any] = {"component": component}
    if fault is Fault.FLOOD:
        arguments |= {"seconds": 4, "concurrency": 200}
    return Cell(component, fault.value, spec.action, arguments, checks=spec.checks, module=spec.module)


def _link_cell(component: str, fault: Fault, source: str, target: str) -> Cell:
    arguments: dict[str, Any] = {"source": source, "target": target}
    if fault is Fault.DELAY:
        arguments["delay_ms"] = 300
    return _cell(component, fault, arguments)


def _component_cell(component: str, kind: str, fault: Fault, region: str | None, service: str) -> Cell:
    """The cell of ``fault`` on one component: the registry's action with the arguments it takes here."""
    arguments: dict[Fault, dict[str, Any]] = {
        Fault.CRASH: {"component": component}, Fault.HANG: {"component": component},
        Fault.ENCRYPT: {"node": component}, Fault.CORRUPT: {"node": component},
        Fault.FLOOD: {"region": region, "seconds": 4, "concurrency": 200},
        Fault.LIE: {"region": region}, Fault.POISON: {"region": region},
        Fault.ROGUE_TABLE: {"service": service, "controller": component},
        Fault.EQUIVOCATE: {"controller": component, "service": service},
        Fault.BYZANTINE_PRIMARY: {"node": component}, Fault.SIDE_DOOR: {},
    }
    if fault not in arguments:
        raise ValueError(f"no {fault.value!r} fault for a {kind}")
    return _cell(component, fault, arguments[fault])


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
    method.append(_probe("seconds-until-citizens-served-again", "seconds_until_available", pauses={"after": dwell}))
    return {
        "version": "1.0.0",
        "title": f"N-1: {cell.fault} of {cell.component}",
        "description": "One cell of the N-1 matrix, built by paydar.chaos.matrix.",
        "tags": ["paydar", "n-1", cell.fault],
        "steady-state-hypothesis": steady_state(cell.checks),
        "method": method,
        "rollbacks": [{"type": "action", "name": "undo-the-fault",
                       "provider": {"type": "python", "module": "paydar.chaos.actions", "func": "undo_fault"}}],
        "runtime": {"rollbacks": {"strategy": "always"}},
    }
