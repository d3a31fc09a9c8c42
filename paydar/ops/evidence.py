"""Evidence of a drill: one archive of its files, with a manifest of their SHA-256 digests signed
by the operator key, that an auditor can check long after the system is gone.

The archive is a gzip'd tar holding ``evidence.json`` (the manifest: every file's path, size
and digest, and the drill's metadata, as canonical JSON: the bytes in the file are exactly the
bytes signed), ``evidence.sig.json`` (the operator's Ed25519 signature over them) and the
files themselves. Verification trusts
only a key given from outside the archive (the trust root's operator keys, or a public key
the auditor holds): a bundle naming its own key would prove nothing. It reads the archive as
a stream, never extracts it, and bounds what it decompresses (headers included) and how many
members it reads, so a hostile archive can neither write files nor exhaust memory; it reads
past damaged headers rather than stopping at them, so nothing can hide behind one.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from paydar.model.errors import PaydarError, SignatureError
from paydar.model.signing import Signature, Signer, canonical_json, verify_bytes
from paydar.model.wire import parse_json

__all__ = ["MANIFEST", "SIGNATURE", "EvidenceInvalid", "Verified", "verify_bundle", "write_bundle"]

MANIFEST = "evidence.json"
SIGNATURE = "evidence.sig.json"
MAX_MEMBERS = 20_000
MAX_BYTES = 4 * 1024**3
MAX_MANIFEST_BYTES = 16 * 1024**2
CHUNK = 1024 * 1024


class EvidenceInvalid(PaydarError):
    """The bundle is malformed, altered, incomplete, or not signed by a trusted key."""


class FileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)


class Manifest(BaseModel):
    """What the operator signs: every file of the bundle and the drill's metadata."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: int = 1
    created: float
    files: dict[str, FileEntry] = Field(max_length=MAX_MEMBERS)
    meta: dict[str, Any] = {}


@dataclass(frozen=True)
class Verified:
    """A bundle that checked out: who signed it, what it holds, and the drill's metadata."""

    key_id: str
    files: int
    bytes: int
    meta: dict[str, Any]


def _digest(path: Path) -> FileEntry:
    sha = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(CHUNK):
            sha.update(chunk)
    return FileEntry(sha256=sha.hexdigest(), bytes=path.stat().st_size)


def write_bundle(target: Path, files: Mapping[str, Path], signer: Signer, meta: Mapping[str, Any]) -> Path:
    """Write ``files`` (archive name -> file) to ``target`` with the signed manifest; return ``target``."""
    manifest = Manifest(created=time.time(), files={name: _digest(path) for name, path in files.items()},
                        meta=dict(meta))
    signed = canonical_json(manifest.model_dump(mode="json"))
    signature = signer.sign_bytes(signed)
    partial = target.with_name(target.name + ".partial")
    with tarfile.open(partial, "w:gz") as archive:
        for name, data in ((MANIFEST, signed), (SIGNATURE, signature.model_dump_json().encode())):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), int(manifest.created), 0o644
            archive.addfile(info, io.BytesIO(data))
        for name, path in files.items():
            archive.add(path, arcname=name, recursive=False)
    partial.replace(target)
    return target


class _Bounded(io.RawIOBase):
    """A decompressed stream that refuses to yield more than ``limit`` bytes in all, checked
    before each read, so no header (a GNU long name, a PAX record) can make tarfile allocate more."""

    def __init__(self, source: gzip.GzipFile, limit: int) -> None:
        self.source, self.left = source, limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.source.read(min(len(view), self.left + 1))
        if len(data) > self.left:
            raise EvidenceInvalid(f"more than {MAX_BYTES} bytes: not a Paydar evidence bundle")
        view[:len(data)] = data
        self.left -= len(data)
        return len(data)


