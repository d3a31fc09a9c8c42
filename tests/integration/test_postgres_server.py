"""A real PostgreSQL 18 server, as ``workload: postgres`` will run one per (service, region):
initialised with data checksums, jailed as its own uid (PostgreSQL refuses root; the binaries
live in the venv, possibly under a private home), on 127.0.0.1 with SCRAM only."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from paydar.infra.local.appjail import APP_UID_BASE
from paydar.infra.local.ports import PortAllocator
from paydar.postgres.server import SUPERUSER, PgFailed, PgServer, wait
from tests.integration.conftest import STARTED_PIDS

UID = APP_UID_BASE + 900


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[tuple[PgServer, subprocess.Popen[bytes]]]:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    pg = PgServer(data_dir=tmp_path / "data", port=PortAllocator().take(), uid=UID, state_dir=state,
                  password_file=state / "pg.password")
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


def test_a_jailed_server_runs_as_its_own_uid_with_checksums_and_passwords(
        server: tuple[PgServer, subprocess.Popen[bytes]]) -> None:
    pg, process = server
    status = Path(f"/proc/{process.pid}/status").read_text()
    assert f"Uid:\t{UID}\t{UID}\t{UID}\t{UID}" in status, "never root: PostgreSQL refuses it, Paydar never lets it"
    with pg.connect() as connection:
        assert connection.execute("SHOW data_checksums").fetchone() == ("on",)
        assert connection.execute("SELECT current_user, pg_is_in_recovery()").fetchone() == (SUPERUSER, False)
        assert connection.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
        connection.execute("CREATE TABLE parcels (id int PRIMARY KEY, owner text NOT NULL)")
        connection.execute("INSERT INTO parcels VALUES (1, 'a'), (2, 'b')")
        assert connection.execute("SELECT count(*) FROM parcels").fetchone() == (2,)
    assert pg.password_file.stat().st_mode & 0o777 == 0o600
    assert not (pg.data_dir / ".pwfile").exists(), "the password handed to initdb is gone"
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(host="127.0.0.1", port=pg.port, user=SUPERUSER, password="guess", dbname="postgres",
                        connect_timeout=5).close()


def test_initdb_refuses_a_data_directory_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "something").write_text("kept")
    pg = PgServer(data_dir=tmp_path / "data", port=1, uid=UID, state_dir=tmp_path, password_file=tmp_path / "p")
    with pytest.raises(PgFailed, match="is not empty; a server is initialised or cloned only into an empty directory"):
        pg.init()
    assert (tmp_path / "data" / "something").read_text() == "kept"
