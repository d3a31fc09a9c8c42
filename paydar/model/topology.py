"""The national topology model: regions, vault sites and the service catalog.

``national.yaml`` is parsed here into one validated, frozen model that every other part
(the local realizer, the Pulumi program, probes, controllers, chaos) reads. Validation
collects every problem with its location and a hint instead of stopping at the first.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from paydar.model.errors import Issue, TopologyError

__all__ = [
    "Canary",
    "HttpBounds",
    "HttpWorkload",
    "Instance",
    "InstanceMode",
    "Limit",
    "Limits",
    "NationalTopology",
    "Probes",
    "Region",
    "Service",
    "Vocabulary",
    "WorkloadKind",
    "load_topology",
    "locate_issues",
    "parse_duration",
    "parse_topology",
]

NAME_PATTERN = r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$"
SERVICE_ID_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$"
VOCABULARY_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"
"""An ecosystem: lowercase letters, digits and dashes, as in ``social-welfare``."""
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string such as ``500ms``, ``30s``, ``5m``, ``2h``, ``7d``."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m or 1h, not a boolean")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value.strip())):
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise ValueError(f"expected a duration such as 30s, 5m or 1h, got {value!r}")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


class Weakening(StrEnum):
    """A safety rule a topology deliberately gives up: only to prove the drill catches it."""

    MINORITY_THRESHOLD = "minority-threshold"
    NO_SYNCHRONOUS_STANDBY = "no-synchronous-standby"
    SINGLE_VANTAGE_POINT = "single-vantage-point"

    @property
    def risk(self) -> str:
        """What the weakening lets a single fault or attacker do, in one sentence."""
        return _RISKS[self][0]

    @property
    def caught_by(self) -> str:
        """The catalog experiment that shows it."""
        return _RISKS[self][1]


_RISKS = {
    Weakening.MINORITY_THRESHOLD: (
        "one stolen controller key signs a routing table that every node and gateway obeys",
        "rogue-controller-table"),
    Weakening.NO_SYNCHRONOUS_STANDBY: (
        "a write is acknowledged before any standby holds it, so when the primary crashes no standby can be "
        "proven to hold every acknowledged write and the service stays read-only (or loses writes)",
        "crash-primary-node"),
    Weakening.SINGLE_VANTAGE_POINT: (
        "one prober is the whole majority, so one lying prober with a stolen key fails a healthy primary over",
        "lying-prober"),
}


class Limit(StrEnum):
    """A limit a service states openly under ``accepts:``: the drill then passes it with that
    statement in the report instead of failing its RTO (never silently)."""

    READ_ONLY_AFTER_REGION_LOSS = "read-only-after-region-loss"
    """After losing one of its regions (or its node there) the service serves reads but stops
    acknowledging writes until that region returns (too few regions for its sync_replicas)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Region(_Model):
    """A city or region that runs a gateway and one node per hosted service."""

    name: str = Field(pattern=NAME_PATTERN)
    display_name: str = ""


class VaultSite(_Model):
    """A backup failure domain kept apart from the service regions."""

    name: str = Field(pattern=NAME_PATTERN)
    display_name: str = ""


class Vault(_Model):
    sites: tuple[VaultSite, ...] = Field(min_length=1)
    retention_days: int = Field(default=30, ge=1, le=3650)


