"""PostgreSQL agents obeying signed tables, on real jailed servers: the primary the table names is
initialised, its standby cloned; when a certified table moves the primary, the old one is fenced
at once (it can acknowledge nothing), the standby is promoted holding every commit, and the old
primary rejoins as its standby after pg_rewind, with a commit only it had rewound away. A table
without the controllers' threshold moves nothing."""

from __future__ import annotations

import asyncio
import threading
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
from paydar.postgres.agent import PgAgent, RebuildRefused
from paydar.postgres.config import AgentConfig
from paydar.postgres.decide import Action
from paydar.postgres.integrity import scan
from paydar.postgres.replication import follow, lsn, positions
from paydar.server.component import Foundation
from paydar.workload.database import APP_DATABASE, scram_verifier
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
    db_ports = {r: ports.take() for r in REGIONS}
    passwords = {r: state / f"replicator-{r}.password" for r in REGIONS}
    for region, path in passwords.items():
        path.write_text(f"pw-{region}")
    made: dict[str, PgAgent] = {}
    for n, region in enumerate(REGIONS):
        guard = TableGuard(trust=trust, threshold=TOPOLOGY.control.threshold,
                           known_services=[s.id for s in TOPOLOGY.services])
        guard.accept(first)
        foundation = Foundation(topology=TOPOLOGY, trust=trust, signer=keys.signer(controllers[0]), guard=guard,
                                admin_token="unused", table_store=state / f"table-{region}.json",
                                trust_root_path=state / "trust.json")
        config = AgentConfig(component=f"node.{SERVICE}.{region}", region=region, port=ports.take(),
                             data_dir=tmp_path / region, topology=ROOT / "national.yaml", trust_root=state / "t",
                             key=state / "k", admin_token_file=state / "a", table=state / "t", service=SERVICE,
                             uid=APP_UID_BASE + 920 + n, state_dir=state, db_port=db_ports[region],
                             route_port=ports.take(), read_port=ports.take(), db_ports=db_ports,
                             replicator_password_file=passwords[region],
                             replicator_verifiers={r: scram_verifier(f"pw-{r}") for r in REGIONS},
                             app_verifier=scram_verifier("app"))
        made[region] = PgAgent(foundation=foundation, config=config, log_path=tmp_path / f"{region}.log")
    try:
        yield made, keys
    finally:
        for agent in made.values():
            agent.stop_server()


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
        asyncio.run(new.offer_table(sign_table(moved, [keys.signer(controllers[0])]), source="one controller"))
    assert asyncio.run(new.tick()).action is Action.NOTHING, "an under-signed table moves nothing"
    # The standby hears nothing more (as if the link were cut): a commit on the old primary is then
    # only local, and waits; it is never acknowledged.
    stranded, outcome = _strand_a_commit(old, new)
    certified = sign_table(moved, [keys.signer(c) for c in controllers[:2]])
    for agent in made.values():
        asyncio.run(agent.offer_table(certified, source="test"))
    fenced = asyncio.run(old.tick())
    assert fenced.action is Action.FENCE and f"names {REGIONS[1]} primary" in fenced.reason
    with pytest.raises(psycopg.OperationalError):
        old.server.connect(timeout=2).close()  # a deposed primary acknowledges nothing: it is not there
    stranded.join(10)
    assert outcome == ["refused"], "the stranded commit was never acknowledged"
    assert asyncio.run(new.tick()).action is Action.PROMOTE
    # At once, not after the new timeline's first checkpoint (spread over minutes under load).
    assert positions(new.server).timeline == 2, "the promoted primary reports the timeline it writes"
    with new.server.connect() as connection:
        assert connection.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
        assert connection.execute("SELECT parcel FROM transfers").fetchall() == [("p-1",)], "no commit lost"
    acknowledged = threading.Event()

    def commit() -> None:  # its only standby is the old primary: acknowledged once that one rejoins
        with new.server.connect() as connection:
            connection.execute("INSERT INTO transfers VALUES (2, 'p-2')")
        acknowledged.set()

    writer = threading.Thread(target=commit, daemon=True)
    writer.start()
    rejoin = asyncio.run(old.tick())
    epoch = moved.services[SERVICE].epoch
    assert (rejoin.action, rejoin.reason) == (
        Action.REJOIN, f"a former primary rejoins as {REGIONS[1]}'s standby in epoch {epoch}, rewound with pg_rewind")
    _tick_until(old, Action.NOTHING, "the old primary back as a standby")
    with old.server.connect() as connection:
        assert connection.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
    writer.join(30)
    assert acknowledged.is_set(), "the new primary acknowledges once its rejoined standby holds the commit"
    assert positions(old.server).timeline == 2, "the rewound standby reports the timeline it streams"
    follow(old.server, None, old.region)
    wait_until(lambda: not positions(old.server).receiving, 10, "the rejoined standby's WAL receiver stopped")
    assert positions(old.server).timeline == 2, "a standby receiving nothing reports the timeline it follows"
    wait_until(lambda: _parcels(old) == ["p-1", "p-2"], 20,
               "the rejoined standby holding the new primary's commits, and not the one only it had")


