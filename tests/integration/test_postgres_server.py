"""A real PostgreSQL 18 server, as ``workload: postgres`` runs one per (service, region):
initialised with data checksums, jailed as its own uid (PostgreSQL refuses root; the binaries
live in the venv, possibly under a private home), on 127.0.0.1. The superuser is reachable only
by root over the server's socket; over TCP only roles created by SCRAM verifier log in."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from paydar.infra.local.appjail import APP_UID_BASE
from paydar.infra.local.ports import PortAllocator
from paydar.postgres.roles import create_roles
from paydar.postgres.server import SUPERUSER, PgFailed, PgServer, wait
from paydar.workload.database import APP_DATABASE, scram_verifier
from tests.integration.conftest import STARTED_PIDS

UID = APP_UID_BASE + 900


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[tuple[PgServer, subprocess.Popen[bytes]]]:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    pg = PgServer(data_dir=tmp_path / "data", conf_dir=tmp_path / "conf", port=PortAllocator().take(), uid=UID,
                  state_dir=state)
    pg.init()
    with (tmp_path / "pg.log").open("wb") as log:
        process = subprocess.Popen(pg.command(), stdout=log, stderr=subprocess.STDOUT)
    STARTED_PIDS.add(process.pid)
    try:
        wait(pg.ready, 30, "the server accepting connections")
        yield pg, process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def test_a_jailed_server_runs_as_its_own_uid_with_checksums_and_no_superuser_over_tcp(
        server: tuple[PgServer, subprocess.Popen[bytes]]) -> None:
    pg, process = server
    status = Path(f"/proc/{process.pid}/status").read_text()
    assert f"Uid:\t{UID}\t{UID}\t{UID}\t{UID}" in status, "never root: PostgreSQL refuses it, Paydar never lets it"
    with pg.connect() as connection:
        assert connection.execute("SHOW data_checksums").fetchone() == ("on",)
        assert connection.execute("SELECT current_user, pg_is_in_recovery()").fetchone() == (SUPERUSER, False)
        assert connection.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
        connection.execute("SET synchronous_commit = local")
        create_roles(connection, replicators={"here": scram_verifier("r-secret")}, app_role="app",
                     app_verifier=scram_verifier("app-secret"))
    assert not (pg.data_dir / ".pwfile").exists(), "the throwaway password handed to initdb is gone"
    with pytest.raises(psycopg.OperationalError, match=r"no pg_hba\.conf entry"):
        psycopg.connect(host="127.0.0.1", port=pg.port, user=SUPERUSER, password="anything", dbname="postgres",
                        connect_timeout=5).close()
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(host="127.0.0.1", port=pg.port, user="app", password="guess", dbname=APP_DATABASE,
                        connect_timeout=5).close()
    # The verifier Paydar computed is the one the server checks: the app logs in with its password.
    with psycopg.connect(host="127.0.0.1", port=pg.port, user="app", password="app-secret", dbname=APP_DATABASE,
                         require_auth="scram-sha-256", connect_timeout=5, autocommit=True) as app:
        app.execute("CREATE TABLE parcels (id int PRIMARY KEY, owner text NOT NULL)")
        app.execute("INSERT INTO parcels VALUES (1, 'a'), (2, 'b')")
        assert app.execute("SELECT count(*) FROM parcels").fetchone() == (2,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            app.execute("ALTER SYSTEM SET synchronous_standby_names = ''")
    with pytest.raises(psycopg.OperationalError, match=r"no pg_hba\.conf entry"):
        psycopg.connect(host="127.0.0.1", port=pg.port, user="replicator_here", password="r-secret",
                        dbname=APP_DATABASE, connect_timeout=5).close()
    hba = pg.conf_dir / "pg_hba.conf"
    assert hba.stat().st_uid == 0 and hba.stat().st_mode & 0o777 == 0o644, "the server's uid cannot change who logs in"


def test_initdb_refuses_a_data_directory_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "something").write_text("kept")
    pg = PgServer(data_dir=tmp_path / "data", conf_dir=tmp_path / "conf", port=1, uid=UID, state_dir=tmp_path)
    with pytest.raises(PgFailed, match="is not empty; a server is initialised or cloned only into an empty directory"):
        pg.init()
    assert (tmp_path / "data" / "something").read_text() == "kept"
