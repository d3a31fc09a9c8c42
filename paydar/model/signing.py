"""Canonical JSON and Ed25519 signatures, single and threshold.

Every control message (routing tables, replication batches, and later observations,
promotions and manifests) is signed over its canonical JSON form: sorted keys, no
insignificant whitespace, UTF-8, no NaN. A key is named by its key id, the first 16 bytes of
the SHA-256 of the raw public key, in hex.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import Field

from paydar.model.errors import SignatureError, ThresholdNotMet
from paydar.model.wire import WireModel

__all__ = [
    "Signature",
    "Signer",
    "canonical_json",
    "key_id",
    "public_key_from_b64",
    "public_key_to_b64",
    "verify",
    "verify_bytes",
    "verify_threshold",
]


def canonical_json(payload: Any) -> bytes:
    """The canonical bytes of a JSON-serialisable value: what every signature covers."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def public_key_to_b64(public_key: Ed25519PublicKey) -> str:
    return base64.b64encode(public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode("ascii")


@functools.lru_cache(maxsize=4096)
def public_key_from_b64(text: str) -> Ed25519PublicKey:
    """Decode a raw Ed25519 public key; raises :class:`SignatureError` when malformed.

    Cached: every signature check of a node, gateway or controller looks keys up in the trust
    root, and decoding one costs as much as a third of a verification (keys are immutable)."""
    try:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))
    except (ValueError, binascii.Error) as exc:
        raise SignatureError(f"malformed Ed25519 public key: {exc}") from None


def key_id(public_key: Ed25519PublicKey) -> str:
    """Stable short name of a public key."""
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:32]


class Signature(WireModel):
    """A detached signature: which key, and the base64 Ed25519 signature."""

    key_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    sig: str = Field(min_length=1, max_length=200)


class Signer:
    """Signs payloads with one component's private key."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.key_id = key_id(private_key.public_key())

    @property
    def public_key_b64(self) -> str:
        """The public half, as trust roots and ``paydar evidence verify --public-key`` spell it."""
        return public_key_to_b64(self._key.public_key())

    def sign(self, payload: Any) -> Signature:
        return self.sign_bytes(canonical_json(payload))

    def sign_bytes(self, data: bytes) -> Signature:
        """Sign bytes exactly as they travel (large messages: no re-encoding to verify)."""
        raw = self._key.sign(data)
        return Signature(key_id=self.key_id, sig=base64.b64encode(raw).decode("ascii"))

    def __repr__(self) -> str:  # never show key material
        return f"Signer(key_id={self.key_id!r})"


def verify(payload: Any, signature: Signature, public_key: Ed25519PublicKey) -> None:
    """Raise :class:`SignatureError` unless ``signature`` is valid for ``payload``."""
    verify_bytes(canonical_json(payload), signature, public_key)


def verify_bytes(data: bytes, signature: Signature, public_key: Ed25519PublicKey) -> None:
    """Raise :class:`SignatureError` unless ``signature`` is valid for exactly ``data``."""
    try:
        raw = base64.b64decode(signature.sig, validate=True)
        public_key.verify(raw, data)
    except (InvalidSignature, ValueError, binascii.Error):
        raise SignatureError(f"signature by key {signature.key_id} does not verify") from None


def verify_threshold(
    payload: Any,
    signatures: Iterable[Signature],
    trusted: Mapping[str, Ed25519PublicKey],
    required: int,
    role: str,
) -> frozenset[str]:
    """Return the ids of distinct trusted keys with a valid signature, if at least ``required``.

    Signatures by unknown keys, invalid signatures and repeats of one key are ignored and
    counted in the error, so one key can never stand in for two. A key with a valid signature,
    a signature already tried and a key tried twice are skipped before verifying, so the cost
    is at most two checks per trusted key whatever the list holds (its length is also bounded
    where it is parsed, :data:`paydar.model.routing.MAX_SIGNATURES`). One bad copy placed before a
    key's good signature does not hide the good one.
    """
    if required < 1:
        raise ValueError("a threshold must be at least 1")
    data = canonical_json(payload)  # once, not once per signature: tables can be large
    valid: set[str] = set()
    tried: set[tuple[str, str]] = set()
    attempts: dict[str, int] = {}
    unknown = invalid = 0
    for signature in signatures:
        public_key = trusted.get(signature.key_id)
        if public_key is None:
            unknown += 1
            continue
        if signature.key_id in valid or (signature.key_id, signature.sig) in tried or \
                attempts.get(signature.key_id, 0) >= 2:
            continue
        tried.add((signature.key_id, signature.sig))
        attempts[signature.key_id] = attempts.get(signature.key_id, 0) + 1
        try:
            verify_bytes(data, signature, public_key)
        except SignatureError:
            invalid += 1
            continue
        valid.add(signature.key_id)
    if len(valid) < required:
        detail = f"{unknown} by unknown keys, {invalid} invalid"
        raise ThresholdNotMet(role, len(valid), required, detail)
    return frozenset(valid)
