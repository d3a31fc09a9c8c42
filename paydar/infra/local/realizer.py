"""The local realization: `up`, `down` and `status` of a whole national system on 127.0.0.1.

`up` generates identities (per component, 0600), plans ports, writes one config per
component and a supervisord config, starts supervisord and waits until every component
answers, then provisions the vault's locked buckets. On failure it reports the failing
components with the tail of their logs and stops everything it started.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from paydar.infra.local import vault
from paydar.infra.local.appjail import APP_UID_BASE, JAIL_APP_DIR, jailed_command, python_in_jail
from paydar.infra.local.layout import StateLayout
from paydar.infra.local.plan import Plan, PlannedComponent, build_plan
from paydar.infra.local.supervisor import Program, Supervisor, render_config
from paydar.infra.support import require_runnable_locally
from paydar.model.buckets import bucket_name
from paydar.model.errors import PaydarError
from paydar.model.files import read_secret, write_json_atomic, write_secret
from paydar.model.identity import ENTRY_MODULES, OPERATOR, KeyStore
from paydar.model.ids import Kind, controller_id, gateway_id, node_id, prober_id
from paydar.model.routing import SignedTable, initial_table, sign_table
from paydar.model.signing import Signer
from paydar.model.topology import NationalTopology, load_topology
from paydar.vault.s3 import (
    S3Identity,
    load_identity,
    new_identity,
    provision_buckets,
    save_identity,
    vault_client,
)
from paydar.workload.database import APP_DATABASE, APP_ROLE, scram_verifier

__all__ = ["AlreadyRunning", "Realization", "UpFailed", "down", "load_realization", "up"]

log = logging.getLogger(__name__)
READY_TIMEOUT = 90.0
CRASH_LOOP_SPAWNS = 3
SIGNING_KINDS = (Kind.NODE, Kind.GATEWAY, Kind.PROBER, Kind.CONTROLLER)
MODULES = {**{Kind(role): module for role, module in ENTRY_MODULES.items()},
           Kind.LINK: "paydar.infra.local.linkproxy"}
# Vault first, links and gateways next, nodes, then the probers and controllers that watch them.
PRIORITY = {Kind.VAULT: 100, Kind.LINK: 200, Kind.GATEWAY: 200,
            Kind.NODE: 300, Kind.PROBER: 400, Kind.CONTROLLER: 400}
Progress = Callable[[str, int, int], None]


class AlreadyRunning(PaydarError):
    """`up` on a state directory whose system is running."""


class UpFailed(PaydarError):
    """Some component did not become ready; ``diagnostics`` has each one's log tail."""

    def __init__(self, message: str, diagnostics: dict[str, str]) -> None:
        self.diagnostics = diagnostics
        super().__init__(message)


@dataclass
class Realization:
    """A running (or planned) local national system, as the CLI, tests and chaos see it."""

    layout: StateLayout
    topology: NationalTopology
    plan: Plan
    started_at: float = field(default_factory=time.time)

    @property
    def supervisor(self) -> Supervisor:
        return Supervisor(self.layout)

    def admin_token(self, component: str) -> str:
        """The admin credential of one component (the operator's; no other component has it)."""
        return read_secret(self.layout.admin_token(component))

    def link_token(self, link: str) -> str:
        """The admin credential of one link proxy, e.g. ``link.<source>.<target>``."""
        return read_secret(self.layout.link_token(link))

    def operator(self) -> Signer:
        """The operator's signing key: intents are signed with it, and no component holds it."""
        return self.keystore().signer(OPERATOR)

    def vault_admin(self) -> S3Identity:
        """The vault's admin identity: the operator's, never given to a node."""
        return load_identity(self.layout.vault_admin)

    def vault_buckets(self) -> list[str]:
        """One locked bucket per service Paydar backs up (not an agency app's)."""
        return [bucket_name(s.id) for s in self.topology.vaulted_services]

    def keystore(self) -> KeyStore:
        return KeyStore(self.layout.keys)


def load_realization(state_dir: Path) -> Realization:
    """The realization recorded in ``state_dir``; a clear error when there is none."""
    layout = StateLayout(state_dir)
    if not layout.realization.exists():
        raise PaydarError(f"no realization in {state_dir}; start one with `paydar up --state-dir {state_dir}`")
    plan = Plan.model_validate_json(layout.realization.read_bytes())
    return Realization(layout=layout, topology=load_topology(layout.topology), plan=plan)


