"""Canonical JSON, signatures, threshold verification, and key files on disk."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from paydar.model.errors import IdentityError, SignatureError, ThresholdNotMet
from paydar.model.identity import KeyStore, Role, TrustRoot
from paydar.model.signing import Signature, Signer, canonical_json, key_id, verify, verify_threshold


def test_canonical_json_is_order_independent_and_compact() -> None:
    assert canonical_json({"b": 1, "a": [1, "é"]}) == canonical_json({"a": [1, "é"], "b": 1})
    assert canonical_json({"b": 1, "a": 2}) == b'{"a":2,"b":1}'
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


def test_sign_and_verify_and_tamper() -> None:
    key = Ed25519PrivateKey.generate()
    signature = Signer(key).sign({"version": 2})
    verify({"version": 2}, signature, key.public_key())
    with pytest.raises(SignatureError, match="does not verify"):
        verify({"version": 3}, signature, key.public_key())
    with pytest.raises(SignatureError):
        verify({"version": 2}, Signature(key_id=signature.key_id, sig="!!notbase64"), key.public_key())


def test_signer_repr_hides_key() -> None:
    signer = Signer(Ed25519PrivateKey.generate())
    assert repr(signer) == f"Signer(key_id={signer.key_id!r})"


def _keys(n: int) -> tuple[list[Signer], dict[str, Ed25519PublicKey]]:
    keys = [Ed25519PrivateKey.generate() for _ in range(n)]
    return [Signer(k) for k in keys], {key_id(k.public_key()): k.public_key() for k in keys}


def test_threshold_met_by_distinct_keys() -> None:
    signers, trusted = _keys(3)
    payload = {"table": 1}
    valid = verify_threshold(payload, [s.sign(payload) for s in signers[:2]], trusted, 2, "controller")
    assert valid == {signers[0].key_id, signers[1].key_id}


def test_one_key_signing_twice_counts_once() -> None:
    signers, trusted = _keys(3)
    payload = {"table": 1}
    with pytest.raises(ThresholdNotMet, match="1 of 2 required valid controller signatures"):
        verify_threshold(payload, [signers[0].sign(payload)] * 2, trusted, 2, "controller")


def test_unknown_and_invalid_signatures_do_not_count() -> None:
    signers, trusted = _keys(2)
    outsider, _ = _keys(1)
    payload = {"table": 1}
    forged = Signature(key_id=signers[1].key_id, sig=signers[0].sign(payload).sig)
    with pytest.raises(ThresholdNotMet) as info:
        verify_threshold(payload, [signers[0].sign(payload), forged, outsider[0].sign(payload)], trusted, 2,
                         "controller")
    assert str(info.value) == "1 of 2 required valid controller signatures; 1 by unknown keys, 1 invalid"


def test_keystore_writes_0600_and_refuses_wide_permissions(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys")
    store.ensure("node.1101.tehran")
    path = store.path("node.1101.tehran")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    first = key_id(store.load("node.1101.tehran").public_key())
    store.ensure("node.1101.tehran")
    assert key_id(store.load("node.1101.tehran").public_key()) == first, "existing keys are kept"
    path.chmod(0o644)
    with pytest.raises(IdentityError, match="must be 0600"):
        store.load("node.1101.tehran")


def test_trust_root_lists_keys_per_role(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys")
    root = store.build_trust_root(["controller.tehran", "controller.isfahan", "gateway.tehran"])
    assert len(root.keys(Role.CONTROLLER)) == 2
    kid, _ = root.key_of("gateway.tehran")
    assert root.component_of(Role.GATEWAY, kid) == "gateway.tehran"
    again = TrustRoot.model_validate_json(root.model_dump_json())
    assert again == root
    with pytest.raises(IdentityError, match="no trusted key"):
        root.key_of("gateway.mashhad")
    with pytest.raises(IdentityError, match="does not start with a role"):
        store.ensure("intruder.x")
