"""The plan of a local realization: every component, its port, and how regions reach it.

Built from the topology model and a port allocator, saved as ``realization.json``; `up`,
`status`, `down`, the CLI, tests and chaos all read it from there. Cross-region traffic is
addressed to the link proxy of the (source region -> destination region) path, so a node in
one region reaches another region only through a link that chaos can cut.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from paydar.infra.local.ports import PortAllocator
from paydar.model.errors import BadInput
from paydar.model.ids import Kind, gateway_id, link_id, node_id
from paydar.model.topology import NationalTopology, Service, WorkloadKind

__all__ = ["DB_ROUTE", "LinkPlan", "Plan", "PlannedComponent", "build_plan"]

HOST = "127.0.0.1"
DB_ROUTE = "db:"
"""A link route to a postgres server is named ``db:<agent id>``."""


class PlannedComponent(BaseModel):
    """One supervised process."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    kind: Kind
    region: str | None = None
    service: str | None = None
    port: int
    app: bool = False
    """An agency app's instance (``workload: http``): it holds no Paydar key, token or credential."""
    supervised: bool = True
    """False for an app instance given by URL: it already serves, and ``up`` only waits for it."""
    db_port: int | None = None
    """A postgres agent's server port (``port`` is the agent's own HTTP port)."""
    route_port: int | None = None
    """A postgres agent's route to the service's current primary, for its region's apps."""
    read_port: int | None = None
    """A postgres agent's route to its own server, whatever its role (reads that may be stale)."""

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


class LinkPlan(BaseModel):
    """The proxy on one directed inter-region path; ``routes`` maps component id -> listen port."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    source: str
    target: str
    admin_port: int
    routes: dict[str, int]

    @property
    def admin_url(self) -> str:
        return f"http://{HOST}:{self.admin_port}"


class VaultPlan(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    s3: int
    master: int
    volume: int
    filer: int
    admin: int

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.s3}"


class Plan(BaseModel):
    """Everything `up` starts, with ports; the address book of the realization."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    state_dir: Path
    components: tuple[PlannedComponent, ...]
    links: tuple[LinkPlan, ...]
    vault: VaultPlan

    def component(self, component_id: str) -> PlannedComponent:
        for component in self.components:
            if component.id == component_id:
                return component
        raise KeyError(f"no component {component_id!r} in this realization")

    def of_kind(self, kind: Kind) -> list[PlannedComponent]:
        return [c for c in self.components if c.kind is kind]

    def link(self, source: str, target: str) -> LinkPlan:
        for link in self.links:
            if link.source == source and link.target == target:
                return link
        raise KeyError(f"no link {source}->{target} in this realization")

    def target_port(self, route: str) -> int:
        """The port a link route named ``route`` forwards to: a component's, or a database's (``db:<id>``)."""
        if route.startswith(DB_ROUTE):
            port = self.component(route.removeprefix(DB_ROUTE)).db_port
            assert port is not None
            return port
        return self.component(route).port

    def db_port_from(self, region: str, component_id: str) -> int:
        """The port at which ``region`` reaches a postgres agent's server: its own, or its link's."""
        target = self.component(component_id)
        if target.region == region:
            assert target.db_port is not None
            return target.db_port
        assert target.region is not None
        return self.link(region, target.region).routes[DB_ROUTE + component_id]

    def url_from(self, region: str | None, component_id: str) -> str:
        """How ``region`` reaches a component: directly at home, else through the link proxy."""
        target = self.component(component_id)
        if region is None or target.region in (None, region):
            return target.url
        return f"http://{HOST}:{self.link(region, target.region).routes[component_id]}"

    def gateway(self, region: str) -> PlannedComponent:
        return self.component(gateway_id(region))

    def node(self, service: str, region: str) -> PlannedComponent:
        return self.component(node_id(service, region))




def _instance(service: Service, region: str, ports: PortAllocator) -> PlannedComponent:
    """The instance of ``service`` in ``region``: a Paydar node, or the agency's app."""
    cid = node_id(service.id, region)
    if service.workload is WorkloadKind.POSTGRES:
        return PlannedComponent(id=cid, kind=Kind.NODE, region=region, service=service.id, port=ports.take(),
                                db_port=ports.take(), route_port=ports.take(), read_port=ports.take())
    if service.workload is not WorkloadKind.HTTP or service.http is None:
        return PlannedComponent(id=cid, kind=Kind.NODE, region=region, service=service.id, port=ports.take())
    url = service.http.instances[region].url
    if url is None:
        return PlannedComponent(id=cid, kind=Kind.NODE, region=region, service=service.id, port=ports.take(),
                                app=True)
    parsed = urllib.parse.urlsplit(url)
    if parsed.hostname not in ("127.0.0.1", "localhost") or parsed.port is None or parsed.scheme != "http":
        raise BadInput(f"service {service.id}: the instance in {region} is {url}, but the local realization "
                       "reaches only http://127.0.0.1:<port>; give a local URL with its port, or a command "
                       "paydar up runs")
    return PlannedComponent(id=cid, kind=Kind.NODE, region=region, service=service.id, port=parsed.port,
                            app=True, supervised=False)


def _given_ports(topology: NationalTopology) -> set[int]:
    """The ports of the instances given by URL; two that share one are refused."""
    seen: dict[int, str] = {}
    for sid, http in topology.http_services.items():
        for region, instance in http.instances.items():
            port = urllib.parse.urlsplit(instance.url).port if instance.url else None
            if port is None:
                continue
            if port in seen:
                raise BadInput(f"service {sid}: the instance in {region} has port {port}, as {seen[port]} has; "
                               "give each instance its own port")
            seen[port] = f"service {sid} in {region}"
    return set(seen)


def build_plan(topology: NationalTopology, state_dir: Path, ports: PortAllocator | None = None) -> Plan:
    """Allocate a port for every component and listener of the realization."""
    ports = ports or PortAllocator()
    given = _given_ports(topology)
    ports.taken.update(given)  # an instance given by URL owns its port even while it is down
    components: list[PlannedComponent] = []
    for region in topology.region_names:
        components.append(PlannedComponent(id=gateway_id(region), kind=Kind.GATEWAY, region=region,
                                           port=ports.take()))
        for service in topology.services_in(region):
            components.append(_instance(service, region, ports))
        for kind in (Kind.PROBER, Kind.CONTROLLER):
            if kind is Kind.PROBER and region not in topology.vantage_points:
                continue
            components.append(PlannedComponent(id=f"{kind.value}.{region}", kind=kind, region=region,
                                               port=ports.take()))
    links = []
    for source in topology.region_names:
        for target in topology.region_names:
            if source == target:
                continue
            routes = {c.id: ports.take() for c in components if c.region == target}
            routes |= {DB_ROUTE + c.id: ports.take() for c in components if c.region == target and c.db_port}
            link = LinkPlan(id=link_id(source, target), source=source, target=target,
                            admin_port=ports.take(), routes=routes)
            links.append(link)
            components.append(PlannedComponent(id=link.id, kind=Kind.LINK, port=link.admin_port))
    vault = VaultPlan(s3=ports.take_pair(), master=ports.take_pair(), volume=ports.take_pair(),
                      filer=ports.take_pair(), admin=ports.take_pair())
    components.append(PlannedComponent(id="vault", kind=Kind.VAULT, port=vault.s3))
    return Plan(state_dir=state_dir, components=tuple(components), links=tuple(links), vault=vault)
