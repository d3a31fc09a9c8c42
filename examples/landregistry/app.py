"""A small agency web app on PostgreSQL: the land registry, with transfers as multi-row transactions.

It stands for an agency's own service (``workload: http``) keeping its state in its own
PostgreSQL (``workload: postgres``). It knows nothing of Paydar beyond libpq's environment:
``PGHOST``/``PGPORT`` reach its region's route to the database's current primary, and
``PAYDAR_DB_READ_PORT`` its region's own server (reads there may be stale, and say so).

    GET  /healthz                              -> 200 {"status": "ok"} while the process serves
    POST /canary                               -> 200 {"writable": true} while its route reaches a writable primary
    POST /parcels/<id>   {"owner": "..."}     -> 201 registered (200 if it already was, with that owner)
    GET  /parcels/<id>                         -> 200 {"owner": ..., "transfers": [...], "stale": false};
                                                  404 only when the primary says so (a stale copy that
                                                  lacks it answers 503: retry)
    POST /transfers      {"id": "...", "parcel": "...", "from": "...", "to": "..."}
                                               -> 200 {"committed": true}  only once the commit returned;
                                                  409 when the parcel is not the seller's; 503 when the
                                                  database cannot take writes now (retry)
    GET  /transfers/<id>                       -> 200 the transfer, or 404

A transfer moves the parcel and records the transfer in one transaction, so either both rows
change or neither does. A commit is never cancelled: with synchronous replication a cancelled
commit can return success for a commit that is only local, so the app waits for the answer
(or for the connection to end, which it reports as not committed).

Run: ``python app.py --port 8080 --region somewhere`` with the PG* environment set.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg

MAX_BODY = 4096
NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
SCHEMA = """
CREATE TABLE IF NOT EXISTS parcels (id text PRIMARY KEY, owner text NOT NULL);
CREATE TABLE IF NOT EXISTS transfers (id text PRIMARY KEY, parcel text NOT NULL REFERENCES parcels(id),
    seller text NOT NULL, buyer text NOT NULL, at timestamptz NOT NULL DEFAULT now());
"""
_SCHEMA_READY = threading.Event()
_SCHEMA_LOCK = threading.Lock()


class Unavailable(Exception):
    """The database cannot serve this now."""


CANCELLED_WAIT = "canceling wait for synchronous replication"
"""What PostgreSQL says when a commit's wait for its standbys was cancelled (by anyone holding
this role): the commit then returns success while it is only local, so it is not acknowledged."""


class Connection(psycopg.Connection[Any]):
    """A connection that remembers whether a commit's wait for the standbys was cancelled."""

    local_only = False


def _connect(*, read: bool = False) -> Connection:
    # Keepalives: a route that went silent (a partition) is noticed rather than waited on forever.
    port = os.environ.get("PAYDAR_DB_READ_PORT") if read else None
    try:
        connection = Connection.connect(port=port, connect_timeout=3, keepalives=1, keepalives_idle=5,
                                        keepalives_interval=2, keepalives_count=3)
    except psycopg.Error as exc:
        raise Unavailable(f"database unreachable: {str(exc).strip()[:200]}") from None

    def refuse_local_only(notice: psycopg.errors.Diagnostic) -> None:
        if CANCELLED_WAIT in str(notice.message_primary or ""):
            connection.local_only = True

    connection.add_notice_handler(refuse_local_only)
    return connection


def _acknowledged(connection: Connection) -> None:
    """Raise unless the commit that just returned waited for its standbys."""
    if connection.local_only:
        raise Unavailable("not committed: the wait for the standbys was cancelled, so the commit is only local")


def _schema() -> None:
    if _SCHEMA_READY.is_set():
        return
    with _SCHEMA_LOCK:
        if _SCHEMA_READY.is_set():
            return
        try:
            with _connect() as connection:
                connection.execute("SELECT pg_advisory_xact_lock(7701)")  # instances racing to create it
                connection.execute(SCHEMA)
        except psycopg.errors.ReadOnlySqlTransaction:
            raise Unavailable("the database is read-only now (failing over)") from None
        except psycopg.Error as exc:
            raise Unavailable(f"schema not ready: {str(exc).strip()[:200]}") from None
        _SCHEMA_READY.set()