class Control(_Model):
    """Routing-table trust and the failover controllers' judgement.

    ``threshold`` controller signatures (out of one controller per region) make a table;
    a target is judged down after ``down_after_rounds`` rounds in which a majority of vantage
    points saw it fail, and up again after ``up_after_rounds`` good rounds (hysteresis).
    At most ``max_failovers_per_round`` services (default: half the catalog) change primary
    in one table.
    """

    threshold: int = Field(default=2, ge=1)
    table_ttl: Duration = Field(default=7 * 86400.0, gt=0)
    interval: Duration = Field(default=0.2, ge=0.05, le=60)
    down_after_rounds: int = Field(default=2, ge=1, le=100)
    up_after_rounds: int = Field(default=4, ge=1, le=100)
    max_failovers_per_round: int | None = Field(default=None, ge=1)
    observation_max_age: Duration = Field(default=3.0, gt=0, le=600)

    def failover_cap(self, services: int) -> int:
        """How many services may change primary in one table."""
        return self.max_failovers_per_round or max(1, (services + 1) // 2)


class Probes(_Model):
    """The probers' schedule: a round every ``interval``, each target bounded by ``timeout``.

    ``vantage_points`` are the regions that run a prober (default: every region); controllers
    judge a target down only when a majority of them agree.
    """

    interval: Duration = Field(default=0.5, ge=0.05, le=60)
    timeout: Duration = Field(default=0.4, ge=0.05, le=30)
    max_concurrency: int = Field(default=256, ge=1, le=10_000)
    canary_interval: Duration = Field(default=5.0, ge=0.1, le=3600)
    integrity_interval: Duration = Field(default=2.0, ge=0.1, le=3600)
    vantage_points: tuple[str, ...] | None = None


class Storage(_Model):
    """How nodes protect their stored data.

    Every ``integrity_interval`` a node re-reads its whole chain from disk and verifies it
    (ransomware detection), and every ``database_scan_interval`` a PostgreSQL agent its whole
    database; every ``backup_interval`` each puts a verified backup in the vault.
    """

    integrity_interval: Duration = Field(default=5.0, ge=0.1, le=86400)
    backup_interval: Duration = Field(default=900.0, ge=1, le=7 * 86400)
    database_scan_interval: Duration = Field(default=300.0, ge=1, le=7 * 86400)
    """How often each PostgreSQL agent reads its whole database back from disk and checks it: a
    scan re-reads every relation, so it is rarer than a registry node's chain check."""


class Limits(_Model):
    """Bounds every node and gateway applies."""

    max_inflight_requests: int = Field(default=64, ge=1, le=10_000)
    max_queued_requests: int = Field(default=256, ge=0, le=100_000)
    max_body_bytes: int = Field(default=65_536, ge=1024, le=16 * 1024 * 1024)
    replication_timeout: Duration = Field(default=2.0, gt=0, le=60)


class WorkloadKind(StrEnum):
    """What a service's per-region instances run (the workload contract: :mod:`paydar.workload`)."""

    REGISTRY = "registry"
    """Paydar's reference workload, the citizen document registry."""
    HTTP = "http"
    """An agency's own web app, one instance per region, behind the gateways."""
    POSTGRES = "postgres"
    """The agency's own PostgreSQL, one server per region with a Paydar agent beside it."""


class InstanceMode(StrEnum):
    """How an HTTP service's instances share the load."""

    ACTIVE_ACTIVE = "active-active"
    """Every healthy instance serves; a gateway prefers its own region's."""
    ACTIVE_PASSIVE = "active-passive"
    """One instance serves; the others wait to take over."""


PLACEHOLDERS = ("{port}", "{region}", "{service}", "{python}")
"""What an instance command may name, substituted by ``paydar up``; ``{python}`` is Paydar's own
interpreter with its packages (psycopg among them), for an app that reaches a database."""
_PLACEHOLDER = re.compile(r"\{[^{}]*\}")
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_PATH = r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/?-]{0,500}$"


class Instance(_Model):
    """One region's instance of an HTTP service: a command ``paydar up`` supervises, or a URL
    that already serves."""

    command: tuple[str, ...] | None = Field(default=None, min_length=1, max_length=64)
    """The argv, with ``{port}`` (required), ``{region}`` and ``{service}`` substituted."""
    url: str | None = Field(default=None, pattern=r"^https?://[A-Za-z0-9.-]{1,253}(?::[0-9]{1,5})?/?$",
                            max_length=300)


class Canary(_Model):
    """The citizen's view, run through every gateway: a request and what its answer must be."""

    method: str = Field(default="GET", pattern="^(" + "|".join(HTTP_METHODS) + ")$")
    path: str = Field(pattern=_PATH)
    """Relative to the service: ``/eligibility?household=4`` is ``/v1/services/<id>/eligibility?...``."""
    expect_status: int = Field(default=200, ge=100, le=599)
    body: str | None = Field(default=None, max_length=65_536)
    body_contains: str | None = Field(default=None, min_length=1, max_length=1000)


LEDGER_ID = "{id}"
"""Where a ledger request names the record's fresh id."""


