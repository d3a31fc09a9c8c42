"""Streaming replication between jailed PostgreSQL servers, with a quorum of synchronous standbys.

The primary holds a ``replicator`` role (REPLICATION, SCRAM, a generated password kept 0600
outside every jail). A standby is cloned with ``pg_basebackup -R``, run jailed as the standby's
own uid, its password handed to it in a ``.pgpass`` inside its own data directory (never on a
command line, where every process could read it), and it names itself by its region
(``application_name``). The primary acknowledges a commit only once ``k`` of its standbys hold
it: ``synchronous_standby_names = 'ANY k ("r1", "r2", ...)'``, ``k`` being the service's
acknowledgement quorum (``Service.ack_replicas``).

Positions are read as the workload contract reports them: the timeline, and the receive, flush
and replay LSNs (a primary reports its current write LSN for all three).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from paydar.model.files import read_secret, write_secret
from paydar.postgres.server import JAIL_BINARIES, JAIL_DATA, PgServer, hand_over, take_data_dir

__all__ = ["REPLICATOR", "Positions", "clone_standby", "positions", "quorum_clause", "require_standbys",
           "start_replicating"]

REPLICATOR = "replicator"


@dataclass(frozen=True)
class Positions:
    """Where a server is, in its own words: in recovery (a standby) or not, timeline, LSNs as integers."""

    in_recovery: bool
    timeline: int
    received: int
    flushed: int
    replayed: int


def _lsn(text: str | None) -> int:
    if not text:
        return 0
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) + int(low, 16)


def quorum_clause(k: int, standbys: Sequence[str]) -> str:
    """``ANY k ("a", "b")``: the primary waits for any ``k`` of these standbys (pure)."""
    if not 0 < k <= len(standbys):
        raise ValueError(f"a quorum of {k} needs between 1 and {len(standbys)} standbys")
    names = ", ".join('"' + name.replace('"', "") + '"' for name in standbys)
    return f"ANY {k} ({names})"


def start_replicating(primary: PgServer, password_file: Path) -> None:
    """Create the replication role on ``primary``, with a generated password saved 0600."""
    password = write_secret(password_file, 24)
    with primary.connect() as connection:
        connection.execute(sql.SQL("CREATE ROLE {} WITH REPLICATION LOGIN PASSWORD {}").format(
            sql.Identifier(REPLICATOR), sql.Literal(password)))


def require_standbys(primary: PgServer, k: int, standbys: Sequence[str]) -> None:
    """Make ``primary`` acknowledge a commit only once ``k`` of ``standbys`` hold it."""
    with primary.connect() as connection:
        connection.execute(sql.SQL("ALTER SYSTEM SET synchronous_standby_names = {}").format(
            sql.Literal(quorum_clause(k, standbys))))
        connection.execute("SELECT pg_reload_conf()")


def clone_standby(standby: PgServer, *, primary_port: int, password_file: Path, name: str) -> None:
    """Clone the primary reachable at 127.0.0.1:``primary_port`` into ``standby``'s empty data
    directory, jailed as the standby's uid, ready to start as a standby named ``name``."""
    take_data_dir(standby.data_dir, standby.uid)
    hand_over(standby.data_dir / ".pgpass",
              f"127.0.0.1:{primary_port}:*:{REPLICATOR}:{read_secret(password_file)}\n", standby.uid)
    os.chown(standby.data_dir, standby.uid, standby.uid)
    # require_auth: only SCRAM, which proves the primary knows the password too (never cleartext).
    conninfo = (f"host=127.0.0.1 port={primary_port} user={REPLICATOR} passfile={JAIL_DATA}/.pgpass "
                f"application_name={name} require_auth=scram-sha-256")
    standby.run([f"{JAIL_BINARIES}/bin/pg_basebackup", "-d", conninfo, "-D", f"{JAIL_DATA}/db", "-X", "stream", "-R",
                 "--checkpoint=fast", "--no-sync"])


def positions(server: PgServer) -> Positions:
    """The server's recovery state, timeline and LSNs, read over its own connection."""
    with server.connect() as connection:
        row = connection.execute(
            "SELECT pg_is_in_recovery(), "
            "(SELECT timeline_id FROM pg_control_checkpoint()), "
            "CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn()::text ELSE pg_current_wal_lsn()::text END, "
            "CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn()::text ELSE pg_current_wal_flush_lsn()::text "
            "END, "
            "CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()::text ELSE pg_current_wal_lsn()::text END"
        ).fetchone()
    if row is None:
        raise psycopg.DataError("the server answered no positions")
    in_recovery, timeline, received, flushed, replayed = (str(v) if v is not None else None for v in row)
    return Positions(in_recovery=in_recovery == "True", timeline=int(timeline or 0), received=_lsn(received),
                     flushed=_lsn(flushed), replayed=_lsn(replayed))
