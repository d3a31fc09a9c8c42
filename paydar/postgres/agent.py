"""The agent beside one PostgreSQL server: it obeys the signed table and nothing else.

Every ``TICK_SECONDS``, and at once when it adopts a table, it reads its server's own
positions and acts on :func:`paydar.postgres.decide.next_action`: it initialises or clones and
starts the server in the role the table gives it, points a standby at the table's primary (or
at nobody while the service is fenced), promotes a standby the table names primary (its quorum
of standbys required before it takes a write), fences a primary the table deposes by stopping
it at once, and rejoins a former primary with ``pg_rewind``. A table reaches it only through
:meth:`PgAgent.offer_table`, adopted only with the controllers' threshold of signatures.

The epoch it reports in ``/state`` is the one it has *enacted*: a controller proves a promotion
from standbys' positions only once they stream from nobody in the fenced epoch, so those
positions can no longer grow.

The server is its child, jailed, and dies with it (``die_with_parent``): an agent that crashes
takes its server down, as a machine that fails would, and never leaves one behind unobeyed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import aiohttp
import psycopg
from prometheus_client import CollectorRegistry, Counter, Enum, Gauge
from psycopg import sql

from paydar.infra.local.processes import terminate
from paydar.model.errors import PaydarError, TableRejected
from paydar.model.files import read_secret, write_json_atomic
from paydar.model.routing import ServiceRoute, SignedTable, TableGuard
from paydar.postgres.backup import BackupUnavailable, PgBackups, generation
from paydar.postgres.config import AgentConfig
from paydar.postgres.decide import Action, Decision, Disk, held, impostors, instance_state, next_action
from paydar.postgres.integrity import DATABASES, Finding, install, scan
from paydar.postgres.replication import (
    Positions,
    clone_standby,
    follow,
    give_password,
    positions,
    require_standbys,
    rewind,
)
from paydar.postgres.roles import reassert
from paydar.postgres.route import Route
from paydar.postgres.server import WAL_KEPT, PgFailed, PgServer, wait
from paydar.server.answers import read_up_to
from paydar.server.component import Foundation
from paydar.workload.contract import InstanceRole, InstanceState

__all__ = ["PgAgent", "RebuildRefused"]

log = logging.getLogger(__name__)
TICK_SECONDS = 0.5
STOP_SECONDS = 20.0
READY_SECONDS = 60.0
CATCH_UP_SECONDS = 3.0
MISNAMED = "?"
"""The upstream of a standby that streams under another name or from an unknown port: it is
followed again (the table's primary, or nobody), whatever the table says."""
GUARD_EVERY = 10
"""Ticks between checks that a primary's roles are as Paydar made them."""
MAX_TABLE_BYTES = 8 * 1024 * 1024


class RebuildRefused(PaydarError):
    """A rebuild that would lose the service's primary, or has nothing to clone from."""


class PgAgent:
    """One (service, region)'s agent; ``tick()`` is one decision and its action."""

    def __init__(self, *, foundation: Foundation, config: AgentConfig, log_path: Path) -> None:
        self.f = foundation
        self.config = config
        self.service = config.service
        self.region = config.region
        self.server = PgServer(data_dir=config.data_dir / "pg", conf_dir=config.data_dir / "conf",
                               port=config.db_port, uid=config.uid, state_dir=config.state_dir,
                               app_role=config.app_role)
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.fenced = False
        self.enacted = 0
        self._guarded = 0
        self.last: Decision | None = None
        self.seen: Positions | None = None
        self.trouble: str | None = None
        self.compromised = self._load_compromised()
        vault = (config.vault_endpoint, config.vault_identity) \
            if config.vault_endpoint and config.vault_identity else None
        self.backups = PgBackups(service=self.service, region=self.region, data_dir=self.server.data_dir,
                                 staging=config.data_dir / "backup-staging", db_port=config.db_port,
                                 password_file=config.replicator_password_file, signer=foundation.signer,
                                 vault=vault, epoch=lambda: self.enacted, compromised=lambda: self.compromised,
                                 uid=config.uid, generation=lambda: generation(config.data_dir))
        self._acting = asyncio.Lock()
        """Held by a tick and by a rebuild: one changes the server and its data at a time."""
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.registry = CollectorRegistry()
        self.role_metric = Enum("paydar_pg_role", "The role this agent's server has", ["service", "region"],
                                states=[r.value for r in InstanceRole], registry=self.registry)
        self.actions = Counter("paydar_pg_actions", "Actions the agent took", ["action"], registry=self.registry)
        self.scans = Counter("paydar_pg_integrity_scans", "Integrity scans, by outcome", ["outcome"],
                             registry=self.registry)
        self.unchecked = Gauge("paydar_pg_integrity_unchecked_relations", "Relations the last integrity scan "
                               "could not check (locked, timed out): not proven sound", registry=self.registry)
        outcomes = Counter("paydar_pg_route_connections", "Connections offered to a route, by outcome",
                           ["route", "outcome"], registry=self.registry)
        self.routes = (Route(name="primary", port=config.route_port, target=self._primary_port,
                             max_connections=config.max_route_connections, outcomes=outcomes),
                       Route(name="read", port=config.read_port, target=lambda: config.db_port,
                             max_connections=config.max_route_connections, outcomes=outcomes))

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        await self._catch_up()
        for route in self.routes:
            await route.start()
        self._tasks = [asyncio.create_task(self._run(), name="pg-agent"),
                       asyncio.create_task(self._scan_forever(), name="pg-integrity"),
                       asyncio.create_task(self.backups.archive_forever(), name="pg-archive"),
                       asyncio.create_task(self._back_up_forever(), name="pg-backup")]

    async def _catch_up(self) -> None:
        """Before acting on the table kept on disk, adopt the newest certified table a peer holds:
        a primary restarted after it was deposed must not start as the primary it was."""
        async def fetch(session: aiohttp.ClientSession, url: str) -> bytes | None:
            try:
                async with session.get(url + "/v1/routing-table") as response:
                    return await read_up_to(response, MAX_TABLE_BYTES) if response.status == 200 else None
            except (TimeoutError, aiohttp.ClientError, OSError):
                return None

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=CATCH_UP_SECONDS)) as session:
            answers = await asyncio.gather(*(fetch(session, url) for url in self.config.peers.values()))
        for peer, raw in zip(self.config.peers, answers, strict=True):
            if raw is None:
                continue
            try:
                self.f.adopt(TableGuard.parse(raw), source=f"peer {peer}", on_refused=lambda _reason: None)
            except TableRejected:
                continue  # not newer, or not certified: the table held stands

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for route in self.routes:
            await route.stop()
        await asyncio.to_thread(self.stop_server)

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
                self.trouble = None
            except (PaydarError, psycopg.Error, OSError) as exc:
                self.trouble = str(exc)[:500]
                log.warning("agent tick failed service=%s region=%s: %s", self.service, self.region, exc)
            except Exception as exc:  # a surprise (a server's odd answer) must not stop the agent
                self.trouble = f"{type(exc).__name__}: {str(exc)[:400]}"
                log.exception("agent tick failed unexpectedly service=%s region=%s", self.service, self.region)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), TICK_SECONDS)

    # -- the table -----------------------------------------------------------------------

    @property
    def route(self) -> ServiceRoute:
        assert self.f.guard.current is not None
        return self.f.guard.current.table.route(self.service)

    @property
    def table(self) -> SignedTable:
        assert self.f.guard.current is not None
        return self.f.guard.current

    async def offer_table(self, signed: SignedTable, *, source: str) -> frozenset[str]:
        """Adopt ``signed`` only with the controllers' threshold; raise ``TableRejected`` otherwise."""
        signers = self.f.adopt(signed, source=source, on_refused=lambda _reason: None)
        for route in self.routes:
            route.retarget()
        self._wake.set()
        return signers

    def _primary_port(self) -> int | None:
        route = self.route
        return self.config.db_ports.get(route.primary) if route.writable and route.primary else None

    # -- one cycle -----------------------------------------------------------------------

    def _running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _read(self) -> Positions | None:
        if not self._running():
            return None
        try:
            seen = positions(self.server)
        except psycopg.Error:
            return None
        before = self._high_water()
        reported, mark = held(seen, before)
        if mark != before:
            self._keep_high_water(mark)
        return reported

    def _keep_high_water(self, mark: tuple[int, int]) -> None:
        """Replace the mark file (atomically; not fsynced: a mark lost in a crash only falls back to
        what the server replayed, and an fsync every tick under load would slow its commits)."""
        staged = self._mark_path.with_suffix(".new")
        try:
            staged.write_text(json.dumps({"timeline": mark[0], "flushed": mark[1]}))
            os.replace(staged, self._mark_path)
        except OSError as exc:  # the mark is a floor for what it reports; a full disk must not stop the agent
            log.warning("high-water mark not kept service=%s region=%s: %s", self.service, self.region, exc)

    @property
    def _mark_path(self) -> Path:
        # Root's, beside the server's data (never in it): the server's uid cannot lower it.
        return self.config.data_dir / "standby-high-water.json"

    def _high_water(self) -> tuple[int, int]:
        try:
            mark = json.loads(self._mark_path.read_text())
            return int(mark["timeline"]), int(mark["flushed"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0, 0

    def _forget_high_water(self) -> None:
        """After a rewind or a fresh clone what the server held before is no measure of what it holds."""
        self._mark_path.unlink(missing_ok=True)

    # -- backups -------------------------------------------------------------------------

    async def _back_up_forever(self) -> None:
        """A base backup every ``storage.backup_interval``, the first at a random point of the first."""
        interval = self.f.topology.storage.backup_interval
        delay = random.uniform(0.1, 1.0) * interval
        while True:
            await asyncio.sleep(delay)
            delay = interval
            if self.backups.enabled and self.ready:
                try:
                    await self.backups.base_backup()
                except BackupUnavailable as exc:
                    log.warning("scheduled base backup skipped service=%s region=%s: %s", self.service,
                                self.region, exc)
                except Exception:  # a surprise (a full disk) must not end the schedule
                    log.exception("scheduled base backup failed service=%s region=%s", self.service, self.region)

    # -- integrity -----------------------------------------------------------------------

    async def _scan_forever(self) -> None:
        interval = self.f.topology.storage.database_scan_interval
        while True:
            await asyncio.sleep(interval)
            if self.compromised is None and self.seen is not None and self._running():
                try:
                    await self.scan()
                except (psycopg.Error, OSError) as exc:  # the server went away meanwhile: the next round
                    log.info("integrity scan not finished service=%s region=%s: %s", self.service, self.region, exc)
                except Exception:  # a surprise must not end the scans for the agent's life
                    log.exception("integrity scan failed unexpectedly service=%s region=%s", self.service,
                                  self.region)

    async def scan(self) -> list[Finding]:
        """One integrity scan of the running server; what it finds marks the data compromised
        (unless the data was replaced meanwhile: a rebuild's clone is not what was scanned)."""
        scanned = generation(self.config.data_dir)
        result = await asyncio.to_thread(scan, self.server)
        if generation(self.config.data_dir) != scanned:
            return []
        findings = result.findings
        self.scans.labels(outcome="found" if findings else "unchecked" if result.unchecked else "clean").inc()
        self.unchecked.set(len(result.unchecked))
        if result.unchecked:
            log.warning("integrity scan left relations unchecked service=%s region=%s count=%d first=%s",
                        self.service, self.region, len(result.unchecked), "; ".join(result.unchecked[:3]))
        if findings:
            self._mark_compromised("; ".join(str(f) for f in findings[:3]))
        return findings

    @property
    def _compromised_path(self) -> Path:
        # Root's, beside the server's data: a restarted agent must not rewind damaged data back in.
        return self.config.data_dir / "compromised.json"

    def _load_compromised(self) -> str | None:
        try:
            return str(json.loads(self._compromised_path.read_text())["reason"])[:1000]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _mark_compromised(self, reason: str) -> None:
        log.error("data compromised service=%s region=%s: %s; the server is stopped until it is rebuilt",
                  self.service, self.region, reason)
        self.compromised = reason[:1000]
        write_json_atomic(self._compromised_path, {"reason": self.compromised, "at": time.time()})
        self._wake.set()

    def _forget_compromised(self) -> None:
        self.compromised = None
        self._compromised_path.unlink(missing_ok=True)

    def _upstream(self, seen: Positions | None) -> str | None:
        """The region its standby streams from, under its own region's name; None otherwise (a clone's
        or rewind's name, which the quorum does not count, is then replaced by ``follow``)."""
        if seen is None or seen.upstream_port is None:
            return None
        if seen.upstream_name != self.region:
            return MISNAMED  # streams, but not as its region: never what the table asks
        return next((r for r, port in self.config.db_ports.items() if port == seen.upstream_port), MISNAMED)

    def _disk(self) -> Disk:
        return Disk(initialised=self.server.initialised,
                    former_primary=self.server.initialised and not self.server.standby_signal.exists())

    async def tick(self) -> Decision:
        """Read the server, decide, act; returns the decision."""
        async with self._acting:
            return await self._tick()

    async def _tick(self) -> Decision:
        route = self.route
        seen = await asyncio.to_thread(self._read)
        self.seen = seen
        # A running server whose data has no standby.signal is a primary (or being promoted), even
        # when it has not answered yet: one that falls silent after the table deposes it is fenced.
        was_primary = self._running() and self.server.initialised and not self.server.standby_signal.exists()
        decision = next_action(route, self.region, seen, fenced=self.fenced, running=self._running(),
                               disk=self._disk(), upstream=self._upstream(seen), was_primary=was_primary,
                               compromised=self.compromised)
        self.last = decision
        if decision.action is Action.NOTHING:
            # A standby told to stream from nobody counts as in the fenced epoch only once its WAL
            # receiver has stopped: until then what it reports may still grow.
            if seen is not None and not (seen.in_recovery and seen.receiving and not route.writable):
                self.enacted = route.epoch
            if seen is not None and not seen.in_recovery:
                await asyncio.to_thread(self._guard_primary, seen)
            return decision
        log.info("agent acts service=%s region=%s action=%s reason=%s", self.service, self.region,
                 decision.action, decision.reason)
        self.actions.labels(action=decision.action.value).inc()
        await self._act(decision.action, route)
        return decision

    async def _act(self, action: Action, route: ServiceRoute) -> None:
        if action is Action.START:
            await self._start(route)
        elif action is Action.PROMOTE:
            await asyncio.to_thread(self._promote)
        elif action is Action.FENCE:
            self.fenced = True  # first: whatever happens next, it is never started as this primary again
            await asyncio.to_thread(self.stop_server)
        elif action is Action.FOLLOW:
            leader = route.primary if route.writable and route.primary != self.region else None
            port = self.config.db_ports[leader] if leader else None
            await asyncio.to_thread(follow, self.server, port, self.region)
        elif action is Action.REJOIN:
            await self._rejoin(route)

    def _others(self) -> list[str]:
        return [r for r in self.config.db_ports if r != self.region]

    def _quorum(self) -> int:
        return self.f.topology.service(self.service).ack_replicas

    def _promote(self) -> None:
        # The quorum first (a standby keeps the setting): from its first commit as primary it
        # acknowledges only what ``k`` standbys hold.
        follow(self.server, None, self.region)
        require_standbys(self.server, self._quorum(), self._others())
        with self.server.connect() as connection:
            connection.execute("SELECT pg_promote(wait => true)")

    async def _start(self, route: ServiceRoute) -> None:
        fresh = not self.server.initialised
        primary = route.writable and route.primary == self.region
        if fresh:
            await asyncio.to_thread(self._prepare, route, primary)
        elif not primary:
            # Its data may come from elsewhere (a restore from the vault): the standby's password,
            # which only this agent holds, is put back each start.
            give_password(self.server, self.region, read_secret(self.config.replicator_password_file))
        self._spawn()

        def settled() -> bool:
            # Never blocks the agent past what matters: the server up, gone, or asked for elsewhere.
            return self.server.ready() or not self._running() or self.route != route

        await asyncio.to_thread(wait, settled, READY_SECONDS,
                                f"the {self.service} server in {self.region} accepting connections")
        if not self._running():
            code = self.process.returncode if self.process else None
            raise PgFailed(f"the {self.service} server in {self.region} exited as it started (code {code}); "
                           f"its log is {self.log_path}")
        if fresh and primary and self.route == route:
            await asyncio.to_thread(self._first_primary)

    def _prepare(self, route: ServiceRoute, primary: bool) -> None:
        generation(self.config.data_dir, new=True)  # a new life of the data: its WAL is kept apart
        if primary:
            self.server.init()
            return
        assert route.primary is not None
        self._forget_high_water()
        if self.server.data_dir.exists() and any(self.server.data_dir.iterdir()):
            raise PgFailed(f"{self.server.data_dir} holds files but no initialised server: it is left as it is; "
                           "move it aside to let the standby be cloned")
        try:
            clone_standby(self.server, primary_port=self.config.db_ports[route.primary],
                          password=read_secret(self.config.replicator_password_file), region=self.region)
        except PgFailed:
            # What this clone wrote, half-way, holds nothing worth keeping; the next tick clones afresh.
            shutil.rmtree(self.server.data_dir, ignore_errors=True)
            raise

    def _first_primary(self) -> None:
        require_standbys(self.server, self._quorum(), self._others())
        with self.server.connect() as connection:
            # In the server's own settings, which its clones copy: pg_rewind's recovery run reads them.
            connection.execute(sql.SQL("ALTER SYSTEM SET wal_keep_size = {}").format(sql.Literal(WAL_KEPT)))
            # Set-up, acknowledged to no one: it need not wait for standbys that cannot exist yet.
            connection.execute("SET synchronous_commit = local")
            reassert(connection, replicators=self.config.replicator_verifiers, app_role=self.config.app_role,
                     app_verifier=self.config.app_verifier)
        self._install_checks()

    async def _rejoin(self, route: ServiceRoute) -> None:
        assert route.primary is not None
        await asyncio.to_thread(self.stop_server)
        self._forget_high_water()
        self._clear_stale_lock()  # pg_rewind's recovery run starts the server too
        try:
            await asyncio.to_thread(rewind, self.server, source_port=self.config.db_ports[route.primary],
                                    password=read_secret(self.config.replicator_password_file), region=self.region)
            log.info("rewound service=%s region=%s onto %s's timeline", self.service, self.region, route.primary)
        except PgFailed as exc:
            # It holds nothing acknowledged that the new primary lacks (the promotion proved it), so
            # it is cloned afresh.
            aside = self._set_aside()
            log.error("rewind failed service=%s region=%s; old data kept at %s, cloning afresh from %s: %s",
                      self.service, self.region, aside, route.primary, exc)
        self.fenced = False
        self._wake.set()

    def _set_aside(self) -> Path:
        """Move the stopped server's data out of the way (kept, never deleted, for whoever
        investigates): the next tick clones afresh from the primary."""
        aside = self.server.data_dir.with_name(f"{self.server.data_dir.name}.rejected-{time.time_ns()}")
        self.server.data_dir.rename(aside)
        self._forget_high_water()
        return aside

    async def rebuild(self) -> str:
        """The operator's ``paydar rebuild``: set this instance's data aside and clone it afresh
        from the table's primary (the way back for compromised data, or one that will not rejoin).
        Refused for the table's writable primary and while there is none to clone from."""
        async with self._acting:
            return await self._rebuild()

    async def _rebuild(self) -> str:
        route = self.route
        if route.writable and route.primary == self.region:
            raise RebuildRefused(f"{self.region} is the primary of {self.service} in epoch {route.epoch}: fail over "
                                 "first (paydar failover promote), then rebuild it as a standby")
        if not route.writable or route.primary is None:
            raise RebuildRefused(f"{self.service} has no writable primary in epoch {route.epoch} to clone from: "
                                 "promote one first")
        await asyncio.to_thread(self.stop_server)
        aside = self._set_aside() if self.server.data_dir.exists() else None
        self._forget_compromised()
        self.fenced = False
        self._wake.set()
        log.warning("rebuild service=%s region=%s: old data kept at %s, cloning afresh from %s", self.service,
                    self.region, aside, route.primary)
        return f"cloning afresh from {route.primary}" + (f"; old data kept at {aside}" if aside else "")

    def _spawn(self) -> None:
        # From the event loop's own thread: the server dies with the thread that started it.
        if self._running():
            raise PgFailed(f"the {self.service} server in {self.region} is running (pid "
                           f"{self.process.pid if self.process else '?'}): never a second one")
        self._clear_stale_lock()
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(self.server.command(), stdout=out, stderr=subprocess.STDOUT)

    def _clear_stale_lock(self) -> None:
        reason = self.server.clear_stale_lock()
        if reason is not None:
            log.warning("stale postmaster.pid removed service=%s region=%s: %s", self.service, self.region, reason)

    def _guard_primary(self, seen: Positions) -> None:
        """On a primary, every tick: end impostor standbys; every ``GUARD_EVERY`` ticks, put back
        the roles as Paydar made them (created if a first start failed half-way)."""
        self._end_impostors(seen)
        self._guarded = (self._guarded + 1) % GUARD_EVERY
        if self._guarded != 1:
            return
        with self.server.connect() as connection:
            # Repairs, acknowledged to no one: they need not wait for a standby that may be down.
            connection.execute("SET synchronous_commit = local")
            repaired = reassert(connection, replicators=self.config.replicator_verifiers,
                                app_role=self.config.app_role, app_verifier=self.config.app_verifier)
        if repaired:
            log.warning("put back service=%s region=%s: %s", self.service, self.region, "; ".join(repaired))
        if made := self._install_checks():
            log.warning("put back service=%s region=%s: %s", self.service, self.region, "; ".join(made))

    def _install_checks(self) -> list[str]:
        done = []
        for database in DATABASES:
            with self.server.connect(dbname=database) as connection:
                connection.execute("SET synchronous_commit = local")
                try:
                    changed = install(connection)
                except psycopg.errors.LockNotAvailable:
                    log.warning("integrity checks' schema not made in database %s: a relation is held locked; "
                                "tried again later", database)
                    continue
                if changed:
                    done.append(f"made the integrity checks' schema in database {database}")
        return done

    def _end_impostors(self, seen: Positions) -> None:
        """End every replication connection :func:`paydar.postgres.decide.impostors` names."""
        for sender in impostors(seen.walsenders, list(self.config.db_ports)):
            log.warning("ending replication connection pid=%d role=%s name=%s: not that region's own",
                        sender.pid, sender.role, sender.name[:64])
            with self.server.connect() as connection:
                connection.execute("SELECT pg_terminate_backend(%s)", (sender.pid,))

    def stop_server(self) -> None:
        """Stop the server (fast shutdown), by PID, killing it after a bound."""
        process, self.process = self.process, None
        if process is not None:
            terminate(process, STOP_SECONDS, signal.SIGINT)  # SIGINT: PostgreSQL's fast shutdown

    # -- what it reports -----------------------------------------------------------------

    def state(self) -> InstanceState:
        """``GET /state``: the enacted epoch, the server's role and positions."""
        state = instance_state(component=self.config.component, service=self.service, region=self.region,
                               route=self.route, epoch=self.enacted, table_version=self.table.table.version,
                               positions=self.seen, ack_replicas=self._quorum(), fenced=self.fenced,
                               compromised=self.compromised)
        self.role_metric.labels(service=self.service, region=self.region).state(state.role.value)
        return state

    @property
    def ready(self) -> bool:
        """The server runs and is what the table in force asks."""
        return (self.seen is not None and self.last is not None and self.last.action is Action.NOTHING
                and self.enacted == self.route.epoch)
