"""Backup manifests: what verifies, what is refused and why, and which backup a restore picks."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from paydar.model.identity import KeyStore, TrustRoot
from paydar.model.signing import Signer
from paydar.node.snapshot import take_snapshot
from paydar.node.store import DocumentStore, verify_file
from paydar.postgres.backup import WAL_NAME, expected_size, wal_start
from paydar.vault.manifest import (
    PG_BASE_FORMAT,
    PG_WAL_FORMAT,
    BackupManifest,
    ManifestRejected,
    SignedManifest,
    manifest_key,
    own_manifest_key,
    snapshot_key,
    wal_key,
)
from paydar.vault.restore import Listed, NoBackup, RestoreRefused, choose
from paydar.vault.snapshot import SnapshotFailed

NODE = "node.1101.tehran"


@pytest.fixture()
def keys(tmp_path: Path) -> tuple[KeyStore, TrustRoot]:
    store = KeyStore(tmp_path / "keys")
    return store, store.build_trust_root([NODE, "node.2204.tehran"])


def manifest(position: int = 10, created_ms: int = 1_700_000_000_000, service: str = "1101") -> BackupManifest:
    return BackupManifest(service=service, region="tehran", node=f"node.{service}.tehran", epoch=1,
                          position=position, chain_head="a" * 64, size=4096, sha256="b" * 64, created_ms=created_ms,
                          bucket=f"paydar-{service}", key=snapshot_key("tehran", created_ms, position),
                          version_id="v1")


def test_a_manifest_signed_by_its_node_verifies(keys: tuple[KeyStore, TrustRoot]) -> None:
    store, trust = keys
    signed = SignedManifest.seal(manifest(), store.signer(NODE))
    parsed = SignedManifest.parse(signed.model_dump_json().encode(), "m.json")
    assert parsed.verified(trust, service="1101", bucket="paydar-1101") == manifest()


@pytest.mark.parametrize(("change", "reason"), [
    ({"position": 11}, "changed after node.1101.tehran signed it"),
    ({"sha256": "c" * 64}, "changed after"),
    ({"version_id": "v2"}, "changed after"),
])
def test_any_changed_field_breaks_the_signature(keys: tuple[KeyStore, TrustRoot], change: dict[str, object],
                                                reason: str) -> None:
    store, trust = keys
    signed = SignedManifest.seal(manifest(), store.signer(NODE))
    forged = SignedManifest(manifest=signed.manifest.model_copy(update=change), signature=signed.signature)
    with pytest.raises(ManifestRejected, match=reason):
        forged.verified(trust, service="1101", bucket="paydar-1101")


def test_foreign_key_other_service_and_stray_keys_are_refused(keys: tuple[KeyStore, TrustRoot]) -> None:
    store, trust = keys
    with pytest.raises(ManifestRejected, match="signed by unknown key"):
        SignedManifest.seal(manifest(), Signer(Ed25519PrivateKey.generate())).verified(
            trust, service="1101", bucket="paydar-1101")
    theirs = SignedManifest.seal(manifest(service="2204"), store.signer("node.2204.tehran"))
    with pytest.raises(ManifestRejected, match="is for service 2204"):
        theirs.verified(trust, service="1101", bucket="paydar-1101")
    outside = manifest().model_copy(update={"key": "isfahan/snapshots/x.sqlite3"})
    with pytest.raises(ManifestRejected, match="outside tehran/snapshots/"):
        SignedManifest.seal(outside, store.signer(NODE)).verified(trust, service="1101", bucket="paydar-1101")


@pytest.mark.parametrize(("raw", "reason"), [
    (b"not json", "not a valid manifest"),
    (b'{"manifest": {}, "signature": {}}', "not a valid manifest"),
    (b" " * 20_000, "is not a manifest"),
])
def test_garbage_is_not_a_manifest(raw: bytes, reason: str) -> None:
    with pytest.raises(ManifestRejected, match=reason):
        SignedManifest.parse(raw, "m.json")


def test_keys_sort_by_time() -> None:
    assert manifest_key("tehran", 9_000, 5) < manifest_key("tehran", 10_000, 1)
    assert snapshot_key("tehran", 1, 2).startswith("tehran/snapshots/")


def listing(*entries: tuple[int, int, str | None]) -> list[Listed]:
    """(position, created_ms, problem) newest first, as list_backups returns them."""
    return [Listed(manifest_key("tehran", c, p), manifest(p, c), problem) for p, c, problem in entries]


def test_choose_picks_the_newest_at_or_before_the_target() -> None:
    listed = listing((30, 3_000_000, None), (20, 2_000_000, None), (10, 1_000_000, None))
    assert choose(listed, service="1101", region="tehran").position == 30
    assert choose(listed, service="1101", region="tehran", position=29).position == 20
    at = manifest(20, 2_000_000).created + timedelta(milliseconds=1)
    assert choose(listed, service="1101", region="tehran", at=at).position == 20
    with pytest.raises(NoBackup, match="at or before position 5"):
        choose(listed, service="1101", region="tehran", position=5)


def test_choose_never_takes_an_unverified_manifest_whatever_it_claims() -> None:
    listed = listing((10**9, 9_000_000, "signed by unknown key"), (20, 2_000_000, None), (30, 1_000_000, None))
    assert choose(listed, service="1101", region="tehran").position == 30, \
        "the newest by signed position, not by key name, and never the unverified claim"
    with pytest.raises(RestoreRefused, match=r"no backup .* verifies; refusing .*: signed by unknown key"):
        choose(listing((30, 3_000_000, "signed by unknown key")), service="1101", region="tehran")


def test_snapshot_is_consistent_and_verified_and_refuses_tampered_data(tmp_path: Path) -> None:
    store = DocumentStore(tmp_path / "db.sqlite3", "1101")
    for n in range(20):
        store.append(epoch=1, doc_id=f"d{n}", body='{"citizen_id": "0000000001"}', written_ms=n)
    snapshot = take_snapshot(tmp_path / "db.sqlite3", tmp_path / "snap.sqlite3", "1101")
    assert (snapshot.position, snapshot.chain_head) == store.head()
    assert verify_file(tmp_path / "snap.sqlite3", "1101").ok
    assert not verify_file(tmp_path / "snap.sqlite3", "2204").ok  # the chain binds the service
    with sqlite3.connect(tmp_path / "db.sqlite3") as attacker:
        attacker.execute("UPDATE log SET body = '{\"citizen_id\": \"0000000002\"}' WHERE position = 7")
    with pytest.raises(SnapshotFailed, match="does not verify at position 7"):
        take_snapshot(tmp_path / "db.sqlite3", tmp_path / "snap2.sqlite3", "1101")
    assert not (tmp_path / "snap2.sqlite3").exists()
    store.close()


def test_verify_file_judges_unreadable_files_without_raising(tmp_path: Path) -> None:
    assert "database unusable" in verify_file(tmp_path / "missing.sqlite3", "1101").reason
    (tmp_path / "random.sqlite3").write_bytes(b"\x8f" * 8192)
    assert "database unusable" in verify_file(tmp_path / "random.sqlite3", "1101").reason


def test_a_wal_files_manifest_lives_under_its_own_name_and_points_only_into_its_regions_wal(
        keys: tuple[KeyStore, TrustRoot]) -> None:
    store, trust = keys
    name, life = "000000020000000000000003", "0123456789ab"
    wal = manifest().model_copy(update={"format": PG_WAL_FORMAT, "key": wal_key("tehran", life, name),
                                        "generation": life})
    assert own_manifest_key(wal) == f"tehran/wal-manifests/{life}/{name}.json"
    assert SignedManifest.seal(wal, store.signer(NODE)).verified(trust, service="1101", bucket="paydar-1101") == wal
    for key in ("tehran/snapshots/x.sqlite3", f"isfahan/wal/{life}/{name}", f"tehran/wal/{life}/../x",
                f"tehran/wal/ba9876543210/{name}", f"tehran/wal/{life}/"):
        stray = wal.model_copy(update={"key": key})
        with pytest.raises(ManifestRejected, match=f"outside tehran/wal/{life}/"):
            SignedManifest.seal(stray, store.signer(NODE)).verified(trust, service="1101", bucket="paydar-1101")
    lifeless = wal.model_copy(update={"generation": None, "key": f"tehran/wal/None/{name}"})
    with pytest.raises(ManifestRejected, match="without its generation"):
        SignedManifest.seal(lifeless, store.signer(NODE)).verified(trust, service="1101", bucket="paydar-1101")
    base = manifest().model_copy(update={"format": PG_BASE_FORMAT, "generation": life,
                                         "key": snapshot_key("tehran", 1, 10, PG_BASE_FORMAT)})
    assert base.key.endswith(".tar") and own_manifest_key(base) == manifest_key("tehran", base.created_ms, 10)
    with pytest.raises(ValueError, match="format"):
        BackupManifest.model_validate(manifest().model_dump() | {"format": "exe"})


@pytest.mark.parametrize(("name", "start"), [
    ("000000010000000000000001", 16 * 1024 * 1024),
    ("0000000300000002000000FF", (2 << 32) + 0xFF * 16 * 1024 * 1024),
    ("00000004.history", 0),
])
def test_a_wal_file_starts_where_its_name_says(name: str, start: int) -> None:
    assert WAL_NAME.fullmatch(name) and wal_start(name) == start


@pytest.mark.parametrize("name", ["../etc/passwd", "00000001000000000000000", "000000010000000000000001.exe",
                                  ".000000010000000000000001.part", "archive_status",
                                  "000000010000000000000001\n", "ZZZZZZZZZZZZZZZZZZZZZZZZ"])
def test_only_wal_file_names_leave_the_spool(name: str) -> None:
    assert not WAL_NAME.fullmatch(name)


def test_a_spooled_file_must_have_a_wal_files_size() -> None:
    segment = 16 * 1024 * 1024
    assert expected_size("000000010000000000000001") == (segment, segment), "a whole segment, exactly"
    assert expected_size("000000010000000000000001.partial") == (1, segment)
    assert expected_size("00000002.history")[1] == 64 * 1024