def _strand_a_commit(old: PgAgent, new: PgAgent) -> tuple[threading.Thread, list[str]]:
    """Cut ``new`` off ``old`` and commit on ``old``: the commit waits, only local."""
    follow(new.server, None, new.region)
    outcome: list[str] = []

    def local_only() -> None:
        try:
            with old.server.connect() as connection:
                connection.execute("INSERT INTO transfers VALUES (99, 'p-local')")
            outcome.append("acknowledged")
        except psycopg.Error:
            outcome.append("refused")

    stranded = threading.Thread(target=local_only, daemon=True)
    stranded.start()
    wait_until(lambda: _waiting(old) == 1, 10, "the old primary's commit waiting for a standby")
    return stranded, outcome


def _waiting(agent: PgAgent) -> int:
    with agent.server.connect() as connection:
        row = connection.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'").fetchone()
    return int(str(row[0])) if row else 0


def _parcels(agent: PgAgent) -> list[str]:
    with agent.server.connect() as connection:
        return [str(r[0]) for r in connection.execute("SELECT parcel FROM transfers ORDER BY id").fetchall()]


def test_a_page_changed_on_disk_is_found_and_its_instance_stopped_until_rebuilt(
        agents: tuple[dict[str, PgAgent], KeyStore], tmp_path: Path) -> None:
    made, _ = agents
    primary, standby = (made[r] for r in REGIONS)
    _tick_until(primary, Action.NOTHING, "the primary initialised and started")
    _tick_until(standby, Action.NOTHING, "the standby cloned and started")
    with primary.server.connect(dbname=APP_DATABASE) as connection:
        connection.execute("CREATE TABLE parcels (id int PRIMARY KEY, owner text NOT NULL)")
        connection.execute("INSERT INTO parcels SELECT g, 'owner-' || g FROM generate_series(1, 500) g")
        connection.execute("CHECKPOINT")
        row = connection.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    assert row is not None
    checkpointed = lsn(str(row[0]))
    wait_until(lambda: positions(standby.server).replayed >= checkpointed, 20, "the standby replaying the checkpoint")
    assert asyncio.run(standby.scan()) == [], "clean data: the scan finds nothing"
    with primary.server.connect(dbname=APP_DATABASE) as holder:  # as the app, which owns its database, may
        holder.autocommit = False
        holder.execute("LOCK TABLE parcels IN ACCESS EXCLUSIVE MODE")
        held = scan(primary.server)
        holder.rollback()
    assert held.findings == [] and any(u.startswith("app.parcels (") for u in held.unchecked), \
        "a relation held locked is reported unchecked, never counted sound, and never waited on for long"
    with standby.server.connect(dbname=APP_DATABASE) as connection:
        connection.execute("CHECKPOINT")  # its restartpoint writes the replayed pages to its own disk
        row = connection.execute("SELECT pg_relation_filepath('parcels')").fetchone()
    assert row is not None
    heap = standby.server.data_dir / "db" / str(row[0])
    with heap.open("r+b") as handle:  # behind the server's back, as ransomware or a bad disk would
        handle.seek(4096)
        handle.write(b"\xde\xad\xbe\xef" * 8)
    findings = asyncio.run(standby.scan())
    assert findings and findings[0].relation == "parcels" and "invalid page" in findings[0].problem, findings
    stopped = asyncio.run(standby.tick())
    assert stopped.action is Action.FENCE and "failed the integrity scan" in stopped.reason
    assert standby.state().compromised is not None
    restarted = PgAgent(foundation=standby.f, config=standby.config, log_path=tmp_path / "restarted.log")
    stays = asyncio.run(restarted.tick())
    assert (stays.action, restarted.state().compromised) == (Action.NOTHING, standby.compromised), \
        "a restarted agent remembers: damaged data is never started, nor rewound back in"
    with pytest.raises(RebuildRefused, match="fail over first"):
        asyncio.run(primary.rebuild())
    detail = asyncio.run(standby.rebuild())
    assert detail.startswith(f"cloning afresh from {REGIONS[0]}; old data kept at ")
    _tick_until(standby, Action.NOTHING, "the rebuilt standby cloned and started")
    assert standby.state().compromised is None
    assert asyncio.run(standby.scan()) == [], "the rebuilt standby is clean"
    with standby.server.connect(dbname=APP_DATABASE) as connection:
        assert connection.execute("SELECT count(*) FROM parcels").fetchone() == (500,)
    kept = Path(detail.rsplit(" ", 1)[1])
    assert (kept / "db" / str(row[0])).read_bytes()[4096:4100] == b"\xde\xad\xbe\xef", "the damaged data is kept"