def _small(archive: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    if member.size > MAX_MANIFEST_BYTES:
        raise EvidenceInvalid(f"{member.name} is {member.size} bytes, more than a manifest can be")
    extracted = archive.extractfile(member)
    if extracted is None:
        raise EvidenceInvalid(f"{member.name} is not a regular file")
    return extracted.read()


def _hash(archive: tarfile.TarFile, member: tarfile.TarInfo) -> FileEntry:
    extracted = archive.extractfile(member)
    if extracted is None:
        raise EvidenceInvalid(f"{member.name} is not a regular file; a bundle holds only regular files")
    sha, size = hashlib.sha256(), 0
    while chunk := extracted.read(CHUNK):
        sha.update(chunk)
        size += len(chunk)
    return FileEntry(sha256=sha.hexdigest(), bytes=size)


def _read(path: Path) -> tuple[bytes, bytes, dict[str, FileEntry]]:
    """The manifest's bytes, the signature's bytes, and every other member's digest."""
    manifest = signature = None
    seen: dict[str, FileEntry] = {}
    names: set[str] = set()
    total = 0
    try:
        with gzip.open(path, "rb") as unzipped, \
                tarfile.open(fileobj=io.BufferedReader(_Bounded(unzipped, MAX_BYTES + MAX_MANIFEST_BYTES)),
                             mode="r|", ignore_zeros=True) as archive:
            for count, member in enumerate(archive, start=1):
                if count > MAX_MEMBERS + 2:
                    raise EvidenceInvalid(f"more than {MAX_MEMBERS} files: not a Paydar evidence bundle")
                total += member.size
                if total > MAX_BYTES:
                    raise EvidenceInvalid(f"more than {MAX_BYTES} bytes: not a Paydar evidence bundle")
                if not member.isfile():
                    raise EvidenceInvalid(f"{member.name!r} is not a regular file; a bundle holds only regular files")
                if member.name in names:
                    raise EvidenceInvalid(f"{member.name!r} appears twice in the bundle")
                names.add(member.name)
                if member.name == MANIFEST:
                    manifest = _small(archive, member)
                elif member.name == SIGNATURE:
                    signature = _small(archive, member)
                else:
                    seen[member.name] = _hash(archive, member)
    except (OSError, tarfile.TarError, EOFError, zlib.error) as exc:
        raise EvidenceInvalid(f"{path} is not a readable evidence bundle (gzip'd tar): {exc}") from None
    if manifest is None or signature is None:
        raise EvidenceInvalid(f"{path} holds no {MANIFEST} and {SIGNATURE}: not a Paydar evidence bundle")
    return manifest, signature, seen


def verify_bundle(path: Path, trusted: Mapping[str, Ed25519PublicKey]) -> Verified:
    """Check that the manifest is signed by one of ``trusted`` (key id -> key) and that the
    bundle holds exactly its files, byte for byte; raise :class:`EvidenceInvalid` saying what failed."""
    raw_manifest, raw_signature, seen = _read(path)
    try:
        signature = Signature.model_validate_json(raw_signature)
    except ValidationError as exc:
        raise EvidenceInvalid(f"the signature is malformed: {exc.error_count()} error(s)") from None
    key = trusted.get(signature.key_id)
    if key is None:
        raise EvidenceInvalid(f"signed by key {signature.key_id}, which is not a trusted operator key; pass the "
                              "operator's public key with --public-key, or the drill's --state-dir")
    try:
        verify_bytes(raw_manifest, signature, key)  # the file's own bytes: nothing unsigned can be read from it
    except SignatureError as exc:
        raise EvidenceInvalid(f"the manifest's signature does not verify ({exc}): the bundle was altered") from None
    try:
        manifest = Manifest.model_validate(parse_json(raw_manifest))
    except (ValueError, ValidationError) as exc:
        raise EvidenceInvalid(f"the signed manifest is not one this version reads: {str(exc)[:300]}") from None
    missing = sorted(set(manifest.files) - set(seen))
    extra = sorted(set(seen) - set(manifest.files))
    changed = sorted(name for name, entry in manifest.files.items() if name in seen and seen[name] != entry)
    for problem, names in (("missing", missing), ("not in the signed manifest", extra), ("altered", changed)):
        if names:
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            raise EvidenceInvalid(f"{len(names)} file(s) {problem}: {shown}")
    return Verified(signature.key_id, len(manifest.files), sum(e.bytes for e in manifest.files.values()),
                    manifest.meta)