def up(config: Path, state_dir: Path, progress: Progress = lambda *_: None) -> Realization:
    """Start the national system of ``config`` under ``state_dir`` and wait until it is ready.

    An http service's instance commands and every PostgreSQL server run jailed
    (:mod:`paydar.infra.local.appjail`): each as its own uid, with the state directory hidden; that
    needs root.
    """
    topology = load_topology(config)
    require_runnable_locally(topology, root=os.geteuid() == 0)
    layout = StateLayout(state_dir.resolve())
    running = Supervisor(layout).pid()
    if running is not None:
        raise AlreadyRunning(f"a national system is already running from {layout.root} (supervisord pid "
                             f"{running}); see `paydar status` or stop it with `paydar down`")
    plan = build_plan(topology, layout.root)  # refuses what it cannot realize before anything is created
    layout.make_dirs()
    _check_same_topology(layout, topology)
    shutil.copyfile(config, layout.topology)
    realization = Realization(layout=layout, topology=topology, plan=plan)
    _write_identities(realization)
    write_json_atomic(layout.realization, realization.plan.model_dump(mode="json"))
    programs = _write_component_configs(realization, config.resolve().parent)
    password = write_secret(layout.supervisor_password)
    conf = render_config(layout, programs, password)
    layout.supervisor_conf.write_text(conf)
    layout.supervisor_conf.chmod(0o600)
    realization.supervisor.start()
    try:
        _wait_ready(realization, progress)
        client = vault_client(realization.plan.vault.endpoint, realization.vault_admin())
        provision_buckets(client, realization.vault_buckets(), topology.vault.retention_days)
    except BaseException:
        realization.supervisor.shutdown()
        raise
    return realization


def down(state_dir: Path) -> tuple[int, list[int]]:
    """Stop exactly what `up` started; returns (programs stopped, PIDs that had to be killed)."""
    layout = StateLayout(state_dir.resolve())
    supervisor = Supervisor(layout)
    if supervisor.pid() is None:
        return 0, []
    count = len(supervisor.processes())
    return count, supervisor.shutdown()


def _check_same_topology(layout: StateLayout, topology: NationalTopology) -> None:
    if not layout.table.exists():
        return
    held = SignedTable.model_validate_json(layout.table.read_bytes()).table
    wanted = {s.id for s in topology.services}
    if set(held.services) != wanted:
        raise PaydarError(f"{layout.root} holds a system with services {sorted(held.services)}, but the "
                          f"topology declares {sorted(wanted)}; use a fresh --state-dir for a different topology")


def _write_identities(realization: Realization) -> None:
    """Keys for every component (and the controllers and probers to come), trust root, secrets."""
    layout, topology = realization.layout, realization.topology
    components = [c.id for c in realization.plan.components if c.kind in SIGNING_KINDS and not c.app]
    keystore = KeyStore(layout.keys)
    trust = keystore.build_trust_root([*components, OPERATOR])
    write_json_atomic(layout.trust_root, trust.model_dump(mode="json"))
    for component in components:
        write_secret(layout.admin_token(component))
    for service in topology.postgres_services:
        folder = layout.pg_secret(service.id, "app").parent
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        for name in ("app", *(f"replicator-{r}" for r in service.regions)):
            write_secret(layout.pg_secret(service.id, name))
    for link in realization.plan.links:
        write_secret(layout.link_token(link.id))
    identities = [_vault_identity(layout.vault_admin, "paydar-admin", ("Admin", "Read", "Write", "List", "Tagging"))]
    for region in topology.region_names:
        hosted = [bucket_name(s.id) for s in topology.vaulted_services if region in s.regions]
        identities.append(_vault_identity(layout.vault_region(region), f"paydar-region-{region}",
                                          vault.region_actions(region, hosted)))
    write_json_atomic(layout.vault_s3_config, vault.render_s3_config(identities), mode=0o600)
    if not layout.table.exists():
        signers = [keystore.signer(controller_id(r)) for r in topology.region_names[: topology.control.threshold]]
        signed = sign_table(initial_table(topology, time.time()), signers)
        write_json_atomic(layout.table, signed.model_dump(mode="json"))


def _vault_identity(path: Path, name: str, actions: tuple[str, ...]) -> S3Identity:
    """The identity saved at ``path`` (keys kept across restarts), with ``actions`` as the topology now needs."""
    identity = replace(load_identity(path), actions=actions) if path.exists() else new_identity(name, actions)
    save_identity(path, identity)
    return identity


def _common(realization: Realization, component: PlannedComponent) -> dict[str, Any]:
    layout = realization.layout
    return {
        "component": component.id, "region": component.region, "port": component.port,
        "data_dir": str(layout.data(component.id)), "topology": str(layout.topology),
        "trust_root": str(layout.trust_root), "key": str(KeyStore(layout.keys).path(component.id)),
        "admin_token_file": str(layout.admin_token(component.id)), "table": str(layout.table),
    }


