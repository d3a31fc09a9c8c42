"""Streaming replication between jailed PostgreSQL servers, with a quorum of synchronous standbys.

A standby is cloned with ``pg_basebackup -R``, run jailed as the standby's own uid, as its
region's replication role (:func:`paydar.postgres.roles.replicator`), its password handed to it
in a ``.pgpass`` inside its own data directory (never on a command line, where every process
could read it), and it names itself by its region (``application_name``). The primary
acknowledges a commit only once ``k`` of its standbys hold it:
``synchronous_standby_names = 'ANY k ("r1", "r2", ...)'``, ``k`` being the service's
acknowledgement quorum (``Service.ack_replicas``). Whom a standby streams from is one setting
(``primary_conninfo``), changed on a reload: to the primary the table names, or to nobody while
the service is fenced, so that nothing a deposed primary sends is received.

Positions are read as the workload contract reports them: the timeline, and the receive, flush
and replay LSNs (a primary reports its current write LSN for all three), plus what the
primary's walsenders say of each standby.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from paydar.postgres.roles import replicator
from paydar.postgres.server import JAIL_BINARIES, JAIL_DATA, PgServer, hand_over, take_data_dir

__all__ = [
    "COPY_NAMES",
    "Positions",
    "Walsender",
    "clone_standby",
    "conninfo",
    "copy_name",
    "follow", "give_password",
    "lsn",
    "positions",
    "quorum_clause",
    "require_standbys",
    "rewind",
]

COPY_NAMES = ("clone", "rewind", "backup")
"""A clone's, a rewind's or a base backup's connections are named ``<region>_clone``/``_rewind``/
``_backup`` (a region's name has no underscore, so no region is ever called that): the quorum
never counts them."""
REWIND_TIMEOUT = 300.0
CLONE_TIMEOUT = 3600.0
"""A clone copies the whole database: bounded, but by an hour, not by a tool's start-up time."""


@dataclass(frozen=True)
class Walsender:
    """One replication connection to a primary, as ``pg_stat_replication`` shows it."""

    pid: int
    role: str
    name: str
    flushed: int


@dataclass(frozen=True)
class Positions:
    """Where a server is, in its own words: in recovery (a standby) or not, timeline, LSNs as
    integers, the port it streams from (a standby), and its walsenders (a primary)."""

    in_recovery: bool
    timeline: int
    received: int
    flushed: int
    replayed: int
    upstream_port: int | None = None
    upstream_name: str | None = None
    """The name it streams under (``application_name``), which the primary's quorum counts."""
    walsenders: tuple[Walsender, ...] = field(default=())
    receiving: bool = False
    """A standby's WAL receiver is running (it may still receive from whoever it streamed from)."""


def lsn(text: str | None) -> int:
    """An LSN such as ``0/3000148`` as an integer (0 for none)."""
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


def copy_name(region: str, kind: str) -> str:
    """The replication name of ``region``'s clone or rewind."""
    return f"{region}_{kind}"


def conninfo(port: int, region: str, *, name: str | None = None, passfile: str | None = f"{JAIL_DATA}/.pgpass") -> str:
    """How ``region``'s standby reaches a primary at 127.0.0.1:``port`` (its password in its .pgpass,
    or, with ``passfile`` None, in the environment), naming itself ``name`` (by default the
    region: the name the primary's quorum counts)."""
    # require_auth: only SCRAM, which proves the primary knows the password too (never cleartext).
    where = f" passfile={passfile}" if passfile else ""
    return (f"host=127.0.0.1 port={port} user={replicator(region)}{where} "
            f"application_name={name or region} require_auth=scram-sha-256 connect_timeout=5")


def require_standbys(primary: PgServer, k: int, standbys: Sequence[str]) -> None:
    """Make ``primary`` acknowledge a commit only once ``k`` of ``standbys`` hold it."""
    with primary.connect() as connection:
        connection.execute(sql.SQL("ALTER SYSTEM SET synchronous_standby_names = {}").format(
            sql.Literal(quorum_clause(k, standbys))))
        connection.execute("SELECT pg_reload_conf()")


def give_password(standby: PgServer, region: str, password: str) -> None:
    """Put ``region``'s replication password in the server's ``.pgpass`` (afresh, 0600, its uid's)."""
    path = standby.data_dir / ".pgpass"
    path.unlink(missing_ok=True)  # a symlink the uid planted is removed, never followed
    hand_over(path, f"127.0.0.1:*:*:{replicator(region)}:{password}\n", standby.uid)


def clone_standby(standby: PgServer, *, primary_port: int, password: str, region: str) -> None:
    """Clone the primary reachable at 127.0.0.1:``primary_port`` into ``standby``'s empty data
    directory, jailed as the standby's uid, ready to start as ``region``'s standby."""
    take_data_dir(standby.data_dir, standby.uid)
    give_password(standby, region, password)
    os.chown(standby.data_dir, standby.uid, standby.uid)
    # Named apart from the quorum: a clone's WAL stream must never acknowledge a commit (the
    # agent names the standby by its region once it runs, with ``follow``).
    source = conninfo(primary_port, region, name=copy_name(region, "clone"))
    standby.run([f"{JAIL_BINARIES}/bin/pg_basebackup", "-d", source, "-D", f"{JAIL_DATA}/db", "-X", "stream", "-R",
                 "--checkpoint=fast"], timeout=CLONE_TIMEOUT)


def rewind(server: PgServer, *, source_port: int, password: str, region: str) -> None:
    """Rewind a stopped former primary onto the timeline of the primary at ``source_port``, and
    make it that primary's standby (``pg_rewind -R``)."""
    give_password(server, region, password)
    source = conninfo(source_port, region, name=copy_name(region, "rewind")) + " dbname=postgres"
    server.run([f"{JAIL_BINARIES}/bin/pg_rewind", "-D", f"{JAIL_DATA}/db", "-R", f"--source-server={source}"],
               timeout=REWIND_TIMEOUT)


def follow(server: PgServer, port: int | None, region: str) -> None:
    """Stream from the primary at ``port``, or from nobody (``None``), from the next reload on."""
    value = conninfo(port, region) if port is not None else ""
    with server.connect() as connection:
        connection.execute(sql.SQL("ALTER SYSTEM SET primary_conninfo = {}").format(sql.Literal(value)))
        connection.execute("SELECT pg_reload_conf()")


_PORT = re.compile(r"(?:^|\s)port=([0-9]{1,5})(?:\s|$)")
_NAME = re.compile(r"(?:^|\s)application_name=([A-Za-z0-9_-]{1,64})(?:\s|$)")


_TIMELINE = (
    # Never the last checkpoint's: a promoted primary's first checkpoint on its new timeline is
    # spread over minutes, and a standby's restartpoint trails what it replays. A primary's is
    # the timeline it writes; a standby's the one it receives, or, while it receives nothing,
    # the newest timeline whose history it holds (the one its recovery follows).
    "CASE WHEN pg_is_in_recovery() THEN COALESCE("
    "(SELECT received_tli FROM pg_stat_wal_receiver WHERE pid IS NOT NULL), "
    "GREATEST((SELECT timeline_id FROM pg_control_checkpoint()), "
    "(SELECT max(('x' || substr(name, 1, 8))::bit(32)::int) FROM pg_ls_waldir() "
    "WHERE name ~ '^[0-9A-F]{8}[.]history$'))) "
    "ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END")


def positions(server: PgServer) -> Positions:
    """The server's recovery state, timeline, LSNs, upstream and walsenders, over its own socket."""
    with server.connect() as connection:
        row = connection.execute(
            f"SELECT pg_is_in_recovery(), {_TIMELINE}, "
            "CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() ELSE pg_current_wal_lsn() END::text, "
            "CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() ELSE pg_current_wal_flush_lsn() END::text, "
            "CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END::text, "
            "current_setting('primary_conninfo'), EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE pid IS NOT NULL)"
        ).fetchone()
        senders = connection.execute(
            "SELECT pid, usename, application_name, flush_lsn::text FROM pg_stat_replication").fetchall()
    if row is None:
        raise psycopg.DataError("the server answered no positions")
    in_recovery, timeline, received, flushed, replayed, upstream, receiving = row
    port = _PORT.search(str(upstream or "")) if in_recovery else None
    name = _NAME.search(str(upstream or "")) if in_recovery else None
    replay = lsn(str(replayed) if replayed else None)
    # A restarted standby reports no receive position until it streams again: what it replayed
    # from its own WAL is then what it holds.
    return Positions(in_recovery=bool(in_recovery), timeline=int(str(timeline or 0)),
                     received=max(lsn(str(received) if received else None), replay if in_recovery else 0),
                     flushed=max(lsn(str(flushed) if flushed else None), replay if in_recovery else 0),
                     replayed=replay, upstream_port=int(port.group(1)) if port else None,
                     upstream_name=name.group(1) if name else None,
                     receiving=bool(receiving),
                     walsenders=tuple(Walsender(pid=int(str(pid)), role=str(role), name=str(name),
                                                flushed=lsn(str(f) if f else None))
                                      for pid, role, name, f in senders))
