"""The agent beside one PostgreSQL server: it obeys the signed table and nothing else.

Every ``TICK_SECONDS`` it reads its server's own positions and acts on
:func:`paydar.postgres.decide.next_action`: it initialises or clones and starts the server in
the role the table gives it, promotes a standby the table names primary (then requires the
service's acknowledgement quorum of the other regions), and fences a primary the table deposes
by stopping it at once. A table reaches it only through :meth:`PgAgent.offer_table`, which
adopts it only with the controllers' threshold of signatures (the foundation's guard).

Not yet: serving this over HTTP beside the server, supervision by ``paydar up``, replication
through the links, the rejoin of a fenced primary with ``pg_rewind``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psycopg

from paydar.infra.local.processes import terminate
from paydar.model.routing import ServiceRoute, SignedTable
from paydar.postgres.decide import Action, Decision, next_action
from paydar.postgres.replication import Positions, clone_standby, positions, require_standbys, start_replicating
from paydar.postgres.server import PgFailed, PgServer, wait
from paydar.server.component import Foundation

__all__ = ["PgAgent", "Replication"]

log = logging.getLogger(__name__)
TICK_SECONDS = 0.5
STOP_SECONDS = 20.0


@dataclass(frozen=True)
class Replication:
    """How this agent's server reaches the others: each region's server port as reached from
    here, the replication password, and the acknowledgement quorum."""

    ports: dict[str, int]
    password_file: Path
    quorum: int


class PgAgent:
    """One (service, region)'s agent; ``tick()`` is one decision and its action."""

    def __init__(self, *, foundation: Foundation, service: str, region: str, server: PgServer,
                 replication: Replication, log_path: Path) -> None:
        self.f = foundation
        self.service = service
        self.region = region
        self.server = server
        self.replication = replication
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.fenced = False
        self.last: Decision | None = None

    @property
    def route(self) -> ServiceRoute:
        assert self.f.guard.current is not None
        return self.f.guard.current.table.route(self.service)

    def offer_table(self, signed: SignedTable, *, source: str) -> frozenset[str]:
        """Adopt ``signed`` only with the controllers' threshold; raise ``TableRejected`` otherwise."""
        return self.f.adopt(signed, source=source, on_refused=lambda _reason: None)

    def positions(self) -> Positions | None:
        if self.process is None or self.process.poll() is not None:
            return None
        try:
            return positions(self.server)
        except psycopg.Error:
            return None

    async def tick(self) -> Decision:
        """Read the server, decide, act; returns the decision."""
        running = self.process is not None and self.process.poll() is None
        decision = next_action(self.route, self.region, await asyncio.to_thread(self.positions), fenced=self.fenced,
                               running=running)
        self.last = decision
        if decision.action is not Action.NOTHING:
            log.info("agent acts service=%s region=%s action=%s reason=%s", self.service, self.region,
                     decision.action, decision.reason)
            await asyncio.to_thread(self._act, decision.action)
        return decision

    def _others(self) -> list[str]:
        return [r for r in self.replication.ports if r != self.region]

    def _act(self, action: Action) -> None:
        if action is Action.START:
            self._start()
        elif action is Action.PROMOTE:
            with self.server.connect() as connection:
                connection.execute("SELECT pg_promote(wait => true)")
            require_standbys(self.server, self.replication.quorum, self._others())
        elif action is Action.FENCE:
            self.fenced = True  # first: whatever happens next, it is never started as this primary again
            self.stop()

    def _start(self) -> None:
        fresh = not (self.server.data_dir.exists() and any(self.server.data_dir.iterdir()))
        route = self.route
        primary = route.writable and route.primary == self.region
        if fresh and not primary:
            if route.primary is None:
                return  # nothing to clone from while the service is fenced
            clone_standby(self.server, primary_port=self.replication.ports[route.primary],
                          password_file=self.replication.password_file, name=self.region)
        elif fresh:
            self.server.init()
        self._spawn()
        wait(self.server.ready, 30, f"the {self.service} server in {self.region} accepting connections")
        if fresh and primary:
            start_replicating(self.server, self.replication.password_file)
            require_standbys(self.server, self.replication.quorum, self._others())

    def _spawn(self) -> None:
        if self.process is not None and self.process.poll() is None:
            raise PgFailed(f"the {self.service} server in {self.region} is running (pid {self.process.pid}): "
                           "never a second one")
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(self.server.command(), stdout=out, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        """Stop the server (fast shutdown), by PID, killing it after a bound."""
        process, self.process = self.process, None
        if process is not None:
            terminate(process, STOP_SECONDS, signal.SIGINT)  # SIGINT: PostgreSQL's fast shutdown
