"""Backup manifests: what a snapshot holds, signed by the node that took it.

A manifest pins the snapshot object by key *and* version id, so a later upload under the
same key (all a region's credentials allow) can never be restored in its place; the SHA-256
and size then prove the bytes, and the chain head and position prove the contents once the
whole hash chain of the downloaded store is walked. The signature is the node's own Ed25519
key, checked against the trust root: a manifest signed by any other key, another service's
node included, is refused.

Vault layout, per service bucket (``paydar-<service>``)::

    <region>/snapshots/<created_ms>-<position>.sqlite3
    <region>/manifests/<created_ms>-<position>.json

Keys sort by time, so the newest backups are found by listing one prefix.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from paydar.model.errors import IdentityError, PaydarError, SignatureError
from paydar.model.identity import TrustRoot
from paydar.model.ids import node_id
from paydar.model.signing import Signature, Signer, verify

__all__ = ["MAX_MANIFEST_BYTES", "BackupManifest", "ManifestRejected", "SignedManifest", "manifest_key",
           "manifests_prefix", "snapshot_key"]

MAX_MANIFEST_BYTES = 16 * 1024
"""A manifest is a few hundred bytes; anything much larger is not one of ours."""

SNAPSHOT_FORMAT = "sqlite3"


class ManifestRejected(PaydarError):
    """A manifest (or the snapshot it names) can't be trusted; the message says why and what to do."""


def manifests_prefix(region: str) -> str:
    return f"{region}/manifests/"


def _stem(created_ms: int, position: int) -> str:
    return f"{created_ms:015d}-{position:012d}"


def snapshot_key(region: str, created_ms: int, position: int) -> str:
    return f"{region}/snapshots/{_stem(created_ms, position)}.{SNAPSHOT_FORMAT}"


def manifest_key(region: str, created_ms: int, position: int) -> str:
    return f"{manifests_prefix(region)}{_stem(created_ms, position)}.json"


class BackupManifest(BaseModel):
    """One snapshot of one node's store, as the node saw it when it took it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    service: str
    region: str
    node: str
    epoch: int = Field(ge=1)
    position: int = Field(ge=0)
    chain_head: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    created_ms: int = Field(ge=0)
    bucket: str
    key: str
    version_id: str = Field(min_length=1)
    format: str = SNAPSHOT_FORMAT

    @property
    def created(self) -> datetime:
        return datetime.fromtimestamp(self.created_ms / 1000, tz=UTC)


class SignedManifest(BaseModel):
    """A manifest and its node's signature over the manifest's canonical JSON."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    manifest: BackupManifest
    signature: Signature

    @classmethod
    def seal(cls, manifest: BackupManifest, signer: Signer) -> SignedManifest:
        return cls(manifest=manifest, signature=signer.sign(manifest.model_dump(mode="json")))

    @classmethod
    def parse(cls, raw: bytes, origin: str) -> SignedManifest:
        """Parse a manifest as fetched; :class:`ManifestRejected` when it is not one."""
        if len(raw) > MAX_MANIFEST_BYTES:
            raise ManifestRejected(f"{origin}: {len(raw)} bytes is not a manifest (at most {MAX_MANIFEST_BYTES})")
        try:
            return cls.model_validate_json(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(top level)"
            raise ManifestRejected(f"{origin}: not a valid manifest ({where}: {first['msg']})") from None

    def verified(self, trust: TrustRoot, *, service: str, bucket: str) -> BackupManifest:
        """The manifest, once its signature verifies as its node's and it belongs to ``service``.

        Raises :class:`ManifestRejected` naming the reason: another service's backup, a key
        the trust root does not hold for that node, or a signature that does not match (the
        manifest was changed after it was signed).
        """
        m = self.manifest
        if m.service != service or m.node != node_id(service, m.region) or m.bucket != bucket:
            raise ManifestRejected(
                f"manifest is for service {m.service} (node {m.node}, bucket {m.bucket}), not service {service}: "
                "a backup of another service can't restore this one")
        if not m.key.startswith(f"{m.region}/snapshots/"):
            raise ManifestRejected(f"manifest names snapshot {m.key!r} outside {m.region}/snapshots/")
        try:
            kid, public_key = trust.key_of(m.node)
        except IdentityError:
            raise ManifestRejected(f"the trust root holds no key for {m.node}; the manifest can't be verified"
                                   ) from None
        if self.signature.key_id != kid:
            raise ManifestRejected(
                f"manifest signed by unknown key {self.signature.key_id}, not {m.node}'s key {kid}: refusing it")
        try:
            verify(m.model_dump(mode="json"), self.signature, public_key)
        except SignatureError:
            raise ManifestRejected(
                f"manifest signature does not verify with {m.node}'s key: it was changed after {m.node} signed it"
            ) from None
        return m