class LedgerRequest(_Model):
    """One request of an app's ledger, ``{id}`` standing for the record's id in the path and body."""

    method: str = Field(default="GET", pattern="^(" + "|".join(HTTP_METHODS) + ")$")
    path: str = Field(pattern=r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/?{}-]{0,500}$")
    body: str | None = Field(default=None, max_length=65_536)
    expect_status: int = Field(default=200, ge=100, le=599)
    body_contains: str | None = Field(default=None, min_length=1, max_length=1000)

    def canary(self, record: str) -> Canary:
        """This request for one record, as a canary the probe engine runs."""
        def filled(text: str | None) -> str | None:
            return text.replace(LEDGER_ID, record) if text is not None else None

        return Canary(method=self.method, path=self.path.replace(LEDGER_ID, record), body=filled(self.body),
                      expect_status=self.expect_status, body_contains=filled(self.body_contains))


class Ledger(_Model):
    """How a drill proves an app loses nothing it acknowledged (the Jepsen-style check Paydar runs
    on its own registry): ``write`` a record under a fresh id, which is acknowledged when its answer
    passes, and later ``read`` it back through every gateway."""

    write: LedgerRequest
    read: LedgerRequest


class HttpBounds(_Model):
    """Per-service bounds the gateways apply in front of the instances."""

    max_body_bytes: int = Field(default=1_048_576, ge=0, le=64 * 1024 * 1024)
    """The largest request body a citizen may send; a larger one is refused with 413 unread."""
    max_response_bytes: int = Field(default=8 * 1_048_576, ge=1024, le=256 * 1024 * 1024)
    """The largest answer an instance may give; a larger one is a 502, never relayed."""
    timeout: Duration = Field(default=10.0, gt=0, le=300)
    """How long one instance has to answer one request."""
    max_concurrency: int = Field(default=64, ge=1, le=10_000)
    """Requests one gateway has in flight for this service; more are shed with 503 + Retry-After."""


class HttpWorkload(_Model):
    """An agency's own web app behind the gateways (``workload: http``)."""

    instances: dict[str, Instance] = Field(min_length=1, max_length=64)
    """Region -> its instance; exactly the service's regions."""
    health_path: str = Field(pattern=_PATH)
    canary: Canary
    mode: InstanceMode = InstanceMode.ACTIVE_ACTIVE
    limits: HttpBounds = HttpBounds()
    ledger: Ledger | None = None
    """Optional: lets drills check that no write the app acknowledged is lost."""
    database: str | None = Field(default=None, pattern=SERVICE_ID_PATTERN)
    """The ``workload: postgres`` service this app keeps its state in: each instance reaches that
    service's current primary through its own region's agent, given to it as libpq's ``PG*``
    environment (``PGHOST``, ``PGPORT``, ``PGUSER``, ``PGPASSWORD``, ``PGDATABASE``), never a fixed host."""


