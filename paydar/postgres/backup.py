"""A PostgreSQL server's backups in the vault: base backups, and every WAL file it archives.

**Base backups.** ``pg_basebackup`` (tar format, with PostgreSQL's own backup manifest, which
names every file's SHA-256) runs as root, outside the jail, over a replication connection to
its own server named ``<region>_backup`` (which the quorum never counts), into a directory
the server's uid cannot reach. It is proved with ``pg_verifybackup`` before anything is
uploaded, bundled into one tar, and put in the vault with a Paydar manifest signed by the
agent's key: its ``position`` is the backup's end LSN (where a recovery from it is first
consistent) and its ``chain_head`` the SHA-256 of PostgreSQL's manifest, both read back from
that manifest by the restore's own proof.

**WAL.** Every server, a standby too (``archive_mode = always``: after a failover no region's
copy has a gap), copies each WAL file it completes, as its own uid, into a spool in its data
directory, bounded at :data:`SPOOL_FILES`. The agent reads each one without following a link,
only if it is the uid's own regular file of a WAL file's size, and no more than that size;
uploads it under the data's generation (``paydar.vault.manifest``) with a signed manifest, and
only then removes it from the spool. Anything else in the spool is dropped. A WAL file's
manifest pins its bytes (SHA-256 and version), so PostgreSQL's own record checksums are not the
only proof a restore has.

Uploads go through ``python -m paydar.vault.upload``, as a registry node's do.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import stat
import subprocess
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from paydar.model.buckets import bucket_name
from paydar.model.errors import PaydarError
from paydar.model.files import read_secret, write_text_atomic
from paydar.model.signing import Signer
from paydar.postgres.replication import conninfo, copy_name, lsn
from paydar.postgres.server import BINARIES, SPOOL, SPOOL_FILES
from paydar.vault.manifest import GENERATION, PG_BASE_FORMAT, SignedManifest
from paydar.vault.s3 import VaultError
from paydar.vault.snapshot import Snapshot, sha256_file, upload_backup, upload_wal
from paydar.vault.upload import put_through_process

__all__ = ["BackupUnavailable", "PgBackups", "Proof", "expected_size", "generation", "prove_backup", "wal_range",
           "wal_start"]

log = logging.getLogger(__name__)

WAL_NAME = re.compile(r"[0-9A-F]{24}(?:\.partial)?|[0-9A-F]{24}\.[0-9A-F]{8}\.backup|[0-9A-F]{8}\.history")
"""Used with ``fullmatch`` only (``match`` with ``$`` would let a trailing newline through)."""
SEGMENT_BYTES = 16 * 1024 * 1024
"""initdb's WAL segment size, which the servers keep."""
SMALL_FILE_BYTES = 64 * 1024
"""A timeline's history or a backup's history file: a few lines."""
ROUND_FILES = 16
"""WAL files uploaded per round (every ``ARCHIVE_SECONDS``): what a compromised server, filling its
spool with files named like WAL, can put in its region's vault at most (about 128 MB/s)."""
GENERATION_FILE = "generation"
BACKUP_TIMEOUT = 3600.0
ARCHIVE_SECONDS = 2.0
MAX_MANIFEST_BYTES = 256 * 1024 * 1024
"""PostgreSQL's backup manifest is a line per file; one larger than this is not a server's."""
BACKUP_FILES = frozenset({"base.tar", "backup_manifest"})
"""What ``pg_basebackup -F tar -X fetch`` writes (the WAL it needs is inside base.tar)."""


class BackupUnavailable(PaydarError):
    """No base backup can be taken now; the message says why and what to do."""


def expected_size(name: str) -> tuple[int, int]:
    """The sizes a spooled WAL file of this name may have (min, max): a whole segment is exactly
    one, a partial one at most one, a history file small."""
    if name.endswith((".history", ".backup")):
        return 1, SMALL_FILE_BYTES
    return (1 if name.endswith(".partial") else SEGMENT_BYTES), SEGMENT_BYTES


def generation(data_dir: Path, *, new: bool = False) -> str:
    """The generation of the server's data kept in ``data_dir`` (root's, beside the data): made
    afresh with ``new`` (an initialisation, a clone or a restore), and when there is none."""
    path = data_dir / GENERATION_FILE
    if not new:
        try:
            text = path.read_text().strip()
            if re.fullmatch(GENERATION, text):
                return text
        except OSError:
            pass
    made = secrets.token_hex(6)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_text_atomic(path, made + "\n")
    return made


def wal_start(name: str) -> int:
    """The LSN a WAL file starts at, from its name (16 MiB segments; 0 for a timeline's history)."""
    if name.endswith(".history"):
        return 0
    log_id, segment = int(name[8:16], 16), int(name[16:24], 16)
    return (log_id << 32) + segment * SEGMENT_BYTES


