"""The network the design needs: every path between components, and nothing else.

One source for both sides: ``region`` renders these paths into NetworkPolicies, and the tests
read the policies back and compare them with these paths. Components are named as in the
local realization (``gateway.<region>``, ``node.<service>.<region>``, ``prober.<region>``,
``controller.<region>``); ``citizens`` and ``vault`` stand for the outside world and the MinIO
endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

from paydar.model.ids import controller_id, gateway_id, node_id, prober_id
from paydar.model.topology import NationalTopology

__all__ = ["CITIZENS", "VAULT", "Component", "Path", "components", "intended_paths"]

CITIZENS = "citizens"
VAULT = "vault"


@dataclass(frozen=True, order=True)
class Component:
    """One workload in one region: ``kind`` is node, gateway, prober or controller."""

    id: str
    kind: str
    region: str
    service: str | None = None


@dataclass(frozen=True, order=True)
class Path:
    """``source`` may open connections to ``target``."""

    source: str
    target: str


def components(topology: NationalTopology) -> list[Component]:
    """Every workload of the national system, region by region."""
    found = []
    for region in topology.region_names:
        found.append(Component(gateway_id(region), "gateway", region))
        found += [Component(node_id(s.id, region), "node", region, s.id) for s in topology.services_in(region)]
        if region in topology.vantage_points:
            found.append(Component(prober_id(region), "prober", region))
        found.append(Component(controller_id(region), "controller", region))
    return found


def intended_paths(topology: NationalTopology) -> set[Path]:
    """Citizens to gateways; gateways to every node and to the other gateways (relay); each
    service's nodes to one another (replication) and to the vault (backups); probers to every
    node and gateway; controllers to every prober, gateway, node and to one another."""
    every = components(topology)
    by_kind = {kind: [c for c in every if c.kind == kind] for kind in ("node", "gateway", "prober", "controller")}
    paths = {Path(CITIZENS, g.id) for g in by_kind["gateway"]}
    for gateway in by_kind["gateway"]:
        paths |= {Path(gateway.id, n.id) for n in by_kind["node"]}
        paths |= {Path(gateway.id, g.id) for g in by_kind["gateway"] if g != gateway}
    for node in by_kind["node"]:
        paths |= {Path(node.id, peer.id) for peer in by_kind["node"] if peer.service == node.service and peer != node}
        paths.add(Path(node.id, VAULT))
    for prober in by_kind["prober"]:
        paths |= {Path(prober.id, t.id) for t in by_kind["node"] + by_kind["gateway"]}
    for controller in by_kind["controller"]:
        paths |= {Path(controller.id, t.id) for t in by_kind["prober"] + by_kind["gateway"] + by_kind["node"]}
        paths |= {Path(controller.id, c.id) for c in by_kind["controller"] if c != controller}
    return paths
