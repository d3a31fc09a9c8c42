"""The vault's S3 side, for any S3 backend (SeaweedFS locally, MinIO in production), via boto3.

Backups must survive an attacker who holds one region's credentials, so every service gets
its own bucket with versioning and object lock, default retention in COMPLIANCE mode (no
identity, admin included, can delete a locked version or shorten its retention). Buckets are
created locked from the start because MinIO, the production vault, can only enable object
lock at creation; SeaweedFS would allow it later, code that relied on that would not port.

The exceptions::

    PaydarError (paydar.model.errors)
    └── VaultError                 anything this module raises on purpose
        ├── VaultNotReady          the S3 endpoint did not answer before the deadline
        └── BucketNotLocked        a bucket exists without object lock (can't be fixed in place)

Secret keys never appear in logs or reprs.
"""

from __future__ import annotations

import json
import logging
import secrets
import string
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypedDict

from botocore.exceptions import BotoCoreError, ClientError

from paydar.model.buckets import check_bucket_name
from paydar.model.errors import PaydarError
from paydar.model.files import write_json_atomic

__all__ = [
    "BucketDescription", "BucketNotLocked", "S3Client", "S3Identity", "VaultError",
    "VaultNotReady", "describe_bucket", "error_code", "load_identity", "new_identity",
    "provision_buckets", "save_identity", "vault_client", "wait_ready",
]

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import DefaultRetentionTypeDef
else:
    S3Client = Any
"""A boto3 S3 client; its static type comes from the mypy-boto3-s3 stubs (a test dependency)."""

_LOCK_MODE: Final = "COMPLIANCE"


class VaultError(PaydarError):
    """Base of every error the vault module raises on purpose."""


class VaultNotReady(VaultError):
    """The S3 endpoint did not answer before the deadline; the message has the last error."""


class BucketNotLocked(VaultError):
    """A bucket exists without object lock: it cannot protect backups and can't be fixed in place."""


@dataclass(frozen=True)
class S3Identity:
    """One S3 identity of the vault: its name, keys and SeaweedFS actions.

    Actions are SeaweedFS's: ``Admin``, ``Read``, ``Write``, ``List``, ``Tagging``, each
    optionally scoped to a bucket (``"Write:paydar-<service>"``). The secret key is kept out of
    ``repr`` so an identity can be logged.
    """

    name: str
    access_key: str
    secret_key: str = field(repr=False)
    actions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Identities are stored as JSON, where the actions come back as a list.
        object.__setattr__(self, "actions", tuple(self.actions))


def new_identity(name: str, actions: Iterable[str]) -> S3Identity:
    """A new identity with random keys (20-character access key, 40-character secret)."""
    alphabet = string.ascii_uppercase + string.digits
    access_key = "PD" + "".join(secrets.choice(alphabet) for _ in range(18))
    return S3Identity(name=name, access_key=access_key, secret_key=secrets.token_urlsafe(30),
                      actions=tuple(actions))


def save_identity(path: Path, identity: S3Identity) -> None:
    """Write an identity, secret included, to a file only its owner can read (mode 0600)."""
    write_json_atomic(path, identity.__dict__ | {"actions": list(identity.actions)}, mode=0o600)


def load_identity(path: Path) -> S3Identity:
    """The identity saved at ``path``; a clear error when it is missing or malformed."""
    try:
        return S3Identity(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError) as exc:
        raise VaultError(f"cannot read vault identity {path}: {exc}; `paydar up` writes one per region") from None


def vault_client(endpoint_url: str, identity: S3Identity, *, timeout: float = 5.0) -> S3Client:
    """A boto3 S3 client for the vault: path addressing, short timeouts, few retries."""
    # Imported here: a client costs a process about 26 MiB, and nodes import this module
    # for its names and errors only (their uploads run in `python -m paydar.vault.upload`).
    import boto3
    from botocore.config import Config

    config = Config(s3={"addressing_style": "path"}, connect_timeout=timeout, read_timeout=timeout,
                    retries={"mode": "standard", "max_attempts": 2})
    return boto3.client("s3", endpoint_url=endpoint_url, region_name="us-east-1", config=config,
                        aws_access_key_id=identity.access_key, aws_secret_access_key=identity.secret_key)