@dataclass(frozen=True)
class Proof:
    """What ``pg_verifybackup`` and PostgreSQL's own manifest say of a base backup."""

    ok: bool
    checked: int
    """The backup's end LSN, from its manifest: where a recovery from it is first consistent, so a
    point in time before it cannot be recovered from it."""
    head_hash: str
    """The SHA-256 of its manifest (which names every file's own)."""
    reason: str = ""
    first_bad_position: int | None = None


def prove_backup(directory: Path, *, timeout: float = BACKUP_TIMEOUT) -> Proof:
    """Verify the base backup in ``directory`` (tar format, or extracted: a data directory with its
    ``backup_manifest``) with ``pg_verifybackup``, and read its end LSN from its manifest.
    In tar format every file is checked against its checksum, but not the WAL inside
    (``pg_waldump`` cannot read a tar): the restore parses it too, once extracted."""
    try:
        if (directory / "backup_manifest").stat().st_size > MAX_MANIFEST_BYTES:
            raise ValueError(f"it is larger than {MAX_MANIFEST_BYTES} bytes")
        raw = (directory / "backup_manifest").read_bytes()
        start, end = wal_range(directory)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return Proof(ok=False, checked=0, head_hash="0" * 64, reason=f"its backup_manifest does not read: {exc}")
    head = hashlib.sha256(raw).hexdigest()
    try:
        wal = ["--no-parse-wal"] if (directory / "base.tar").exists() else []
        done = subprocess.run([str(BINARIES / "bin" / "pg_verifybackup"), "--quiet", *wal, str(directory)],
                              capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return Proof(ok=False, checked=end, head_hash=head, reason=f"pg_verifybackup took over {timeout:.0f}s")
    if done.returncode != 0:
        return Proof(ok=False, checked=end, head_hash=head, first_bad_position=start,
                     reason=f"pg_verifybackup: {(done.stderr or done.stdout).strip()[-600:]}")
    return Proof(ok=True, checked=end, head_hash=head)


def wal_range(directory: Path) -> tuple[int, int]:
    """The first and last LSN of the WAL a base backup needs, from its ``backup_manifest``."""
    ranges = json.loads((directory / "backup_manifest").read_bytes())["WAL-Ranges"]
    return min(lsn(str(r["Start-LSN"])) for r in ranges), max(lsn(str(r["End-LSN"])) for r in ranges)


class PgBackups:
    """One agent's backups. ``epoch`` and ``compromised`` read the agent's state when a backup
    starts; ``data_dir`` is the server's (the spool is in it), ``staging`` root's own."""

    def __init__(self, *, service: str, region: str, data_dir: Path, staging: Path, db_port: int,
                 password_file: Path, signer: Signer, vault: tuple[str, Path] | None, epoch: Callable[[], int],
                 compromised: Callable[[], str | None], uid: int, generation: Callable[[], str]) -> None:
        self.service, self.region = service, region
        self.data_dir, self.staging, self.db_port, self.uid = data_dir, staging, db_port, uid
        self.password_file, self.signer, self.vault = password_file, signer, vault
        self._epoch, self._compromised, self._generation = epoch, compromised, generation
        self._lock = asyncio.Lock()
        self.last: SignedManifest | None = None
        self.archived = 0

    @property
    def enabled(self) -> bool:
        return self.vault is not None

    def _put(self) -> Callable[[str, Path, str], str]:
        assert self.vault is not None
        return put_through_process(*self.vault, bucket_name(self.service))

    # -- base backups ------------------------------------------------------------------

    async def base_backup(self) -> SignedManifest:
        """Take, prove and upload a base backup now; the signed manifest once the vault holds it."""
        if not self.enabled:
            raise BackupUnavailable("this agent has no vault identity in its config; `paydar up` gives each "
                                    "region one")
        if compromised := self._compromised():
            raise BackupUnavailable(f"its data is compromised ({compromised}); rebuild it instead of backing up "
                                    "data that does not verify")
        async with self._lock:
            signed = await asyncio.to_thread(self._base_backup)
        self.last = signed
        return signed

    def _base_backup(self) -> SignedManifest:
        work = self.staging / f"base-{time.time_ns()}"
        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir(mode=0o700, parents=True)
        source = conninfo(self.db_port, self.region, name=copy_name(self.region, "backup"), passfile=None)
        environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PGPASSWORD": read_secret(self.password_file)}
        try:
            try:
                done = subprocess.run(
                    [str(BINARIES / "bin" / "pg_basebackup"), "-d", source, "-D", str(work), "-F", "tar",
                     "-X", "fetch", "--checkpoint=fast", "--manifest-checksums=SHA256"],
                    capture_output=True, text=True, timeout=BACKUP_TIMEOUT, check=False, env=environment)
            except subprocess.TimeoutExpired:
                raise BackupUnavailable(f"pg_basebackup did not finish within {BACKUP_TIMEOUT:.0f}s") from None
            if done.returncode != 0:
                raise BackupUnavailable(f"pg_basebackup failed: {(done.stderr or done.stdout).strip()[-600:]}")
            if {p.name for p in work.iterdir()} != BACKUP_FILES:
                raise BackupUnavailable(f"pg_basebackup wrote {sorted(p.name for p in work.iterdir())}, expected "
                                        f"{sorted(BACKUP_FILES)}")
            proof = prove_backup(work)
            if not proof.ok:
                raise BackupUnavailable(f"the base backup does not verify, so it is not uploaded: {proof.reason}")
            bundle = self.staging / "base-backup.tar"
            with tarfile.open(bundle, "w") as archive:
                for name in sorted(BACKUP_FILES):
                    archive.add(work / name, arcname=name)
            snapshot = Snapshot(path=bundle, position=proof.checked, chain_head=proof.head_hash,
                                size=bundle.stat().st_size, sha256=sha256_file(bundle),
                                content_type="application/x-tar", format=PG_BASE_FORMAT,
                                generation=self._generation())
            signed = upload_backup(self._put(), snapshot, bucket=bucket_name(self.service), service=self.service,
                                   region=self.region, epoch=self._epoch(), signer=self.signer,
                                   created_ms=int(time.time() * 1000))
            log.info("base backup stored service=%s region=%s end_lsn=%d size=%d", self.service, self.region,
                     snapshot.position, snapshot.size)
            return signed
        except VaultError as exc:
            raise BackupUnavailable(f"base backup not stored: {exc}") from None
        except (OSError, tarfile.TarError) as exc:  # the disk, mostly: said, never a 500
            raise BackupUnavailable(f"base backup not taken: {exc}") from None
        finally:
            shutil.rmtree(self.staging, ignore_errors=True)

    # -- WAL -----------------------------------------------------------------------------

    async def archive_forever(self) -> None:
        """Upload what the server spooled, every ``ARCHIVE_SECONDS``."""
        while True:
            await asyncio.sleep(ARCHIVE_SECONDS)
            if not self.enabled:
                continue
            try:
                await asyncio.to_thread(self.archive_spooled)
            except (VaultError, OSError) as exc:  # the vault or the disk: the spool waits, bounded
                log.warning("WAL not archived service=%s region=%s: %s", self.service, self.region, exc)
            except Exception:  # a surprise must not end archiving for the agent's life
                log.exception("WAL archiving failed unexpectedly service=%s region=%s", self.service, self.region)

    def archive_spooled(self) -> int:
        """Upload every complete WAL file in the spool, oldest name first; returns how many."""
        try:
            spool = os.open(self.data_dir / SPOOL, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return 0
        done = 0
        try:
            if os.fstat(spool).st_uid != self.uid:
                raise VaultError(f"the WAL spool {self.data_dir / SPOOL} is not the server's own: not read")
            names = sorted(os.listdir(spool))[:SPOOL_FILES * 2]  # bounded: the uid may have made many
            for name in [n for n in names if WAL_NAME.fullmatch(n)][:ROUND_FILES]:
                done += self._archive(spool, name)
        finally:
            os.close(spool)
        self.archived += done
        return done

    def _archive(self, spool: int, name: str) -> int:
        """Upload one spooled file (1) or drop one that is not a WAL file of the server's (0)."""
        copy = self.staging.with_name(f"{self.staging.name}-wal")
        copy.mkdir(mode=0o700, parents=True, exist_ok=True)
        staged = copy / name
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=spool)
        except OSError as exc:  # a link planted under a WAL name (ELOOP), gone meanwhile...: never followed
            log.warning("dropped from the WAL spool service=%s region=%s file=%s: %s", self.service, self.region,
                        name, exc.strerror)
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=spool)
            return 0
        try:
            seen = os.fstat(fd)
            low, high = expected_size(name)
            if not stat.S_ISREG(seen.st_mode) or seen.st_uid != self.uid or not low <= seen.st_size <= high:
                log.warning("dropped from the WAL spool service=%s region=%s file=%s: not a WAL file of the "
                            "server's (%d bytes)", self.service, self.region, name, seen.st_size)
                os.unlink(name, dir_fd=spool)
                return 0
            digest = hashlib.sha256()
            with os.fdopen(os.dup(fd), "rb") as source, staged.open("wb") as out:  # root's copy: it cannot change
                left = seen.st_size  # what was checked, and not a byte more however the file grows
                while left > 0 and (chunk := source.read(min(left, 1024 * 1024))):
                    digest.update(chunk)
                    out.write(chunk)
                    left -= len(chunk)
        finally:
            os.close(fd)
        try:
            upload_wal(self._put(), Snapshot(path=staged, position=wal_start(name), chain_head=digest.hexdigest(),
                                             size=staged.stat().st_size, sha256=digest.hexdigest(),
                                             generation=self._generation()),
                       name, bucket=bucket_name(self.service), service=self.service, region=self.region,
                       epoch=self._epoch(), signer=self.signer, created_ms=int(time.time() * 1000))
        finally:
            staged.unlink(missing_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=spool)  # only now: a file the vault does not hold stays spooled
        log.info("WAL archived service=%s region=%s file=%s", self.service, self.region, name)
        return 1
