"""Every fault the drill can inject, in one registry: its name, the action that injects it and
where that action lives, the extra checks it calls for, and which components it applies to.

The name is the one a matrix cell carries (``node.<service>.<region>:crash``), the one an action
records as the fault in force (``fault.json``), and the one :func:`~paydar.chaos.actions.undo_fault`
dispatches on: one spelling everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from paydar.model.resilience import replicas_lost
from paydar.model.topology import NationalTopology

__all__ = ["FAULTS", "ON_APPS", "REGISTRY", "Fault", "FaultSpec", "replicas_taken"]

ACTIONS = "paydar.chaos.actions"
COMPROMISE = "paydar.chaos.compromise"


class Fault(StrEnum):
    """One kind of fault."""

    CRASH = "crash"
    HANG = "hang"
    ENCRYPT = "encrypt"
    CORRUPT = "corrupt"
    BYZANTINE_PRIMARY = "byzantine-primary"
    FLOOD = "flood"
    LIE = "lie"
    POISON = "poison"
    ROGUE_TABLE = "rogue-table"
    EQUIVOCATE = "equivocate"
    CUT = "cut"
    DROP = "drop"
    DELAY = "delay"
    TAMPER = "tamper"
    SIDE_DOOR = "side-door"
    PARTITION = "partition"
    STOLEN_VAULT_CREDENTIALS = "stolen-vault-credentials"
    LYING_INSTANCE = "lying-instance"


@dataclass(frozen=True)
class FaultSpec:
    """How a fault is injected: the Chaos Toolkit action, its module, and what it adds to the steady state."""

    action: str
    module: str = ACTIONS
    checks: tuple[str, ...] = ()
    """Extra steady-state probes the attack calls for (``certified_route_unchanged``, ``backups_intact``)."""
    detect: bool = False
    """Whether to time the node noticing its own data is compromised."""


_ROUTE_HOLDS = ("certified_route_unchanged",)
REGISTRY: dict[Fault, FaultSpec] = {
    Fault.CRASH: FaultSpec("crash_component"),
    Fault.HANG: FaultSpec("hang_component"),
    Fault.ENCRYPT: FaultSpec("encrypt_node_data", detect=True),
    Fault.CORRUPT: FaultSpec("corrupt_node_data", detect=True),
    Fault.BYZANTINE_PRIMARY: FaultSpec("send_hostile_batches", COMPROMISE),
    Fault.FLOOD: FaultSpec("flood_gateway"),
    Fault.LIE: FaultSpec("run_lying_prober", checks=_ROUTE_HOLDS),
    Fault.POISON: FaultSpec("run_poisoning_prober", COMPROMISE, checks=_ROUTE_HOLDS),
    Fault.ROGUE_TABLE: FaultSpec("push_rogue_table", checks=_ROUTE_HOLDS),
    Fault.EQUIVOCATE: FaultSpec("equivocate_as_controller", COMPROMISE, checks=_ROUTE_HOLDS),
    Fault.CUT: FaultSpec("cut_link"),
    Fault.DROP: FaultSpec("drop_link"),
    Fault.DELAY: FaultSpec("delay_link"),
    Fault.TAMPER: FaultSpec("tamper_link", COMPROMISE),
    Fault.SIDE_DOOR: FaultSpec("open_vault_side_doors", COMPROMISE),
    Fault.PARTITION: FaultSpec("partition_region"),
    Fault.STOLEN_VAULT_CREDENTIALS: FaultSpec("tamper_backups_with_region_credentials", checks=("backups_intact",)),
    Fault.LYING_INSTANCE: FaultSpec("impersonate_instance"),
}
ON_APPS: dict[Fault, FaultSpec] = {Fault.FLOOD: FaultSpec("flood_instance")}
"""Where a fault is injected differently into an agency app's instance than into a Paydar node."""

FAULTS: dict[str, tuple[Fault, ...]] = {
    "node": (Fault.CRASH, Fault.HANG, Fault.ENCRYPT, Fault.CORRUPT, Fault.BYZANTINE_PRIMARY),
    "app": (Fault.CRASH, Fault.HANG, Fault.FLOOD, Fault.LYING_INSTANCE),
    "postgres": (Fault.CRASH, Fault.HANG),
    "gateway": (Fault.CRASH, Fault.HANG, Fault.FLOOD),
    "prober": (Fault.CRASH, Fault.HANG, Fault.LIE, Fault.POISON),
    "controller": (Fault.CRASH, Fault.HANG, Fault.ROGUE_TABLE, Fault.EQUIVOCATE),
    "link": (Fault.CUT, Fault.DROP, Fault.DELAY, Fault.TAMPER),
    "vault": (Fault.CRASH, Fault.HANG, Fault.SIDE_DOOR),
    "region": (Fault.PARTITION, Fault.STOLEN_VAULT_CREDENTIALS),
}
"""Faults per kind of component; a region stands for all of its links and its vault identity, and
its partition cuts an app instance there off like everything else in it. ``app`` is an agency
app's instance that ``paydar up`` supervises (one given by URL is not Paydar's to crash);
``postgres`` is a PostgreSQL agent with its server (a crash of the agent takes its server down)."""

KEEPS_REPLICAS = frozenset({Fault.DELAY})
"""Faults on a link that slow what it carries without severing it."""


def replicas_taken(topology: NationalTopology, held: Mapping[str, Any] | None) -> dict[str, str]:
    """Per service, the region whose replica the recorded fault in force (or once in force) takes
    from it: :func:`~paydar.model.resilience.replicas_lost` of its component, with the primaries
    it recorded; a link that is only delayed takes none."""
    if not held or held.get("kind") in KEEPS_REPLICAS:
        return {}
    return replicas_lost(topology, str(held.get("component") or ""), held.get("primaries"))