def transfer(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Move a parcel from seller to buyer and record it, in one transaction."""
    ids = {k: str(body.get(k, "")) for k in ("id", "parcel", "from", "to")}
    if not all(NAME.fullmatch(v) for v in ids.values()):
        return 400, {"error": "id, parcel, from and to are 1-64 letters, digits, '.', '_' or '-'"}
    _schema()
    try:
        with _connect() as connection:
            with connection.transaction():
                done = connection.execute("SELECT parcel, seller, buyer FROM transfers WHERE id = %s",
                                          (ids["id"],)).fetchone()
                if done is not None:  # a retried request: answered as before, applied once
                    # A commit of its own that waits for the standbys proves the first one reached them.
                    connection.execute("SELECT pg_current_xact_id()")
                    repeated = True
                else:
                    repeated = False
                    row = connection.execute("SELECT owner FROM parcels WHERE id = %s FOR UPDATE",
                                             (ids["parcel"],)).fetchone()
                    if row is None or row[0] != ids["from"]:
                        owner = row[0] if row else None
                        return 409, {"error": f"parcel {ids['parcel']} is not {ids['from']}'s", "owner": owner}
                    connection.execute("UPDATE parcels SET owner = %s WHERE id = %s", (ids["to"], ids["parcel"]))
                    connection.execute("INSERT INTO transfers (id, parcel, seller, buyer) VALUES (%s, %s, %s, %s)",
                                       (ids["id"], ids["parcel"], ids["from"], ids["to"]))
            _acknowledged(connection)  # after the commit returned
    except psycopg.errors.ReadOnlySqlTransaction:
        raise Unavailable("the database is read-only now (failing over)") from None
    except psycopg.Error as exc:
        # The commit may or may not have happened; it is never reported as done.
        raise Unavailable(f"not committed: {str(exc).strip()[:200]}") from None
    return 200, {"committed": True, "id": ids["id"], **({"repeated": True} if repeated else {})}


def register(parcel: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    owner = str(body.get("owner", ""))
    if not NAME.fullmatch(parcel) or not NAME.fullmatch(owner):
        return 400, {"error": "parcel and owner are 1-64 letters, digits, '.', '_' or '-'"}
    _schema()
    try:
        with _connect() as connection:
            inserted = connection.execute("INSERT INTO parcels VALUES (%s, %s) ON CONFLICT DO NOTHING RETURNING id",
                                          (parcel, owner)).fetchone()
            if not inserted:  # already registered: a commit of its own proves the first reached the standbys
                connection.execute("SELECT pg_current_xact_id()")
            connection.commit()
            _acknowledged(connection)
            if inserted:
                return 201, {"parcel": parcel, "owner": owner, "committed": True}
            row = connection.execute("SELECT owner FROM parcels WHERE id = %s", (parcel,)).fetchone()
    except psycopg.errors.ReadOnlySqlTransaction:
        raise Unavailable("the database is read-only now (failing over)") from None
    except psycopg.Error as exc:
        raise Unavailable(f"not committed: {str(exc).strip()[:200]}") from None
    return 200, {"parcel": parcel, "owner": row[0] if row else None, "committed": True}


def canary() -> tuple[int, dict[str, Any]]:
    """Its route reaches a writable primary. Not a commit: a commit waits for a standby's fsync
    across regions, which under load outlasts a probe's timeout and would take healthy instances
    out of the route; the drills' ledger proves commits end to end."""
    try:
        with _connect() as connection:
            row = connection.execute("SELECT pg_is_in_recovery()").fetchone()
    except psycopg.Error as exc:
        raise Unavailable(f"the primary route does not answer: {str(exc).strip()[:200]}") from None
    if row is None or row[0]:
        raise Unavailable("the primary route reaches a standby (failing over)")
    return 200, {"writable": True}


def read(query: str, args: tuple[str, ...]) -> tuple[list[tuple[Any, ...]], bool]:
    """Rows from the primary, else from this region's own server, marked stale."""
    for stale in (False, True):
        try:
            with _connect(read=stale) as connection:
                return connection.execute(query, args).fetchall(), stale
        except (Unavailable, psycopg.Error):
            continue
    raise Unavailable("no server of the database answers")


class Handler(BaseHTTPRequestHandler):
    region = "unknown"
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        try:
            if path == "/healthz":  # the process; the canary judges its route to the database
                return self._send(200, {"status": "ok", "region": self.region})
            if m := re.fullmatch(r"/parcels/([A-Za-z0-9._-]{1,64})", path):
                rows, stale = read("SELECT p.owner, t.id, t.seller, t.buyer FROM parcels p LEFT JOIN transfers t "
                                   "ON t.parcel = p.id WHERE p.id = %s ORDER BY t.at", (m.group(1),))
                if not rows:
                    return self._not_found(f"no parcel {m.group(1)}", stale)
                transfers = [{"id": r[1], "from": r[2], "to": r[3]} for r in rows if r[1]]
                return self._send(200, {"parcel": m.group(1), "owner": rows[0][0], "transfers": transfers,
                                        "stale": stale})
            if m := re.fullmatch(r"/transfers/([A-Za-z0-9._-]{1,64})", path):
                rows, stale = read("SELECT parcel, seller, buyer FROM transfers WHERE id = %s", (m.group(1),))
                if not rows:
                    return self._not_found(f"no transfer {m.group(1)}", stale)
                parcel, seller, buyer = rows[0]
                return self._send(200, {"id": m.group(1), "parcel": parcel, "from": seller, "to": buyer,
                                        "stale": stale})
        except (Unavailable, psycopg.Error) as exc:
            return self._send(503, {"error": str(exc)[:300]}, retry=True)
        return self._send(404, {"error": f"no such page {path[:80]!r}"})

    def do_POST(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return self._send(413, {"error": f"a request body is at most {MAX_BODY} bytes"})
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(body, dict):
                raise ValueError
        except ValueError:
            return self._send(400, {"error": "send a JSON object"})
        try:
            if path == "/transfers":
                return self._send(*transfer(body))
            if path == "/canary":
                return self._send(*canary())
            if m := re.fullmatch(r"/parcels/([^/]{1,200})", path):
                return self._send(*register(m.group(1), body))
        except Unavailable as exc:
            return self._send(503, {"error": str(exc)}, retry=True)
        return self._send(404, {"error": "POST /transfers, /parcels/<id> or /canary"})

    def _not_found(self, what: str, stale: bool) -> None:
        # A copy that may be behind cannot say something does not exist: only the primary can.
        if stale:
            return self._send(503, {"error": f"{what} on this region's copy, which may be behind; retry",
                                    "stale": True}, retry=True)
        return self._send(404, {"error": what, "stale": False})

    def _send(self, status: int, body: dict[str, Any], *, retry: bool = False) -> None:
        raw = json.dumps({**body, "region": self.region}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        if retry:
            self.send_header("Retry-After", "1")
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request would drown the log under load


def main() -> None:
    parser = argparse.ArgumentParser(description="The land registry (an agency app on PostgreSQL)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--region", default="unknown")
    args = parser.parse_args()
    Handler.region = args.region
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