def _app_program(realization: Realization, component: PlannedComponent, directory: Path, uid: int) -> Program:
    """The supervised program of an agency app's instance: its command, placeholders filled in,
    jailed (:mod:`paydar.infra.local.appjail`) as ``uid``."""
    assert component.service and component.region
    http = realization.topology.service(component.service).http
    assert http is not None
    command = http.instances[component.region].command
    assert command is not None
    python, python_binds, python_env = python_in_jail()
    uses_python = any("{python}" in arg for arg in command)
    values = {"{port}": str(component.port), "{region}": component.region, "{service}": component.service,
              "{python}": python}
    argv = [re.sub(r"\{(port|region|service|python)\}", lambda m: values[m.group(0)], arg) for arg in command]
    database = _database_environment(realization, http.database, component.region) if http.database else {}
    jailed = jailed_command(sys.executable, state_dir=realization.layout.root, uid=uid, argv=argv,
                            binds={directory: JAIL_APP_DIR, **(python_binds if uses_python else {})},
                            env={**(python_env if uses_python else {}),
                                 **{k: v for k, v in database.items() if k != "PGPASSWORD"}},
                            pass_env=("PGPASSWORD",) if database else ())
    return Program(name=component.id, command=jailed, log=realization.layout.log(component.id),
                   priority=PRIORITY[component.kind] + (50 if database else 0),
                   environment={"PGPASSWORD": database["PGPASSWORD"]} if database else {})


def _database_environment(realization: Realization, database: str, region: str) -> dict[str, str]:
    """libpq's environment for an app instance in ``region``: its region's agent's primary route,
    the app's role and password, and the read route (a standby's reads may be stale)."""
    agent = realization.plan.node(database, region)
    return {"PGHOST": "127.0.0.1", "PGPORT": str(agent.route_port), "PGUSER": APP_ROLE, "PGDATABASE": APP_DATABASE,
            "PGREQUIREAUTH": "scram-sha-256", "PAYDAR_DB_READ_PORT": str(agent.read_port),
            "PGPASSWORD": read_secret(realization.layout.pg_secret(database, "app"))}


def _agent_config(realization: Realization, component: PlannedComponent, uid: int) -> dict[str, Any]:
    """A postgres agent's config: its server's ports and uid, every region's server as reached
    from here, its own region's replication password and vault identity, and the roles' verifiers."""
    layout, plan = realization.layout, realization.plan
    assert component.service and component.region
    service = realization.topology.service(component.service)
    return _common(realization, component) | {
        "service": service.id, "uid": uid, "state_dir": str(layout.root), "db_port": component.db_port,
        "route_port": component.route_port, "read_port": component.read_port,
        "db_ports": {r: plan.db_port_from(component.region, node_id(service.id, r)) for r in service.regions},
        "peers": {r: plan.url_from(component.region, node_id(service.id, r)) for r in service.regions
                  if r != component.region},
        "replicator_password_file": str(layout.pg_secret(service.id, f"replicator-{component.region}")),
        "replicator_verifiers": {r: _verifier(realization, service.id, f"replicator-{r}") for r in service.regions},
        "app_verifier": _verifier(realization, service.id, "app"), "vault_endpoint": plan.vault.endpoint,
        "vault_identity": str(layout.vault_region(component.region))}


def _verifier(realization: Realization, service: str, name: str) -> str:
    """The SCRAM verifier of one of a database's passwords, the same in every agent's config and on
    every ``up`` (a salt of its own per role; the password is random), so a primary's agent that
    compares them with the server's never sees drift that is not there."""
    salt = hashlib.sha256(f"paydar/{service}/{name}".encode()).digest()[:16]
    return scram_verifier(read_secret(realization.layout.pg_secret(service, name)), salt=salt)


