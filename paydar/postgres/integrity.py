"""The integrity scan: every page of every relation read back from disk and checked.

Data checksums are on (:mod:`paydar.postgres.server`), so a page changed on disk behind the
server's back fails its checksum when it is read. Reads are served from shared buffers when
they can be, so the scan first evicts each relation's buffers (``pg_buffercache_evict_relation``)
and then checks it with amcheck: ``verify_heapam`` for tables, ``bt_index_check`` for B-tree
indexes. That is what ``pg_amcheck`` does; the agent calls the same functions over its own
socket as the superuser, because ``pg_amcheck`` would have to log in as that superuser from
inside the jail, which the access files never allow. A checksum failure the server counted
(``pg_stat_database.checksum_failures``), met by the scan or by any query, marks it too.

The extensions live in a schema of the superuser's (:data:`SCHEMA`), created on the primary and
replicated: the app owns its database, and must not be able to shadow a check with a function
of its own. A schema of that name the superuser does not own is dropped and made again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg import Connection, sql

from paydar.postgres.roles import SUPERUSER
from paydar.postgres.server import PgServer
from paydar.workload.database import APP_DATABASE

__all__ = ["DATABASES", "SCHEMA", "Finding", "Scan", "install", "scan"]

SCHEMA = "paydar_integrity"
EXTENSIONS = ("amcheck", "pg_buffercache")
DATABASES = (APP_DATABASE, "postgres")
"""The databases scanned: the agency's, and the one the superuser keeps."""
STATEMENT_TIMEOUT = "120s"
"""The longest one relation's check may take."""
LOCK_TIMEOUT = "2s"
"""How long a check waits for a relation someone holds locked (the app, which owns its database,
may): the relation is then left unchecked this round, and counted so."""
MAX_FINDINGS = 20

_RELATIONS = (
    # Tables, TOAST tables, materialized views and valid B-tree indexes; never another session's
    # temporary relations, and no unlogged ones on a standby (they are empty there).
    "SELECT c.oid, c.relname, c.relkind = 'i' FROM pg_class c LEFT JOIN pg_am a ON a.oid = c.relam "
    "LEFT JOIN pg_index i ON i.indexrelid = c.oid "
    "WHERE c.relpersistence <> 't' AND (c.relpersistence <> 'u' OR NOT pg_is_in_recovery()) "
    "AND (c.relkind IN ('r', 't', 'm') OR (c.relkind = 'i' AND a.amname = 'btree' AND i.indisvalid)) "
    "ORDER BY c.oid")


@dataclass(frozen=True)
class Finding:
    """One thing the scan found wrong, in the server's own words."""

    database: str
    relation: str
    problem: str

    def __str__(self) -> str:
        return f"{self.database}.{self.relation}: {self.problem}"


def _as_ourselves(connection: Connection[tuple[object, ...]]) -> None:
    """The superuser, whatever the app's database settings say (a ``role`` or ``search_path`` set on
    the database it owns reaches every session there), bounded in how long it waits."""
    connection.execute("SET ROLE NONE")
    connection.execute("SET search_path = pg_catalog")
    connection.execute(sql.SQL("SET statement_timeout = {}").format(sql.Literal(STATEMENT_TIMEOUT)))
    connection.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT)))


