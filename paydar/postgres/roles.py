"""Who may log in to a service's PostgreSQL servers, and with what.

- ``paydar``, the superuser: only root over the server's unix socket (peer authentication
  mapped from ``root``), which is the agent beside the server and nothing else.
- ``replicator_<region>``, one per region, members of ``replicators``: streaming replication
  and the functions ``pg_rewind`` reads with. Each region's agent holds its own password only,
  and the primary knows it from a SCRAM verifier, so no agent can log in as another region.
- the app's role (``app``), owner of the database ``app``: the agency app's instances hold its
  password; agents hold only its verifier.

Every role is created with a SCRAM-SHA-256 verifier (:func:`paydar.workload.database.scram_verifier`),
never with a password: the primary's agent that creates them never learns the passwords, and
roles replicate to every standby with the data.
"""

from __future__ import annotations

from psycopg import Connection, sql

from paydar.workload.database import APP_DATABASE

__all__ = ["IDENT", "REPLICATORS", "REPLICATOR_CONNECTIONS", "SUPERUSER", "create_roles", "hba", "reassert",
           "replicator"]

SUPERUSER = "paydar"
REPLICATOR_CONNECTIONS = 2
"""A region's replication role may hold this many connections: its standby's stream, and a clone's
or rewind's second one. A stolen password opens no more, so it never fills the walsenders."""
REPLICATORS = "replicators"
IDENT = f"agent root {SUPERUSER}\n"
REWIND_FUNCTIONS = ("pg_catalog.pg_ls_dir(text, boolean, boolean)", "pg_catalog.pg_stat_file(text, boolean)",
                    "pg_catalog.pg_read_binary_file(text)",
                    "pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)")
"""What ``pg_rewind`` needs of a source server when it is not a superuser (PostgreSQL's docs)."""


def replicator(region: str) -> str:
    """The replication role of ``region``'s server."""
    return f"replicator_{region}"


def hba(app_role: str) -> str:
    """``pg_hba.conf``: the superuser by socket from root, replicators and the app by SCRAM on
    127.0.0.1; anything else matches no line and is refused."""
    return "\n".join([
        "# Written by Paydar; the server cannot change it (bound read-only).",
        f"local   all          {SUPERUSER}       peer map=agent",
        f"host    replication  +{REPLICATORS}  127.0.0.1/32  scram-sha-256",
        f"host    postgres     +{REPLICATORS}  127.0.0.1/32  scram-sha-256",
        f"host    {APP_DATABASE}          {app_role}           127.0.0.1/32  scram-sha-256", ""])


def create_roles(connection: Connection[tuple[object, ...]], *, replicators: dict[str, str], app_role: str,
                 app_verifier: str) -> None:
    """On a new primary: the replicators group, one role per region (by verifier), the rewind
    grants, and the app's role owning the app's database (what :func:`reassert` finds missing)."""
    reassert(connection, replicators=replicators, app_role=app_role, app_verifier=app_verifier)


def _exists(connection: Connection[tuple[object, ...]], query: str, name: str) -> bool:
    return connection.execute(query, (name,)).fetchone() is not None


def reassert(connection: Connection[tuple[object, ...]], *, replicators: dict[str, str], app_role: str,
             app_verifier: str) -> list[str]:
    """On a primary: create whatever of the roles is missing (a first start that stopped half-way),
    and put back whatever a login changed (the app's role owns its database, and could lock every
    region out of it or make its commits wait for no standby). Returns what it did."""
    done: list[str] = []
    role = "SELECT 1 FROM pg_roles WHERE rolname = %s"
    if not _exists(connection, role, REPLICATORS):
        connection.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(REPLICATORS)))
        for function in REWIND_FUNCTIONS:
            connection.execute(sql.SQL("GRANT EXECUTE ON FUNCTION {} TO {}").format(
                sql.SQL(function), sql.Identifier(REPLICATORS)))
        done.append(f"created role {REPLICATORS}")
    wanted = {replicator(r): (v, REPLICATOR_CONNECTIONS, True) for r, v in replicators.items()} | {
        app_role: (app_verifier, -1, False)}
    rows = connection.execute("SELECT rolname, rolpassword, rolconnlimit FROM pg_authid WHERE rolname = ANY(%s)",
                              (list(wanted),)).fetchall()
    seen = {str(name): (password, limit) for name, password, limit in rows}
    for name, (verifier, limit, replicates) in wanted.items():
        if name not in seen:
            extra = sql.SQL(" REPLICATION IN ROLE {}").format(sql.Identifier(REPLICATORS)) \
                if replicates else sql.SQL("")
            connection.execute(sql.SQL("CREATE ROLE {} WITH LOGIN CONNECTION LIMIT {} PASSWORD {}{}").format(
                sql.Identifier(name), sql.Literal(limit), sql.Literal(verifier), extra))
            done.append(f"created role {name}")
        elif seen[name] != (verifier, limit):
            connection.execute(sql.SQL("ALTER ROLE {} WITH LOGIN CONNECTION LIMIT {} PASSWORD {}").format(
                sql.Identifier(name), sql.Literal(limit), sql.Literal(verifier)))
            done.append(f"put back role {name}")
    if not _exists(connection, "SELECT 1 FROM pg_database WHERE datname = %s", APP_DATABASE):
        connection.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(APP_DATABASE),
                                                                        sql.Identifier(app_role)))
        return [*done, f"created database {APP_DATABASE}"]
    return done + _settings(connection, app_role)


def _settings(connection: Connection[tuple[object, ...]], app_role: str) -> list[str]:
    """Reset every per-role and per-database setting of the app, and its database's limits."""
    names = {"role": sql.Identifier(app_role), "db": sql.Identifier(APP_DATABASE)}
    done = []
    # The settings that reach the app's sessions: its role's (everywhere, or in its database) and
    # its database's. Others (its role in a database it cannot log in to) reach nothing.
    scopes = connection.execute(
        "WITH r AS (SELECT oid FROM pg_roles WHERE rolname = %s), "
        "d AS (SELECT oid FROM pg_database WHERE datname = %s) "
        "SELECT DISTINCT s.setrole <> 0, s.setdatabase <> 0 FROM pg_db_role_setting s "
        "WHERE (s.setrole IN (SELECT oid FROM r) AND (s.setdatabase = 0 OR s.setdatabase IN (SELECT oid FROM d))) "
        "OR (s.setrole = 0 AND s.setdatabase IN (SELECT oid FROM d))", (app_role, APP_DATABASE)).fetchall()
    for by_role, by_database in scopes:
        statement = ("ALTER ROLE {role} IN DATABASE {db} RESET ALL" if by_role and by_database else
                     "ALTER ROLE {role} RESET ALL" if by_role else "ALTER DATABASE {db} RESET ALL")
        connection.execute(sql.SQL(statement).format(**names))
        done.append(statement.format(role=app_role, db=APP_DATABASE))
    limits = connection.execute("SELECT datconnlimit <> -1 OR NOT datallowconn FROM pg_database WHERE datname = %s",
                                (APP_DATABASE,)).fetchone()
    if limits and limits[0]:
        connection.execute(sql.SQL("ALTER DATABASE {db} WITH ALLOW_CONNECTIONS true CONNECTION LIMIT -1").format(
            **names))
        done.append(f"put back the connection limits of database {APP_DATABASE}")
    return done