class Service(_Model):
    """One government service, keyed by its service identifier."""

    id: str = Field(pattern=SERVICE_ID_PATTERN)
    name: str = Field(min_length=1)
    agency: str = Field(min_length=1, max_length=200)
    ecosystem: str = Field(pattern=VOCABULARY_PATTERN)
    tier: int = Field(ge=1, le=9)
    """Criticality tier: 1 is the most critical (named under ``vocabulary.tiers``)."""
    rto: Duration
    rpo: Duration
    regions: tuple[str, ...] = Field(min_length=1)
    sync_replicas: int = Field(default=0, ge=0)
    """Required for a registry or postgres service; an http service has none (its state is its app's own)."""
    accepts: tuple[Limit, ...] = ()
    """N-1 limits the topology states openly for this service (see :class:`Limit`)."""
    workload: WorkloadKind = WorkloadKind.REGISTRY
    http: HttpWorkload | None = None
    """With ``workload: http``: its instances, health path, canary, mode and bounds."""

    @property
    def home(self) -> str:
        """The preferred region: the initial primary."""
        return self.regions[0]

    @property
    def ack_replicas(self) -> int:
        """Standbys that must hold a write before the primary acknowledges it.

        At least ``sync_replicas``, and at least enough that the primary and they are a
        majority of the service's replicas: two primaries of one epoch (controllers that
        equivocated) can then never both acknowledge, because their majorities would share a
        standby, and a standby follows one primary per epoch. ``sync_replicas: 0`` is only
        allowed as a declared weakening and keeps its meaning (the primary alone).
        """
        if self.sync_replicas == 0:
            return 0
        return max(self.sync_replicas, len(self.regions) // 2)

    @property
    def writes_survive_region_loss(self) -> bool:
        """Whether the primary and ``ack_replicas`` standbys still fit after losing any one replica."""
        return self.ack_replicas <= len(self.regions) - 2


class Vocabulary(_Model):
    """The catalog's own words: the ecosystems, agencies and tiers its services may name.

    A list left out accepts any value; a declared one is the whole vocabulary, so a typo in
    one service among thousands is caught by ``paydar validate`` rather than drilled.
    """

    ecosystems: tuple[str, ...] | None = None
    agencies: tuple[str, ...] | None = None
    tiers: dict[int, str] | None = None
    """Tier numbers and their names, e.g. ``{1: critical, 2: essential, 3: standard}``."""


class NationalTopology(_Model):
    """The validated national system. Build it with :func:`load_topology`."""

    name: str = Field(min_length=1)
    regions: tuple[Region, ...] = Field(min_length=1)
    vault: Vault
    control: Control = Control()
    probes: Probes = Probes()
    storage: Storage = Storage()
    limits: Limits = Limits()
    vocabulary: Vocabulary = Vocabulary()
    unsafe: tuple[Weakening, ...] = ()
    """Safety rules given up on purpose (see ``examples/weakened/``); never in production."""
    services: tuple[Service, ...] = Field(min_length=1)

    @property
    def region_names(self) -> tuple[str, ...]:
        return tuple(region.name for region in self.regions)

    @property
    def registry_services(self) -> tuple[Service, ...]:
        """The services whose state Paydar's own nodes hold (``workload: registry``)."""
        return tuple(s for s in self.services if s.workload is WorkloadKind.REGISTRY)

    @property
    def first_registry_service(self) -> Service:
        """The first registry service (the first service when there is none): what attacks on
        Paydar's own nodes and vault default to."""
        return (self.registry_services or self.services)[0]

    @property
    def postgres_services(self) -> tuple[Service, ...]:
        """The services that are an agency's own PostgreSQL (``workload: postgres``)."""
        return tuple(s for s in self.services if s.workload is WorkloadKind.POSTGRES)

    @property
    def vaulted_services(self) -> tuple[Service, ...]:
        """The services Paydar backs up into the vault: its own registries and agencies' databases
        (an http service's state is its app's own)."""
        return tuple(s for s in self.services if s.workload is not WorkloadKind.HTTP)

    @property
    def http_services(self) -> dict[str, HttpWorkload]:
        """Each ``workload: http`` service's block, by service id."""
        return {s.id: s.http for s in self.services if s.workload is WorkloadKind.HTTP and s.http is not None}

    def service(self, service_id: str) -> Service:
        """The service with this identifier; ``KeyError`` names the known ones."""
        for service in self.services:
            if service.id == service_id:
                return service
        known = ", ".join(s.id for s in self.services)
        raise KeyError(f"unknown service {service_id!r}; known services: {known}")

    def services_in(self, region: str) -> tuple[Service, ...]:
        """Services that have a node in ``region``."""
        return tuple(s for s in self.services if region in s.regions)

    @property
    def vantage_points(self) -> tuple[str, ...]:
        """The regions that run a prober."""
        return self.probes.vantage_points if self.probes.vantage_points is not None else self.region_names


def _vocabulary_issues(topo: NationalTopology) -> list[Issue]:
    """Every service speaks the catalog's declared vocabulary, where one is declared."""
    issues: list[Issue] = []
    vocabulary = topo.vocabulary
    declared: tuple[tuple[str, tuple[object, ...] | None, str], ...] = (
        ("ecosystem", vocabulary.ecosystems, "ecosystems"), ("agency", vocabulary.agencies, "agencies"),
        ("tier", tuple(vocabulary.tiers) if vocabulary.tiers is not None else None, "tiers"))
    for field, allowed, plural in declared:
        if allowed is None:
            continue
        for i, service in enumerate(topo.services):
            value = getattr(service, field)
            if value not in allowed:
                shown = ", ".join(map(str, allowed[:12])) + (", ..." if len(allowed) > 12 else "")
                issues.append(Issue(f"services[{i}] (id {service.id!r}).{field}",
                                    f"{field} {value!r} is not declared under vocabulary.{plural}",
                                    f"use one of: {shown}; or declare it under vocabulary.{plural}"))
    return issues


def _semantic_issues(topo: NationalTopology) -> list[Issue]:
    """Cross-field rules, one issue per broken rule and place."""
    issues: list[Issue] = []
    regions = topo.region_names
    issues += _duplicates("regions", regions, "region names must be unique")
    issues += _duplicates("vault.sites", [s.name for s in topo.vault.sites], "site names must be unique")
    for i, site in enumerate(topo.vault.sites):
        if site.name in regions:
            issues.append(Issue(f"vault.sites[{i}].name", f"vault site {site.name!r} is also a service region",
                                "keep backups in a failure domain apart from the regions they protect"))
    issues += _duplicates("services", [s.id for s in topo.services], "service identifiers must be unique")
    if topo.control.threshold > len(regions):
        issues.append(Issue("control.threshold",
                            f"threshold {topo.control.threshold} exceeds the {len(regions)} controllers "
                            "(one per region)",
                            f"use a threshold between 1 and {len(regions)}; a majority is the safe choice"))
    elif topo.control.threshold * 2 <= len(regions) and Weakening.MINORITY_THRESHOLD not in topo.unsafe:
        issues.append(Issue("control.threshold",
                            f"threshold {topo.control.threshold} is not a majority of the {len(regions)} controllers",
                            f"use at least {len(regions) // 2 + 1}: with a minority threshold two disjoint groups "
                            "of controllers could sign conflicting tables"))
    issues += _vantage_issues(topo)
    if topo.control.max_failovers_per_round and topo.control.max_failovers_per_round > len(topo.services):
        issues.append(Issue("control.max_failovers_per_round",
                            f"cap {topo.control.max_failovers_per_round} exceeds the {len(topo.services)} services",
                            "use a cap no larger than the catalog, or leave it out for half the catalog"))
    issues += _vocabulary_issues(topo)
    for i, service in enumerate(topo.services):
        issues += _service_issues(topo, i, service)
    return issues


def _service_issues(topo: NationalTopology, i: int, service: Service) -> list[Issue]:
    """The rules one service entry must keep."""
    issues: list[Issue] = []
    regions = topo.region_names
    where = f"services[{i}] (id {service.id!r})"
    for j, region in enumerate(service.regions):
        if region not in regions:
            issues.append(Issue(f"{where}.regions[{j}]", f"unknown region {region!r}",
                                f"declare it under regions, or use one of: {', '.join(regions)}"))
    if len(set(service.regions)) != len(service.regions):
        issues.append(Issue(f"{where}.regions", "a region is listed twice", "list each region once"))
    if len(service.regions) < 2:
        issues.append(Issue(f"{where}.regions", "the service is in one region only",
                            "list at least two regions so losing one region does not take the service down"))
    standbys = len(set(service.regions)) - 1
    if service.sync_replicas > standbys:
        issues.append(Issue(f"{where}.sync_replicas",
                            f"sync_replicas {service.sync_replicas} is larger than the {standbys} "
                            "standbys available",
                            f"use at most {standbys}, or host the service in more regions"))
    if service.workload is WorkloadKind.HTTP or service.http is not None:
        return issues + _http_issues(where, service) + _database_issues(topo, where, service)
    if "sync_replicas" not in service.model_fields_set:
        missing = f"missing: a {service.workload.value} service needs sync_replicas"
        return [*issues, Issue(f"{where}.sync_replicas", missing,
                               "add sync_replicas: 1 (standbys that must hold a write before it is acknowledged)")]
    if Limit.READ_ONLY_AFTER_REGION_LOSS in service.accepts and service.writes_survive_region_loss:
        issues.append(Issue(f"{where}.accepts", f"{Limit.READ_ONLY_AFTER_REGION_LOSS.value} is accepted, but the "
                            f"service keeps acknowledging writes after losing any one of its "
                            f"{len(service.regions)} regions", "remove it: accept only a limit the service has"))
    if service.rpo == 0 and service.sync_replicas == 0 and Weakening.NO_SYNCHRONOUS_STANDBY not in topo.unsafe:
        issues.append(Issue(f"{where}.sync_replicas", "rpo 0s needs at least one synchronous standby",
                            "set sync_replicas: 1, or declare the data loss the service tolerates as rpo"))
    return issues


def _http_issues(where: str, service: Service) -> list[Issue]:
    """The rules an HTTP service's entry must keep (its regions were checked already)."""
    http = service.http
    if service.workload is not WorkloadKind.HTTP:
        return [Issue(f"{where}.http", "an http block belongs to workload: http only",
                      "add workload: http, or remove the http block")]
    if http is None:
        return [Issue(f"{where}.http", "workload: http needs an http block",
                      "add http: with instances (one per region), health_path and canary")]
    issues = _ledger_issues(where, http.ledger)
    for field in ("sync_replicas", "accepts"):
        if field in service.model_fields_set:
            issues.append(Issue(f"{where}.{field}", f"{field} applies to workloads Paydar replicates; an http "
                                "service's state is its app's own", f"remove {field}"))
    for region in service.regions:
        if region not in http.instances:
            issues.append(Issue(f"{where}.http.instances", f"no instance for region {region!r}",
                                f"add {region}: with a command or a url, one instance per region of the service"))
    for region, instance in http.instances.items():
        at = f"{where}.http.instances.{region}"
        if region not in service.regions:
            issues.append(Issue(at, f"region {region!r} is not one of the service's regions",
                                f"use one of: {', '.join(service.regions)}, or add it to the service's regions"))
        if (instance.command is None) == (instance.url is None):
            issues.append(Issue(at, "give exactly one of command (paydar up runs it) and url (it already serves)",
                                "keep one of the two"))
        if instance.command is not None:
            named = {p for arg in instance.command for p in _PLACEHOLDER.findall(arg)}
            if unknown := sorted(named - set(PLACEHOLDERS)):
                issues.append(Issue(f"{at}.command", f"unknown placeholder {unknown[0]}",
                                    f"use {', '.join(PLACEHOLDERS)}"))
            if "{port}" not in named:
                issues.append(Issue(f"{at}.command", "the command never names {port}, the port paydar up gives it",
                                    "pass {port} to the app, e.g. --port {port}"))
    return issues


def _ledger_issues(where: str, ledger: Ledger | None) -> list[Issue]:
    """Both requests of a ledger name the record's id."""
    return [Issue(f"{where}.http.ledger.{name}.path", f"the ledger's {name} never names {LEDGER_ID}, the fresh id of "
                  "each record", f"put {LEDGER_ID} in the path, e.g. /records/{LEDGER_ID}")
            for name, request in ((("write", ledger.write), ("read", ledger.read)) if ledger else ())
            if LEDGER_ID not in request.path]


def _database_issues(topo: NationalTopology, where: str, service: Service) -> list[Issue]:
    """An app's database must be a postgres service of the catalog, in every region the app runs."""
    database = service.http.database if service.http is not None else None
    if database is None:
        return []
    found = next((s for s in topo.services if s.id == database), None)
    if found is None or found.workload is not WorkloadKind.POSTGRES:
        postgres = [s.id for s in topo.services if s.workload is WorkloadKind.POSTGRES]
        what = "no service" if found is None else f"a {found.workload.value} service"
        fix = f"name one of: {', '.join(postgres)}" if postgres else "declare a service with workload: postgres"
        return [Issue(f"{where}.http.database", f"database {database!r} is {what}, not a postgres service", fix)]
    missing = [r for r in service.regions if r not in found.regions]
    if missing:
        return [Issue(f"{where}.http.database", f"the app runs in {', '.join(missing)}, where database {database} "
                      "has no server", f"host service {database} there too, or run the app only where it is")]
    return []


def _vantage_issues(topo: NationalTopology) -> list[Issue]:
    points = topo.probes.vantage_points
    if points is None:
        return []
    issues = [Issue(f"probes.vantage_points[{i}]", f"unknown region {region!r}",
                    f"use one of: {', '.join(topo.region_names)}")
              for i, region in enumerate(points) if region not in topo.region_names]
    issues += _duplicates("probes.vantage_points", points, "each region runs one prober")
    if not points:
        issues.append(Issue("probes.vantage_points", "no vantage point",
                            "list at least three regions, or leave it out"))
    elif len(set(points)) < 3 and Weakening.SINGLE_VANTAGE_POINT not in topo.unsafe:
        issues.append(Issue("probes.vantage_points", f"{len(set(points))} vantage point(s): one lying or failing "
                            "prober is then enough to trigger or block a failover",
                            "probe from at least three regions (leave vantage_points out for every region)"))
    return issues


def _duplicates(location: str, names: list[str] | tuple[str, ...], message: str) -> list[Issue]:
    seen: set[str] = set()
    issues = []
    for i, name in enumerate(names):
        if name in seen:
            issues.append(Issue(f"{location}[{i}]", f"{message}: {name!r} appears twice", "rename or remove one"))
        seen.add(name)
    return issues


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _pydantic_issues(error: ValidationError) -> list[Issue]:
    hints = {
        "extra_forbidden": "remove it or check its spelling",
        "missing": "add this field",
        "string_pattern_mismatch": "use lowercase letters, digits and dashes",
        "enum": "use one of the listed values",
    }
    return [
        Issue(_location(tuple(err["loc"])), err["msg"], hints.get(err["type"], ""), kind=err["type"])
        for err in error.errors()
    ]


def parse_topology(data: Any, source: str = "<topology>") -> NationalTopology:
    """Validate already-parsed YAML data; raises :class:`TopologyError` with every issue."""
    if not isinstance(data, dict):
        raise TopologyError(source, [Issue("(top level)", "expected a mapping with regions, vault and services",
                                           "start from the example national.yaml")])
    try:
        topo = NationalTopology.model_validate(data)
    except ValidationError as exc:
        raise TopologyError(source, _pydantic_issues(exc)) from None
    issues = _semantic_issues(topo)
    if issues:
        raise TopologyError(source, issues)
    return topo


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key repeated in one mapping (it keeps the last, silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[object, object]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice in one mapping", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_topology(path: str | Path) -> NationalTopology:
    """Read and validate a topology file; raises :class:`TopologyError` naming every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TopologyError(str(path), [Issue("(file)", f"cannot read: {exc.strerror}",
                                              "pass the path of an existing topology file")]) from None
    except UnicodeDecodeError as exc:
        raise TopologyError(str(path), [Issue(f"byte {exc.start}", "not UTF-8 text",
                                              "save the file as UTF-8 (YAML files are UTF-8)")]) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        problem = getattr(exc, "problem", None) or str(exc)
        hint = "keep one of the two" if "appears twice" in str(problem) else "check indentation and quoting"
        raise TopologyError(str(path), [Issue(where, f"not valid YAML: {problem}", hint)]) from None
    try:
        return parse_topology(data, str(path))
    except TopologyError as exc:
        raise TopologyError(exc.source, locate_issues(text, exc.issues)) from None


_SEGMENT = re.compile(r"(?:^|\.)([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")
_WRONG_TYPE = ("_type", "_parsing")
"""Pydantic error types that mean the value has the wrong type: what the file says is echoed."""
_SCALAR_TAGS = {"tag:yaml.org,2002:int": "a number", "tag:yaml.org,2002:float": "a number",
                "tag:yaml.org,2002:bool": "a boolean", "tag:yaml.org,2002:null": "empty"}


def _path(location: str) -> list[str | int]:
    """The path of a location as issues spell it (``services[2] (id 'x1').regions[0]``)."""
    plain = re.sub(r" \([^)]*\)", "", location)
    return [int(index) if index else key for key, index in _SEGMENT.findall(plain)]


def _node(root: yaml.Node, path: list[str | int]) -> yaml.Node:
    """The deepest node of ``root`` along ``path`` (a missing field: the mapping that lacks it)."""
    node = root
    for part in path:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            found = next((value for key, value in node.value if getattr(key, "value", None) == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            found = node.value[part]
        else:
            found = None
        if found is None:
            break
        node = found
    return node


def locate_issues(text: str, issues: list[Issue]) -> list[Issue]:
    """Each issue with the line and column of its field in ``text``; a wrong type also says what
    the file holds, and an unquoted value where text is expected says to quote it."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return issues
    if root is None:
        return issues
    located = []
    for issue in issues:
        path = _path(issue.location)
        node = _node(root, path)
        message, hint = issue.message, issue.hint
        if issue.kind.endswith(_WRONG_TYPE) and isinstance(node, yaml.ScalarNode):
            message += f" (the file has {node.value!r})" if node.value else " (the file has nothing there)"
            read_as = _SCALAR_TAGS.get(node.tag)
            if issue.kind == "string_type" and read_as and node.value:
                field = path[-1] if path and isinstance(path[-1], str) else "the value"
                octal = read_as == "a number" and len(node.value) > 1 and node.value.startswith("0")
                hint = (f'quote it: {field}: "{node.value}" (unquoted, YAML reads {node.value} as {read_as}'
                        + (", and a leading 0 as octal" if octal else "") + ")")
        located.append(Issue(issue.location, message, hint, node.start_mark.line + 1, node.start_mark.column + 1,
                             issue.kind))
    return located
