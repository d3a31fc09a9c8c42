"""PostgreSQL agents obeying signed tables, on real jailed servers: the primary the table names is
initialised, its standby cloned; when a certified table moves the primary, the old one is fenced
at once (it can acknowledge nothing) and stays down, and the standby is promoted holding every
commit. A table without the controllers' threshold moves nothing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from paydar.infra.local.appjail import APP_UID_BASE
from paydar.infra.local.ports import PortAllocator
from paydar.model.errors import TableRejected
from paydar.model.identity import KeyStore
from paydar.model.ids import controller_id
from paydar.model.routing import RoutingTable, ServiceRoute, TableGuard, initial_table, sign_table
from paydar.model.topology import load_topology
from paydar.postgres.agent import PgAgent, Replication
from paydar.postgres.decide import Action
from paydar.postgres.server import PgServer
from paydar.server.component import Foundation
from tests.helpers import ROOT, SERVICE, wait_until
from tests.integration.conftest import STARTED_PIDS

TOPOLOGY = load_topology(ROOT / "national.yaml")
REGIONS = TOPOLOGY.service(SERVICE).regions[:2]  # the primary's region, and one standby's


@pytest.fixture()
def agents(tmp_path: Path) -> Iterator[tuple[dict[str, PgAgent], KeyStore]]:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    keys = KeyStore(state / "keys")
    controllers = [controller_id(r) for r in TOPOLOGY.region_names]
    trust = keys.build_trust_root(controllers)
    first = sign_table(initial_table(TOPOLOGY, time.time()), [keys.signer(c) for c in controllers[:2]])
    ports = PortAllocator()
    replication = Replication(ports={r: ports.take() for r in REGIONS}, password_file=state / "replicator.password",
                              quorum=1)
    made: dict[str, PgAgent] = {}
    for n, region in enumerate(REGIONS):
        guard = TableGuard(trust=trust, threshold=TOPOLOGY.control.threshold,
                           known_services=[s.id for s in TOPOLOGY.services])
        guard.accept(first)
        foundation = Foundation(topology=TOPOLOGY, trust=trust, signer=keys.signer(controllers[0]), guard=guard,
                                admin_token="unused", table_store=state / f"table-{region}.json",
                                trust_root_path=state / "trust.json")
        server = PgServer(data_dir=tmp_path / region, port=replication.ports[region], uid=APP_UID_BASE + 920 + n,
                          state_dir=state, password_file=state / "pg.password")
        made[region] = PgAgent(foundation=foundation, service=SERVICE, region=region, server=server,
                               replication=replication, log_path=tmp_path / f"{region}.log")
    try:
        yield made, keys
    finally:
        for agent in made.values():
            agent.stop()


def _tick_until(agent: PgAgent, action: Action, what: str) -> None:
    def settled() -> bool:
        done = asyncio.run(agent.tick()).action is action
        if agent.process is not None:
            STARTED_PIDS.add(agent.process.pid)  # the session checks every one is gone at the end
        return done

    wait_until(settled, 60, what, interval=0.2)


def _moved(held: RoutingTable, primary: str) -> RoutingTable:
    route = held.route(SERVICE)
    moved = ServiceRoute(primary=primary, standbys=tuple(r for r in route.regions if r != primary),
                         epoch=route.epoch + 1)
    return held.model_copy(update={"version": held.version + 1, "previous": held.digest(),
                                   "services": {**held.services, SERVICE: moved}, "issued_at": time.time()})


def test_a_signed_table_moves_the_primary_and_fences_the_old_one(
        agents: tuple[dict[str, PgAgent], KeyStore]) -> None:
    made, keys = agents
    old, new = (made[r] for r in REGIONS)
    _tick_until(old, Action.NOTHING, "the primary initialised and started")
    _tick_until(new, Action.NOTHING, "the standby cloned and started")
    with old.server.connect() as connection:
        connection.execute("CREATE TABLE transfers (id int PRIMARY KEY, parcel text NOT NULL)")
        connection.execute("INSERT INTO transfers VALUES (1, 'p-1')")  # acknowledged: the standby holds it
    held = old.f.guard.current
    assert held is not None
    controllers = [controller_id(r) for r in TOPOLOGY.region_names]
    moved = _moved(held.table, REGIONS[1])
    with pytest.raises(TableRejected):
        new.offer_table(sign_table(moved, [keys.signer(controllers[0])]), source="one controller")
    assert asyncio.run(new.tick()).action is Action.NOTHING, "an under-signed table moves nothing"
    certified = sign_table(moved, [keys.signer(c) for c in controllers[:2]])
    for agent in made.values():
        agent.offer_table(certified, source="test")
    fenced = asyncio.run(old.tick())
    assert fenced.action is Action.FENCE and f"names {REGIONS[1]} primary" in fenced.reason
    with pytest.raises(psycopg.OperationalError):
        old.server.connect(timeout=2).close()  # a deposed primary acknowledges nothing: it is not there
    assert asyncio.run(new.tick()).action is Action.PROMOTE
    with new.server.connect() as connection:
        assert connection.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
        assert connection.execute("SELECT parcel FROM transfers").fetchall() == [("p-1",)], "no commit lost"
    stays = asyncio.run(old.tick())
    assert stays.action is Action.NOTHING and stays.reason.startswith("fenced")
    assert old.process is None
