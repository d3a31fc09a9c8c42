"""Streaming replication between real jailed PostgreSQL servers with a quorum of synchronous
standbys: a commit is acknowledged only once ANY k standbys hold it, a standby refuses writes,
and a primary whose standbys are all gone cannot acknowledge anything until one returns."""

from __future__ import annotations

import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from paydar.infra.local.appjail import APP_UID_BASE
from paydar.infra.local.ports import PortAllocator
from paydar.postgres.replication import clone_standby, follow, positions, quorum_clause, require_standbys
from paydar.postgres.roles import create_roles
from paydar.postgres.server import PgServer, wait
from paydar.workload.database import scram_verifier
from tests.integration.conftest import STARTED_PIDS

STANDBYS = ("second", "third")


class Cluster:
    """A primary and two standbys, each its own uid and port, every process stopped by PID."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.state = root / "state"
        self.state.mkdir(mode=0o700)
        ports = PortAllocator()
        self.servers = {name: PgServer(data_dir=root / name, conf_dir=root / f"{name}-conf", port=ports.take(),
                                       uid=APP_UID_BASE + 910 + n, state_dir=self.state)
                        for n, name in enumerate(("first", *STANDBYS))}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> None:
        with (self.root / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(self.servers[name].command(), stdout=log, stderr=subprocess.STDOUT)
        STARTED_PIDS.add(process.pid)
        self.processes[name] = process
        wait(self.servers[name].ready, 30, f"{name} accepting connections")

    def stop(self, name: str) -> None:
        process = self.processes.pop(name)
        process.send_signal(signal.SIGINT)  # fast shutdown
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def close(self) -> None:
        for name in list(self.processes):
            self.stop(name)


@pytest.fixture()
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    made = Cluster(tmp_path)
    try:
        primary = made.servers["first"]
        primary.init()
        made.start("first")
        require_standbys(primary, 1, STANDBYS)
        with primary.connect() as connection:
            connection.execute("SET synchronous_commit = local")
            create_roles(connection, replicators={name: scram_verifier(f"pw-{name}") for name in STANDBYS},
                         app_role="app", app_verifier=scram_verifier("app"))
        for name in STANDBYS:
            clone_standby(made.servers[name], primary_port=primary.port, password=f"pw-{name}", region=name)
            made.start(name)
            follow(made.servers[name], primary.port, name)  # cloned under a copy's name; its own from now on
        yield made
    finally:
        made.close()


def _streaming(cluster: Cluster) -> dict[str, str]:
    with cluster.servers["first"].connect() as connection:
        rows = connection.execute("SELECT application_name, sync_state FROM pg_stat_replication "
                                  "WHERE state = 'streaming'").fetchall()
    return {str(name): str(state) for name, state in rows}


def test_a_quorum_clause_names_its_standbys() -> None:
    assert quorum_clause(1, STANDBYS) == 'ANY 1 ("second", "third")'
    with pytest.raises(ValueError, match="a quorum of 3 needs between 1 and 2 standbys"):
        quorum_clause(3, STANDBYS)


def test_commits_wait_for_a_quorum_of_standbys_and_standbys_refuse_writes(cluster: Cluster) -> None:
    primary = cluster.servers["first"]
    wait(lambda: _streaming(cluster) == dict.fromkeys(STANDBYS, "quorum"), 30, "both standbys streaming in quorum")
    with primary.connect() as connection:
        connection.execute("CREATE TABLE transfers (id int PRIMARY KEY, parcel text NOT NULL)")
        connection.execute("INSERT INTO transfers VALUES (1, 'p-1')")
    committed = positions(primary)
    assert not committed.in_recovery
    seen = {name: positions(cluster.servers[name]) for name in STANDBYS}
    assert all(p.in_recovery and p.timeline == committed.timeline for p in seen.values())
    assert max(p.flushed for p in seen.values()) >= committed.flushed - 1024, "a quorum holds the commit"
    for name in STANDBYS:
        server = cluster.servers[name]
        wait(lambda server=server: _count(server) == 1, 10, f"{name} replaying the commit")  # type: ignore[misc]
        with cluster.servers[name].connect() as connection, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            connection.execute("INSERT INTO transfers VALUES (2, 'p-2')")


def _count(server: PgServer) -> int:
    with server.connect() as connection:
        row = connection.execute("SELECT count(*) FROM transfers").fetchone()
    return int(str(row[0])) if row else -1


def test_a_primary_without_its_standbys_acknowledges_nothing_until_one_returns(cluster: Cluster) -> None:
    primary = cluster.servers["first"]
    wait(lambda: len(_streaming(cluster)) == 2, 30, "both standbys streaming")
    with primary.connect() as connection:
        connection.execute("CREATE TABLE transfers (id int PRIMARY KEY, parcel text NOT NULL)")
    for name in STANDBYS:
        cluster.stop(name)
    acknowledged = threading.Event()

    def commit() -> None:
        # Never cancelled: a cancelled wait for the standbys returns success for a commit that is only local.
        with primary.connect() as connection:
            connection.execute("INSERT INTO transfers VALUES (1, 'p-1')")
            acknowledged.set()

    writer = threading.Thread(target=commit, daemon=True)
    writer.start()

    def waiting() -> bool:
        with primary.connect() as connection:
            row = connection.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'").fetchone()
        return bool(row and row[0] == 1)

    wait(waiting, 10, "the commit waiting for a synchronous standby")
    assert not acknowledged.is_set(), "no standby holds it: not acknowledged"
    cluster.start(STANDBYS[0])
    writer.join(30)
    assert acknowledged.is_set(), "acknowledged once a standby of the quorum holds it"
    assert _count(cluster.servers[STANDBYS[0]]) == 1
