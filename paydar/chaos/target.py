"""The running national system a Chaos Toolkit activity acts on, and what experiments share.

Activities are separate calls, so what one leaves for the next lives under the state
directory's ``chaos/`` folder: the fault in force (which component, which region: probes
measure citizens through the *other* regions' gateways) and the ledger of every citizen
write the probes made (to check later that no acknowledged write was lost or corrupted).
A runner of many experiments starts each with :func:`begin_experiment`, which moves the
ledger to ``ledger-earlier.jsonl``: an experiment then checks every write of its own and a
bounded random sample of the earlier ones, so checks stay the same size across a long
matrix, and the drill's final sweep checks every one.
The state directory comes from the experiment's configuration ``paydar_state_dir``, else
``PAYDAR_STATE_DIR``, else ``.paydar/state``, as for the `paydar` command.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from chaoslib.exceptions import ActivityFailed

from paydar.chaos.invariants import AckLedger
from paydar.infra.local.plan import PlannedComponent
from paydar.infra.local.realizer import Realization, load_realization
from paydar.model.files import write_json_atomic
from paydar.model.ids import Kind
from paydar.ops.failover import current_table

__all__ = ["EARLIER_SAMPLE", "ActivityFailed", "Configuration", "FaultRecord", "Secrets", "acknowledged_of",
           "append_ledger", "begin_experiment", "clear_fault", "component", "fault", "ledger_size", "load_ledger",
           "primaries_now", "primary_of", "realization", "record_abort", "record_fault", "take_abort"]

Configuration = Mapping[str, Any] | None
Secrets = Mapping[str, Any] | None
"""Chaos Toolkit passes every activity its secrets; Paydar's come from the state directory instead."""
FaultRecord = dict[str, Any]
EARLIER_SAMPLE = 100
"""Acknowledged writes of earlier experiments that each experiment re-checks."""


def realization(configuration: Configuration) -> Realization:
    """The system the experiment targets."""
    state_dir = (configuration or {}).get("paydar_state_dir") or os.environ.get("PAYDAR_STATE_DIR") \
        or ".paydar/state"
    return load_realization(Path(state_dir))


def _folder(system: Realization) -> Path:
    folder = system.layout.root / "chaos"
    folder.mkdir(exist_ok=True)
    return folder


def record_fault(system: Realization, **details: Any) -> FaultRecord:
    """Remember the fault now in force (``component``, ``region``, and whatever undoing it needs)."""
    write_json_atomic(_folder(system) / "fault.json", details)
    return details


def fault(system: Realization) -> FaultRecord | None:
    path = _folder(system) / "fault.json"
    return json.loads(path.read_text()) if path.exists() else None


def clear_fault(system: Realization) -> FaultRecord | None:
    """Forget the fault in force; return what it was."""
    held = fault(system)
    (_folder(system) / "fault.json").unlink(missing_ok=True)
    return held


def record_abort(system: Realization, reason: str) -> None:
    """Say that the safeguard aborted the experiment now running, and why."""
    write_json_atomic(_folder(system) / "aborted.json", {"reason": reason})


def take_abort(system: Realization) -> str | None:
    """Why the safeguard aborted the experiment that just ran (None: it did not); forgets it."""
    path = _folder(system) / "aborted.json"
    if not path.exists():
        return None
    reason = str(json.loads(path.read_text()).get("reason", "aborted"))
    path.unlink()
    return reason


def primaries_now(system: Realization) -> dict[str, str | None]:
    """Every service's primary in the newest certified table (None: read-only), as a fault records it."""
    return {sid: route.primary for sid, route in current_table(system).table.services.items()}


def primary_of(system: Realization, service: str) -> str:
    """The region whose node is the service's primary in the newest table a gateway holds."""
    primary = current_table(system).table.route(service).primary
    if primary is None:
        raise ActivityFailed(f"service {service} has no primary (read-only); wait for the controllers to promote one")
    return primary


def component(system: Realization, spec: str) -> PlannedComponent:
    """The component ``spec`` names: an id (``node.<service>.<region>``, ``gateway.<region>``) or a node
    by role, resolved now from the routing table (``node.<service>@primary``, ``node.<service>@standby``)."""
    if "@" in spec:
        base, role = spec.split("@", 1)
        kind, _, service = base.partition(".")
        if kind != "node" or role not in ("primary", "standby"):
            raise ActivityFailed(f"unknown target {spec!r}: roles are node.<service>@primary or node.<service>@standby")
        route = current_table(system).table.route(service)
        region = primary_of(system, service) if role == "primary" else \
            next(r for r in route.regions if r != route.primary)
        return system.plan.node(service, region)
    try:
        return system.plan.component(spec)
    except KeyError:
        known = ", ".join(c.id for c in system.plan.components if c.kind is not Kind.LINK)
        raise ActivityFailed(f"unknown component {spec!r}; this system has: {known}") from None


def begin_experiment(system: Realization) -> None:
    """Start a fresh ledger for the next experiment; earlier writes stay checkable."""
    current = _folder(system) / "ledger.jsonl"
    if current.exists():
        with (_folder(system) / "ledger-earlier.jsonl").open("a") as earlier:
            earlier.write(current.read_text())
        current.unlink()


def append_ledger(system: Realization, entries: list[tuple[str, str, dict[str, Any], bool]]) -> None:
    with (_folder(system) / "ledger.jsonl").open("a") as out:
        for service, doc_id, document, acknowledged in entries:
            out.write(json.dumps({"service": service, "doc_id": doc_id, "document": document,
                                  "acknowledged": acknowledged}) + "\n")


def load_ledger(system: Realization, *, earlier: int | None = EARLIER_SAMPLE) -> AckLedger:
    """This experiment's writes, plus ``earlier`` acknowledged writes of earlier experiments drawn
    at random (all of them when ``earlier`` is None)."""
    ledger = AckLedger()
    for entry in _entries(_folder(system) / "ledger.jsonl"):
        ledger.record(entry["service"], entry["doc_id"], entry["document"], entry["acknowledged"])
    before = [e for e in _entries(_folder(system) / "ledger-earlier.jsonl") if e["acknowledged"]]
    for entry in before if earlier is None or len(before) <= earlier else random.sample(before, earlier):
        ledger.record(entry["service"], entry["doc_id"], entry["document"], True)
    return ledger


def acknowledged_of(system: Realization, service: str) -> tuple[str, dict[str, Any]] | None:
    """The newest acknowledged write of ``service`` in the ledgers: (document id, document)."""
    folder = _folder(system)
    for path in (folder / "ledger.jsonl", folder / "ledger-earlier.jsonl"):
        for entry in reversed(_entries(path)):
            if entry["service"] == service and entry["acknowledged"]:
                return entry["doc_id"], entry["document"]
    return None


def ledger_size(system: Realization) -> tuple[int, ...]:
    """Sizes of the ledger files: changes whenever a write is recorded or an experiment begins."""
    folder = _folder(system)
    return tuple(path.stat().st_size if path.exists() else -1
                 for path in (folder / "ledger.jsonl", folder / "ledger-earlier.jsonl"))


def _entries(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
