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

__all__ = ["IDENT", "REPLICATORS", "SUPERUSER", "create_roles", "hba", "replicator"]

SUPERUSER = "paydar"
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
    grants, and the app's role owning the app's database."""
    connection.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(REPLICATORS)))
    for function in REWIND_FUNCTIONS:
        connection.execute(sql.SQL("GRANT EXECUTE ON FUNCTION {} TO {}").format(
            sql.SQL(function), sql.Identifier(REPLICATORS)))
    for region, verifier in sorted(replicators.items()):
        connection.execute(sql.SQL("CREATE ROLE {} WITH REPLICATION LOGIN PASSWORD {} IN ROLE {}").format(
            sql.Identifier(replicator(region)), sql.Literal(verifier), sql.Identifier(REPLICATORS)))
    connection.execute(sql.SQL("CREATE ROLE {} WITH LOGIN PASSWORD {}").format(
        sql.Identifier(app_role), sql.Literal(app_verifier)))
    connection.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(APP_DATABASE),
                                                                    sql.Identifier(app_role)))
