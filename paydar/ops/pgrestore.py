"""`paydar restore` for a PostgreSQL service: an instance rebuilt, or a point in time recovered,
from the vault, with every byte proved before a server reads it.

What is proved, in order, before anything starts:
1. the base backup's manifest: the agent's signature (trust root), then the bundle's size and
   SHA-256 at the pinned version;
2. the backup itself: ``pg_verifybackup`` checks every file against PostgreSQL's own manifest
   and the WAL it needs, and that manifest's end LSN and SHA-256 must be the signed ones;
3. every archived WAL file it will replay: each one's own signed manifest, size and SHA-256.
   A WAL manifest that does not verify is passed over (a plant holds nothing of the agent's);
   a genuinely signed one whose bytes differ refuses the whole restore.

Then either the instance is rebuilt as a standby (the registry's order: refuse the writable
primary, stop its agent, keep its data aside, start it on the verified data, which replays the
archived WAL, streams from the current primary and catches up; a failure puts the old data
back), or, with ``into``, the backup and WAL are recovered to a time or LSN in a directory of
their own, by a jailed server that stops being a standby at the target and is then shut down.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import signal
import subprocess
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import psycopg

from paydar.infra.local.appjail import APP_UID_BASE
from paydar.infra.local.ports import PortAllocator
from paydar.infra.local.processes import terminate
from paydar.infra.local.realizer import Realization
from paydar.model.errors import BadInput
from paydar.model.identity import TrustRoot
from paydar.model.ids import node_id
from paydar.ops.restore import RestoreFailed, RestoreReport, Steps, choose_backup, rebuild_node, refuse_primary
from paydar.postgres.backup import WAL_NAME, Proof, generation, prove_backup, wal_range
from paydar.postgres.replication import lsn
from paydar.postgres.server import JAIL_DATA, PgServer
from paydar.vault.manifest import BackupManifest
from paydar.vault.restore import RestoreRefused, download_verified, fetch_verified, list_wal
from paydar.vault.s3 import S3Client

__all__ = ["RECOVERY_UID", "parse_lsn", "restore_postgres"]

log = logging.getLogger(__name__)

RECOVERY_UID = APP_UID_BASE + 999_999
"""The uid a point-in-time recovery's server runs as: no instance's (they count up from the base)."""
RECOVERY_SECONDS = 3600.0
RESTORE_WAL = "restore-wal"


def restore_postgres(realization: Realization, service: str, region: str, *, at: datetime | None = None,
                     position: int | None = None, into: Path | None = None, steps: Steps | None = None,
                     rejoin_timeout: float = 300.0) -> RestoreReport:
    """Rebuild ``service``'s instance in ``region`` from the vault, or recover into ``into`` up to
    ``at`` / ``position`` (an LSN); see the module doc."""
    steps = steps or Steps()
    node = node_id(service, region)
    if region not in realization.topology.service(service).regions:
        raise BadInput(f"service {service} is not hosted in {region!r}")
    if into is None:
        if at is not None or position is not None:
            raise BadInput("an instance is always rebuilt to the present (it streams from the primary); recover "
                           "a point in time with --into DIR")
        refuse_primary(realization, service, region)
    elif into.exists() and any(into.iterdir()):
        raise BadInput(f"{into} is not empty; recover into an empty directory (nothing is overwritten)")
    # A backup consistent exactly at the LSN cannot stop before it: only one that ends earlier.
    before = position - 1 if position is not None else None
    client, trust, manifest = choose_backup(realization, service, region, at=at, position=before, steps=steps)
    if manifest.generation is None:
        raise RestoreRefused(f"the base backup {manifest.key} names no generation; it is not a PostgreSQL backup")
    stamp = time.strftime("%Y%m%dT%H%M%S")
    staging = realization.layout.restores / f"{node}-{stamp}" / "verified"
    (staging / "pg").mkdir(parents=True)
    started = time.monotonic()
    steps.phase(f"downloading and verifying the base backup consistent from LSN {_text(manifest.position)}")
    fetch_verified(client, manifest, staging / "base-backup.tar", lambda path, _service: _unpack(path, staging),
                   steps.downloaded)
    (staging / "base-backup.tar").unlink()
    steps.phase("downloading and verifying the archived WAL")
    wal, passed_over = _fetch_wal(client, trust, manifest, staging / "pg" / RESTORE_WAL, steps, until=position)
    verify_seconds = time.monotonic() - started
    detail = f"{wal} WAL file(s) verified" + (f"; passed over {passed_over}" if passed_over else "")
    if into is not None:
        with _one_recovery(realization):
            reached = _recover(realization, staging, into, at=at, position=position, steps=steps)
        shutil.rmtree(staging.parent, ignore_errors=True)
        return RestoreReport(node, manifest, verify_seconds, into / "pg" / "db", detail=f"{detail}; {reached}")
    _as_standby(staging, uid=_uid(realization, node))
    report = rebuild_node(realization, node, manifest, staging, verify_seconds, steps, rejoin_timeout)
    return replace(report, detail=detail)


def _text(position: int) -> str:
    return f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"


def _unpack(bundle: Path, staging: Path) -> Proof:
    """Unpack the verified bundle into ``staging/pg/db`` and prove it with ``pg_verifybackup``."""
    work, db = staging / "bundle", staging / "pg" / "db"
    try:
        with tarfile.open(bundle) as outer:
            outer.extractall(work, filter="data")  # no links out, no absolute paths, no devices
        with tarfile.open(work / "base.tar") as inner:
            inner.extractall(db, filter="data")
        shutil.copy2(work / "backup_manifest", db / "backup_manifest")
    except (OSError, tarfile.TarError) as exc:
        return Proof(ok=False, checked=0, head_hash="0" * 64, reason=f"the bundle does not unpack: {exc}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return prove_backup(db)


def _fetch_wal(client: S3Client, trust: TrustRoot, base: BackupManifest, into: Path, steps: Steps, *,
               until: int | None = None) -> tuple[int, str]:
    """Download every archived WAL file of ``base``'s generation that recovery may ask for after
    ``base`` began (and, with ``until``, up to that LSN's segment), each proved."""
    into.mkdir(parents=True)
    first = wal_range(into.parent / "db")[0] >> 24  # the backup's first segment (16 MiB each), on any timeline
    last = until >> 24 if until is not None else None

    def wanted(name: str) -> bool:
        if not WAL_NAME.fullmatch(name):  # a plant under a name no server writes: never parsed
            return False
        if name.endswith(".history"):
            return True
        if len(name) != 24:  # partial segments and backup histories: recovery never asks for them
            return False
        segment = (int(name[8:16], 16) << 8) + int(name[16:24], 16)
        return segment >= first and (last is None or segment <= last)

    assert base.generation is not None
    listed = list_wal(client, trust, base.service, base.region, base.generation, wanted)
    bad = [entry for entry in listed if entry.verified is None]
    for entry in listed:
        manifest = entry.verified
        if manifest is None:
            continue
        name = manifest.key.rsplit("/", 1)[1]
        try:
            download_verified(client, manifest, into / name, steps.downloaded)
        except RestoreRefused as exc:
            raise RestoreRefused(f"archived WAL file {name} does not match its signed manifest, so nothing is "
                                 f"restored: {exc}") from None
    passed_over = f"{len(bad)} WAL manifest(s) that do not verify (first {bad[0].key}: {bad[0].problem})" \
        if bad else ""
    return len(listed) - len(bad), passed_over


def _uid(realization: Realization, node: str) -> int:
    return int(json.loads(realization.layout.config(node).read_text())["uid"])


def _settings(db: Path, lines: dict[str, str]) -> None:
    """Append settings to the data directory's ``postgresql.auto.conf`` (read last: they win)."""
    with (db / "postgresql.auto.conf").open("a") as conf:
        for name, value in lines.items():
            conf.write(f"{name} = '{value}'\n")


def _own(path: Path, uid: int) -> None:
    for root, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            os.chown(Path(root) / name, uid, uid, follow_symlinks=False)
    os.chown(path, uid, uid)
    for private in (path, path / "db"):  # PostgreSQL starts only on a data directory of its own
        private.chmod(0o700)


def _as_standby(staging: Path, *, uid: int) -> None:
    """Make the verified data a standby that replays the archived WAL first; the agent points it
    at the current primary (``follow``) once it runs. It is a new life of the data."""
    db = staging / "pg" / "db"
    generation(staging, new=True)
    (db / "standby.signal").touch()
    _settings(db, {"restore_command": f"cp {JAIL_DATA}/{RESTORE_WAL}/%f %p", "primary_conninfo": ""})
    _own(staging / "pg", uid)


@contextmanager
def _one_recovery(realization: Realization) -> Iterator[None]:
    realization.layout.restores.mkdir(parents=True, exist_ok=True)
    with (realization.layout.restores / ".recovery.lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BadInput("another point-in-time recovery is running (its server has the recovery uid); wait "
                           "for it") from None
        yield


def _recover(realization: Realization, staging: Path, into: Path, *, at: datetime | None, position: int | None,
             steps: Steps) -> str:
    """Recover the verified data into ``into`` up to the target, with a jailed server; says where
    recovery stopped."""
    db = staging / "pg" / "db"
    # Up to and not including the LSN: what was committed before it, nothing that began there.
    target = {"recovery_target_lsn": _text(position), "recovery_target_inclusive": "off"} if position is not None \
        else {"recovery_target_time": at.isoformat()} if at is not None else {}
    (db / "recovery.signal").touch()
    (db / "standby.signal").unlink(missing_ok=True)
    # On the command line, over whatever the backed-up server's own files say (their commands
    # would run here): no TCP at all, no commands but the restore's, nothing archived.
    settings = {"listen_addresses": "", "hot_standby": "on", "archive_mode": "off", "recovery_end_command": "",
                "archive_cleanup_command": "", "restore_command": f"cp {JAIL_DATA}/{RESTORE_WAL}/%f %p",
                "primary_conninfo": "", "primary_slot_name": "", "synchronous_standby_names": "",
                "recovery_target_timeline": "latest", "recovery_target_action": "promote", **target}
    into.mkdir(parents=True, exist_ok=True)
    shutil.move(staging / "pg", into / "pg")  # --into may be on another filesystem
    _own(into / "pg", RECOVERY_UID)
    ports = PortAllocator()
    server = PgServer(data_dir=into / "pg", conf_dir=into / "conf", port=ports.take(), uid=RECOVERY_UID,
                      state_dir=realization.layout.root)
    log_path = into / "recovery.log"
    steps.phase("replaying the archived WAL up to the target")
    with log_path.open("ab") as out:
        process = subprocess.Popen(server.command(settings), stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + RECOVERY_SECONDS
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RestoreFailed(f"recovery stopped before the target: {_tail(log_path)}")
            if _promoted(server):
                break
            time.sleep(0.2)
        else:
            raise RestoreFailed(f"recovery did not reach the target within {RECOVERY_SECONDS:.0f}s")
        with server.connect() as connection:
            row = connection.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    finally:
        terminate(process, 20.0, signal.SIGINT)  # PostgreSQL's fast shutdown
        _own(into / "pg", 0)  # root's from here: the recovery uid, shared by every recovery, keeps nothing
    stopped = next((line.split("LOG:", 1)[1].strip() for line in reversed(log_path.read_text().splitlines())
                    if "recovery stopping" in line or "redo done at" in line), "recovery ended")
    return f"{stopped}; the recovered database is at LSN {row[0] if row else '?'} in {into / 'pg' / 'db'}"


def _promoted(server: PgServer) -> bool:
    try:
        with server.connect(timeout=1) as connection:
            return connection.execute("SELECT NOT pg_is_in_recovery()").fetchone() == (True,)
    except psycopg.Error:
        return False


def _tail(path: Path) -> str:
    lines = [line for line in path.read_text(errors="replace").splitlines() if "FATAL" in line or "LOG:" in line]
    return " | ".join(lines[-4:])[-800:]


def parse_lsn(text: str) -> int:
    """An LSN as PostgreSQL prints it (``16/B374D848``); BadInput otherwise."""
    try:
        return lsn(text)
    except ValueError:
        raise BadInput(f"{text!r} is not an LSN; give it as PostgreSQL prints one, e.g. 0/16B3748") from None