def wait_ready(endpoint_url: str, identity: S3Identity, timeout: float, *, interval: float = 0.1) -> None:
    """Return once ``list_buckets`` succeeds as ``identity``; raise :class:`VaultNotReady` at the deadline."""
    client = vault_client(endpoint_url, identity, timeout=min(2.0, max(timeout, 0.1)))
    started = time.monotonic()
    deadline = started + timeout
    last: BaseException | None = None
    while True:
        try:
            client.list_buckets()
            log.info("vault at %s ready after %.2fs", endpoint_url, time.monotonic() - started)
            return
        except (BotoCoreError, ClientError) as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise VaultNotReady(
                f"vault at {endpoint_url} did not answer list_buckets as identity {identity.name!r} "
                f"within {timeout:.1f}s; last error: {last!r}; check that weed is running and its log")
        time.sleep(interval)


def provision_buckets(client: S3Client, buckets: Iterable[str], retention_days: int) -> None:
    """Make every bucket locked, versioned, with COMPLIANCE default retention; safe to repeat.

    A missing bucket is created with object lock enabled; versioning and the default
    retention are set only when they differ, so a second call changes nothing. A bucket that
    exists without object lock raises :class:`BucketNotLocked` rather than being used.
    """
    if isinstance(retention_days, bool) or not isinstance(retention_days, int) or retention_days < 1:
        raise VaultError(f"retention_days must be a whole number of days >= 1, got {retention_days!r}")
    names = list(buckets)
    for bucket in names:  # all names first, so a bad one changes nothing
        check_bucket_name(bucket, "the caller")
    for bucket in names:
        _ensure_locked_bucket(client, bucket)
        _ensure_versioning(client, bucket)
        _ensure_default_retention(client, bucket, retention_days)


def _ensure_locked_bucket(client: S3Client, bucket: str) -> None:
    if not _bucket_exists(client, bucket):
        try:
            client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
            log.info("vault bucket %s: created with object lock", bucket)
        except ClientError as exc:
            if error_code(exc) != "BucketAlreadyOwnedByYou":  # else created concurrently: check it below
                raise
    if _lock_configuration(client, bucket).get("ObjectLockEnabled") != "Enabled":
        raise BucketNotLocked(
            f"vault bucket {bucket} exists without object lock, so its backups could be deleted; "
            "object lock can only be enabled when a bucket is created (MinIO): move its objects "
            "elsewhere, delete the bucket, and provision again")


def _bucket_exists(client: S3Client, bucket: str) -> bool:
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if error_code(exc) in ("404", "NoSuchBucket"):
            return False
        raise
    return True


def _ensure_versioning(client: S3Client, bucket: str) -> None:
    status = client.get_bucket_versioning(Bucket=bucket).get("Status")
    if status == "Enabled":
        log.debug("vault bucket %s: versioning already enabled", bucket)
        return
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    log.info("vault bucket %s: versioning enabled (was %s)", bucket, status)


def _ensure_default_retention(client: S3Client, bucket: str, days: int) -> None:
    current = _lock_configuration(client, bucket).get("Rule", {}).get("DefaultRetention", {})
    wanted: DefaultRetentionTypeDef = {"Mode": _LOCK_MODE, "Days": days}
    if current == wanted:
        log.debug("vault bucket %s: default retention already %s %d days", bucket, _LOCK_MODE, days)
        return
    client.put_object_lock_configuration(
        Bucket=bucket, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": wanted}})
    level = logging.WARNING if current.get("Days", 0) > days else logging.INFO
    log.log(level, "vault bucket %s: default retention set to %s %d days (was %s); "
            "versions already stored keep their own retention", bucket, _LOCK_MODE, days, current or "none")


def _lock_configuration(client: S3Client, bucket: str) -> dict[str, Any]:
    try:
        config = dict(client.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"])
    except ClientError as exc:
        if error_code(exc) == "ObjectLockConfigurationNotFoundError":
            return {}
        raise
    return config


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class BucketDescription(TypedDict):
    """What `paydar status` shows of a vault bucket."""

    bucket: str
    versioning: str
    object_lock: bool
    mode: str | None
    days: int | None
    years: int | None


def describe_bucket(client: S3Client, bucket: str) -> BucketDescription:
    """Versioning status (``Enabled``, ``Suspended`` or ``Disabled``) and object-lock defaults."""
    versioning = client.get_bucket_versioning(Bucket=bucket).get("Status", "Disabled")
    config = _lock_configuration(client, bucket)
    retention = config.get("Rule", {}).get("DefaultRetention", {})
    return BucketDescription(
        bucket=bucket, versioning=versioning, object_lock=config.get("ObjectLockEnabled") == "Enabled",
        mode=retention.get("Mode"), days=retention.get("Days"), years=retention.get("Years"))