def _write_component_configs(realization: Realization, app_directory: Path) -> list[Program]:
    layout, plan, topology = realization.layout, realization.plan, realization.topology
    python = sys.executable
    programs = []
    jailed = 0
    for component in plan.components:
        path = layout.config(component.id)
        if component.app:
            if component.supervised:
                programs.append(_app_program(realization, component, app_directory, APP_UID_BASE + jailed))
                jailed += 1
            continue
        module = MODULES.get(component.kind, "")
        config: dict[str, Any]
        if component.db_port is not None:
            config = _agent_config(realization, component, APP_UID_BASE + jailed)
            jailed += 1
            module = "paydar.postgres"
        elif component.kind is Kind.NODE:
            assert component.service and component.region
            service = topology.service(component.service)
            peers = {r: plan.url_from(component.region, node_id(service.id, r))
                     for r in service.regions if r != component.region}
            config = _common(realization, component) | {
                "service": service.id, "peers": peers, "vault_endpoint": plan.vault.endpoint,
                "vault_identity": str(layout.vault_region(component.region))}
        elif component.kind is Kind.GATEWAY:
            config = _common(realization, component) | {
                "nodes": _nodes_from(realization, component.region),
                "gateways": _gateways_from(realization, component.region, include_own=False)}
        elif component.kind is Kind.PROBER:
            config = _common(realization, component) | {
                "nodes": _nodes_from(realization, component.region),
                "gateways": _gateways_from(realization, component.region, include_own=True)}
        elif component.kind is Kind.CONTROLLER:
            region = component.region
            config = _common(realization, component) | {
                "nodes": _nodes_from(realization, region),
                "gateways": _gateways_from(realization, region, include_own=True),
                "probers": {prober_id(r): plan.url_from(region, prober_id(r)) for r in topology.vantage_points},
                "peers": {controller_id(r): plan.url_from(region, controller_id(r))
                          for r in topology.region_names if r != region}}
        elif component.kind is Kind.LINK:
            link = next(li for li in plan.links if li.id == component.id)
            config = {"link": f"{link.source}->{link.target}", "host": "127.0.0.1", "admin_port": link.admin_port,
                      "token_file": str(layout.link_token(link.id)),
                      "routes": [{"name": name, "listen_port": port, "target_port": plan.target_port(name)}
                                 for name, port in link.routes.items()]}
        else:
            v = plan.vault
            ports = vault.VaultPorts(s3=v.s3, master=v.master, volume=v.volume, filer=v.filer, admin=v.admin)
            weed = str(Path(python).with_name("weed"))
            command = vault.vault_command(python, weed, layout.vault_dir, ports, layout.vault_s3_config)
            programs.append(Program(name=component.id, command=command, log=layout.log(component.id),
                                    priority=PRIORITY[component.kind], stop_wait_seconds=20,
                                    environment=vault.security_environment(layout.secrets / "vault")))
            continue
        write_json_atomic(path, config)
        programs.append(Program(name=component.id, command=[python, "-m", module, "--config", str(path)],
                                log=layout.log(component.id), priority=PRIORITY[component.kind],
                                stop_wait_seconds=30 if component.db_port is not None else 10))
    return programs


def _nodes_from(realization: Realization, region: str | None) -> dict[str, dict[str, str]]:
    """Every node, as ``region`` reaches it."""
    return {s.id: {r: realization.plan.url_from(region, node_id(s.id, r)) for r in s.regions}
            for s in realization.topology.services}


def _gateways_from(realization: Realization, region: str | None, *, include_own: bool) -> dict[str, str]:
    return {r: realization.plan.url_from(region, gateway_id(r)) for r in realization.topology.region_names
            if include_own or r != region}


def probe(realization: Realization, component: PlannedComponent, timeout: float = 1.0) -> bool:
    """True when the component answers its readiness check."""
    if component.kind is Kind.VAULT:
        try:
            vault_client(realization.plan.vault.endpoint, realization.vault_admin(),
                         timeout=timeout).list_buckets()
            return True
        except Exception:  # noqa: BLE001 - any failure means "not ready yet"
            return False
    path = "/livez" if component.kind is Kind.LINK else "/readyz"
    if component.app:
        assert component.service is not None
        http = realization.topology.service(component.service).http
        assert http is not None
        path = http.health_path
    try:
        with urllib.request.urlopen(component.url + path, timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _wait_ready(realization: Realization, progress: Progress) -> None:
    pending = {c.id: c for c in realization.plan.components}
    total = len(pending)
    spawns: dict[str, set[int]] = {}
    deadline = time.monotonic() + READY_TIMEOUT
    with ThreadPoolExecutor(max_workers=8) as pool:
        while pending and time.monotonic() < deadline:
            results = dict(zip(pending, pool.map(lambda c: probe(realization, c), pending.values()), strict=True))
            for cid, ready in results.items():
                if ready:
                    del pending[cid]
                    progress(cid, total - len(pending), total)
            processes = realization.supervisor.processes()
            fatal = [p["name"] for p in processes if p["statename"] == "FATAL"]
            if fatal:
                raise _up_failed(realization, fatal, "exited repeatedly and were given up")
            # A process that dies just after startsecs is restarted forever and never turns FATAL.
            for p in processes:
                if p["name"] in pending and p["pid"]:
                    spawns.setdefault(p["name"], set()).add(p["pid"])
            looping = sorted(name for name, pids in spawns.items() if len(pids) > CRASH_LOOP_SPAWNS)
            if looping:
                raise _up_failed(realization, looping, f"crashed and restarted {CRASH_LOOP_SPAWNS} times")
            if pending:
                time.sleep(0.1)
    if pending:
        raise _up_failed(realization, sorted(pending), f"did not become ready within {READY_TIMEOUT:.0f}s")


def _up_failed(realization: Realization, components: list[str], why: str) -> UpFailed:
    diagnostics = {cid: tail(realization.layout.log(cid)) for cid in components}
    return UpFailed(f"{len(components)} component(s) {why}: {', '.join(components)}", diagnostics)


def tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log file (or why there are none)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no log at {path}: {exc.strerror})"
