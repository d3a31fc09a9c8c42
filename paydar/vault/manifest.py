"""Backup manifests: what a snapshot holds, signed by the node that took it.

A manifest pins the snapshot object by key *and* version id, so a later upload under the
same key (all a region's credentials allow) can never be restored in its place; the SHA-256
and size then prove the bytes, and the chain head and position prove the contents once the
whole hash chain of the downloaded store is walked. The signature is the node's own Ed25519
key, checked against the trust root: a manifest signed by any other key, another service's
node included, is refused.

Vault layout, per service bucket (``paydar-<service>``)::

    <region>/snapshots/<created_ms>-<position>.sqlite3   a registry node's store
    <region>/snapshots/<created_ms>-<position>.tar       a PostgreSQL base backup (position: its end LSN)
    <region>/manifests/<created_ms>-<position>.json
    <region>/wal/<generation>/<file>                     a PostgreSQL server's archived WAL file
    <region>/wal-manifests/<generation>/<file>.json

Keys sort by time, so the newest backups are found by listing one prefix. A *generation* is
one life of a server's data (from its initialisation, clone or restore to the next): WAL is
kept per generation, so files a compromised server archived under names that were still to
come can never stand in for the honest files of a later life, and a restore replays only the
generation of its base backup. A WAL file's manifest takes the same form: its ``position`` is
the LSN the file starts at (0 for a timeline's history), and its ``chain_head`` the file's own
SHA-256 (WAL has no chain of ours).
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from paydar.model.errors import IdentityError, PaydarError, SignatureError
from paydar.model.identity import TrustRoot
from paydar.model.ids import node_id
from paydar.model.signing import Signature, Signer, verify

__all__ = ["GENERATION", "MAX_MANIFEST_BYTES", "PG_BASE_FORMAT", "PG_WAL_FORMAT", "SNAPSHOT_FORMAT", "BackupManifest",
           "ManifestRejected", "SignedManifest", "manifest_key", "manifests_prefix", "own_manifest_key",
           "snapshot_key", "wal_key", "wal_manifest_key", "wal_manifests_prefix"]

MAX_MANIFEST_BYTES = 16 * 1024
"""A manifest is a few hundred bytes; anything much larger is not one of ours."""

SNAPSHOT_FORMAT = "sqlite3"
PG_BASE_FORMAT = "pg-base"
PG_WAL_FORMAT = "pg-wal"
GENERATION = r"^[0-9a-f]{12}$"
_SUFFIXES = {SNAPSHOT_FORMAT: "sqlite3", PG_BASE_FORMAT: "tar"}


class ManifestRejected(PaydarError):
    """A manifest (or the snapshot it names) can't be trusted; the message says why and what to do."""


def manifests_prefix(region: str) -> str:
    return f"{region}/manifests/"


def _stem(created_ms: int, position: int) -> str:
    return f"{created_ms:015d}-{position:012d}"


def snapshot_key(region: str, created_ms: int, position: int, format: str = SNAPSHOT_FORMAT) -> str:
    return f"{region}/snapshots/{_stem(created_ms, position)}.{_SUFFIXES[format]}"


def manifest_key(region: str, created_ms: int, position: int) -> str:
    return f"{manifests_prefix(region)}{_stem(created_ms, position)}.json"


def wal_manifests_prefix(region: str, generation: str | None = None) -> str:
    return f"{region}/wal-manifests/" + (f"{generation}/" if generation else "")


def wal_key(region: str, generation: str, name: str) -> str:
    return f"{region}/wal/{generation}/{name}"


def wal_manifest_key(region: str, generation: str, name: str) -> str:
    return f"{wal_manifests_prefix(region, generation)}{name}.json"


def own_manifest_key(manifest: BackupManifest) -> str:
    """The one key a manifest may be stored under: a copy elsewhere passes one file off as another."""
    if manifest.format == PG_WAL_FORMAT:
        generation, name = manifest.key.rsplit("/", 2)[-2:]
        return wal_manifest_key(manifest.region, generation, name)
    return manifest_key(manifest.region, manifest.created_ms, manifest.position)


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
    format: str = Field(default=SNAPSHOT_FORMAT, pattern=f"^({SNAPSHOT_FORMAT}|{PG_BASE_FORMAT}|{PG_WAL_FORMAT})$")
    generation: str | None = Field(default=None, pattern=GENERATION)
    """A PostgreSQL backup's or WAL file's generation (see the module doc); None for a registry's."""

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
        home = f"{m.region}/wal/{m.generation}/" if m.format == PG_WAL_FORMAT else f"{m.region}/snapshots/"
        if not m.key.startswith(home) or "/" in m.key.removeprefix(home) or m.key.endswith("/"):
            raise ManifestRejected(f"manifest names object {m.key!r} outside {home}")
        if m.format != SNAPSHOT_FORMAT and m.generation is None:
            raise ManifestRejected(f"a PostgreSQL manifest without its generation ({m.key!r}) is not one of ours")
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