def install(connection: Connection[tuple[object, ...]]) -> bool:
    """On a primary, in the database ``connection`` is to: make the superuser's schema with both
    extensions, unless it is there already as it should be. Returns whether it changed anything
    (it waits at most ``LOCK_TIMEOUT`` for a lock: a relation held locked delays it to the next try)."""
    _as_ourselves(connection)
    row = connection.execute(
        "SELECT pg_get_userbyid(n.nspowner), (SELECT count(*) FROM pg_extension e WHERE e.extnamespace = n.oid "
        "AND e.extname = ANY(%s)) FROM pg_namespace n WHERE n.nspname = %s", (list(EXTENSIONS), SCHEMA)).fetchone()
    if row is not None and row == (SUPERUSER, len(EXTENSIONS)):
        return False
    with connection.transaction():  # at once, so no one sees the schema half made
        names = {"schema": sql.Identifier(SCHEMA), "owner": sql.Identifier(SUPERUSER)}
        for extension in EXTENSIONS:  # installed elsewhere (by the app, say), they could not be moved here
            connection.execute(sql.SQL("DROP EXTENSION IF EXISTS {} CASCADE").format(sql.Identifier(extension)))
        connection.execute(sql.SQL("DROP SCHEMA IF EXISTS {schema} CASCADE").format(**names))
        connection.execute(sql.SQL("CREATE SCHEMA {schema} AUTHORIZATION {owner}").format(**names))
        connection.execute(sql.SQL("REVOKE ALL ON SCHEMA {schema} FROM PUBLIC").format(**names))
        for extension in EXTENSIONS:
            connection.execute(sql.SQL("CREATE EXTENSION {} SCHEMA {schema}").format(
                sql.Identifier(extension), **names))
    return True


def _installed(connection: Connection[tuple[object, ...]]) -> bool:
    row = connection.execute(
        "SELECT count(*) FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
        "WHERE n.nspname = %s AND n.nspowner = (SELECT oid FROM pg_roles WHERE rolname = %s) AND e.extname = ANY(%s)",
        (SCHEMA, SUPERUSER, list(EXTENSIONS))).fetchone()
    return row is not None and row[0] == len(EXTENSIONS)


@dataclass
class Scan:
    """What one scan found wrong, and the relations it could not check this time (locked, timed
    out, dropped meanwhile, or the checks not installed yet): those are not proven sound."""

    findings: list[Finding] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)


def scan(server: PgServer, databases: tuple[str, ...] = DATABASES) -> Scan:
    """Check every relation of ``databases`` on ``server`` as read from disk."""
    result = Scan()
    for database in databases:
        try:
            connection = server.connect(dbname=database)
        except psycopg.OperationalError:
            continue  # a database that does not exist yet (a first start half-way) holds nothing
        with connection:
            _scan_database(connection, database, result)
        if len(result.findings) >= MAX_FINDINGS:
            break
    result.findings = result.findings[:MAX_FINDINGS]
    return result


def _scan_database(connection: Connection[tuple[object, ...]], database: str, result: Scan) -> None:
    _as_ourselves(connection)
    findings = result.findings
    if not _installed(connection):
        result.unchecked.append(f"{database}.* (the checks are not installed yet)")
    else:
        schema = sql.Identifier(SCHEMA)
        evict = sql.SQL("SELECT {}.pg_buffercache_evict_relation(%s)").format(schema)
        heap = sql.SQL("SELECT blkno, offnum, msg FROM {}.verify_heapam(%s, on_error_stop => true)").format(schema)
        index = sql.SQL("SELECT {}.bt_index_check(%s)").format(schema)
        for oid, name, is_index in connection.execute(_RELATIONS).fetchall():
            relation = str(name)[:64]
            try:
                connection.execute(evict, (oid,))
                if is_index:
                    connection.execute(index, (oid,))
                else:
                    findings += [Finding(database, relation, f"block {b}, item {o}: {str(m)[:200]}")
                                 for b, o, m in connection.execute(heap, (oid,)).fetchall()]
            except (psycopg.errors.DataCorrupted, psycopg.errors.IndexCorrupted) as exc:
                findings.append(Finding(database, relation, str(exc.diag.message_primary or exc)[:300]))
            except psycopg.Error as exc:  # locked, timed out, dropped meanwhile: not proven sound
                result.unchecked.append(f"{database}.{relation} ({type(exc).__name__})")
            if len(findings) >= MAX_FINDINGS:
                return
    row = connection.execute("SELECT checksum_failures FROM pg_stat_database WHERE datname = current_database()"
                             ).fetchone()
    failures = int(str(row[0])) if row and row[0] is not None else 0
    if failures:
        findings.append(Finding(database, "*", f"{failures} page checksum failure(s) met since its statistics "
                                               "began (pg_stat_database.checksum_failures)"))
