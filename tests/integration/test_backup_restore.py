"""Backups, ransomware detection and verified restore on a real national system and real SeaweedFS.

The module's shared system (services 1101 and 2204) is left healthy by every test that uses
it: refusals restore into a scratch directory (``into``), never into a node. The tests that
break a node start a system of their own.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from paydar.infra.local.realizer import Realization
from paydar.model.signing import Signer
from paydar.ops.backups import backup_now, list_vault
from paydar.ops.restore import RestoreFailed, restore
from paydar.vault.manifest import BackupManifest, SignedManifest, manifest_key
from paydar.vault.restore import RestoreRefused
from paydar.vault.s3 import S3Client, error_code, load_identity, vault_client
from tests.helpers import (
    SERVICE,
    assert_history_holds,
    document,
    http,
    node_state,
    state,
    wait_failover_from,
    wait_until,
    write_topology,
    writers,
)
from tests.integration.conftest import SystemFactory, running

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


FAST_CHECKS = {"storage": {"integrity_interval": "1s", "backup_interval": "1h"}}
DETECTION_TIMEOUT = 1.0 + 5.0  # one integrity interval, plus a generous margin for a loaded CI machine


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Realization]:
    root = tmp_path_factory.mktemp("backups")
    config = write_topology(root / "national.yaml", services=["1101", "2204"], **FAST_CHECKS)
    with running(config, root / "state") as realization:
        yield realization


def client_of(system: Realization, region: str | None) -> S3Client:
    """The vault as a region's nodes see it, or as the operator (``None``: admin)."""
    identity = system.vault_admin() if region is None else load_identity(system.layout.vault_region(region))
    return vault_client(system.plan.vault.endpoint, identity)


def back_up(system: Realization, service: str, region: str) -> BackupManifest:
    [outcome] = backup_now(system, [f"node.{service}.{region}"])
    assert outcome.manifest is not None, outcome.error
    return outcome.manifest


def write(system: Realization, n: int, tag: str, service: str = SERVICE) -> dict[str, Any]:
    status, body, _ = http("PUT", system.plan.gateway("isfahan").url + f"/v1/services/{service}/documents/{tag}-{n}",
                           document(n, tag))
    assert status == 200 and body["acknowledged"] is True, body
    return body


def s3_refusal(call: Callable[[], object]) -> str:
    with pytest.raises(ClientError) as refused:
        call()
    return error_code(refused.value)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- the vault's guarantees with one region's credentials ----------------------------------


def test_region_credentials_cannot_delete_overwrite_or_shorten_a_backup(system: Realization) -> None:
    write(system, 1, "locked")
    m = back_up(system, SERVICE, "tehran")
    tehran, admin = client_of(system, "tehran"), client_of(system, None)
    original = admin.get_object_retention(Bucket=m.bucket, Key=m.key, VersionId=m.version_id)["Retention"]
    assert original["Mode"] == "COMPLIANCE"

    assert s3_refusal(lambda: tehran.delete_object(Bucket=m.bucket, Key=m.key, VersionId=m.version_id)) \
        == "AccessDenied"
    sooner = datetime.now(UTC) + timedelta(minutes=5)
    assert s3_refusal(lambda: tehran.put_object_retention(
        Bucket=m.bucket, Key=m.key, VersionId=m.version_id, BypassGovernanceRetention=True,
        Retention={"Mode": "COMPLIANCE", "RetainUntilDate": sooner})) == "AccessDenied"
    # S3 has no error for a PUT on an existing key of a versioned bucket: it stacks a new
    # version. The backed-up version stays as it was, and the manifest pins it.
    overwritten = tehran.put_object(Bucket=m.bucket, Key=m.key, Body=b"ransom note")["VersionId"]
    assert overwritten != m.version_id

    kept = admin.get_object(Bucket=m.bucket, Key=m.key, VersionId=m.version_id)["Body"].read()
    assert (len(kept), sha256(kept)) == (m.size, m.sha256)
    assert admin.get_object_retention(Bucket=m.bucket, Key=m.key, VersionId=m.version_id)["Retention"] == original


def test_region_credentials_cannot_touch_another_regions_backups(system: Realization) -> None:
    m = back_up(system, SERVICE, "isfahan")
    tehran = client_of(system, "tehran")
    refusals = {
        "read": s3_refusal(lambda: tehran.get_object(Bucket=m.bucket, Key=m.key, VersionId=m.version_id)),
        "overwrite": s3_refusal(lambda: tehran.put_object(Bucket=m.bucket, Key=m.key, Body=b"evil")),
        "plant": s3_refusal(lambda: tehran.put_object(Bucket=m.bucket, Key="isfahan/manifests/x.json", Body=b"{}")),
        "delete": s3_refusal(lambda: tehran.delete_object(Bucket=m.bucket, Key=m.key)),
        "list": s3_refusal(lambda: tehran.list_objects_v2(Bucket=m.bucket, Prefix="isfahan/")),
    }
    assert refusals == dict.fromkeys(refusals, "AccessDenied")
    latest = client_of(system, None).head_object(Bucket=m.bucket, Key=m.key)
    assert latest["VersionId"] == m.version_id


# --- restore refuses what it can't prove ----------------------------------------------------


def ignored(system: Realization, tmp_path: Path, genuine: BackupManifest) -> str:
    """Restore a copy: it must be the genuine newest backup; return the problems `backups list`
    reports for the manifests that were passed over."""
    report = restore(system, SERVICE, "tehran", into=tmp_path / "copy")
    assert report.manifest == genuine, "restore used something other than the newest genuine backup"
    return " | ".join(str(e.problem) for e in list_vault(system, SERVICE, "tehran")["tehran"] if e.problem)


def put_manifest(system: Realization, signed: SignedManifest, created_ms: int) -> None:
    m = signed.manifest
    client_of(system, None).put_object(Bucket=m.bucket, Key=manifest_key(m.region, created_ms, m.position),
                                       Body=signed.model_dump_json().encode())


def test_restore_passes_over_a_tampered_manifest(system: Realization, tmp_path: Path) -> None:
    m = back_up(system, SERVICE, "tehran")
    signed = SignedManifest.parse(client_of(system, None).get_object(
        Bucket=m.bucket, Key=manifest_key(m.region, m.created_ms, m.position))["Body"].read(), "manifest")
    forged = SignedManifest(manifest=m.model_copy(update={"position": m.position + 5}), signature=signed.signature)
    put_manifest(system, forged, m.created_ms + 1)
    assert "changed after node.1101.tehran signed it" in ignored(system, tmp_path, m)
    listed = list_vault(system, SERVICE, "tehran")["tehran"]
    assert listed[0].problem and listed[1].verified == m


def test_restore_never_uses_a_swapped_object(system: Realization, tmp_path: Path) -> None:
    m = back_up(system, SERVICE, "tehran")
    # An attacker with tehran's vault credentials swaps the snapshot for another store...
    other = client_of(system, None).get_object(Bucket=m.bucket, Key=m.key, VersionId=m.version_id)["Body"].read()
    swapped = client_of(system, "tehran").put_object(Bucket=m.bucket, Key=m.key, Body=other[:-4096] + bytes(4096))
    # ... the genuine manifest still pins the backed-up version: that is what is restored.
    report = restore(system, SERVICE, "tehran", into=tmp_path / "genuine")
    with sqlite3.connect(report.path) as db:
        head = db.execute("SELECT position, hash FROM log ORDER BY position DESC LIMIT 1").fetchone()
    assert report.manifest == m and tuple(head) == (m.position, m.chain_head)
    # A manifest re-pointed at the swapped version no longer carries a valid signature.
    signed = SignedManifest.parse(client_of(system, None).get_object(
        Bucket=m.bucket, Key=manifest_key(m.region, m.created_ms, m.position))["Body"].read(), "manifest")
    repointed = SignedManifest(manifest=m.model_copy(update={"version_id": swapped["VersionId"]}),
                               signature=signed.signature)
    put_manifest(system, repointed, m.created_ms + 1)
    assert "changed after" in ignored(system, tmp_path / "repointed", m)


def test_restore_passes_over_a_manifest_signed_by_a_foreign_key(system: Realization, tmp_path: Path) -> None:
    m = back_up(system, SERVICE, "tehran")
    put_manifest(system, SignedManifest.seal(m, Signer(Ed25519PrivateKey.generate())), m.created_ms + 1)
    assert "signed by unknown key" in ignored(system, tmp_path, m)


def test_restore_passes_over_a_backup_of_another_service(system: Realization, tmp_path: Path) -> None:
    theirs = back_up(system, "2204", "tehran")
    admin = client_of(system, None)
    signed = admin.get_object(Bucket=theirs.bucket, Key=manifest_key("tehran", theirs.created_ms, theirs.position))
    admin.put_object(Bucket="paydar-1101", Key=manifest_key("tehran", theirs.created_ms + 1, theirs.position),
                     Body=signed["Body"].read())
    assert "is for service 2204" in ignored(system, tmp_path, back_up(system, SERVICE, "tehran"))


def test_region_credentials_cannot_roll_a_restore_back(system: Realization, tmp_path: Path) -> None:
    """With tehran's own vault credentials: an older genuine manifest copied over the newest
    key, planted under a later-sorting name, and a stack of junk versions on the newest key."""
    write(system, 1, "rollback-a")
    old = back_up(system, SERVICE, "tehran")
    write(system, 2, "rollback-b")
    new = back_up(system, SERVICE, "tehran")
    assert old.position < new.position
    tehran, admin = client_of(system, "tehran"), client_of(system, None)
    old_key = manifest_key("tehran", old.created_ms, old.position)
    old_raw = admin.get_object(Bucket=old.bucket, Key=old_key)["Body"].read()
    newest_key = manifest_key("tehran", new.created_ms, new.position)
    tehran.put_object(Bucket=new.bucket, Key=newest_key, Body=old_raw)
    for n in range(10):  # more than the versions tried per key: the node's own version is still tried first
        tehran.put_object(Bucket=new.bucket, Key=newest_key, Body=b"junk %d" % n)
    report = restore(system, SERVICE, "tehran", into=tmp_path / "newest")
    assert report.manifest == new, "the newest genuine backup is restored, not the older copy"
    listed = list_vault(system, SERVICE, "tehran")["tehran"]
    assert next(e.verified for e in listed if e.verified) == new
    later = manifest_key("tehran", new.created_ms + 1, old.position)
    future = manifest_key("tehran", new.created_ms + 10**9, old.position)  # 11 days ahead: no node writes it
    for key in (later, future):
        tehran.put_object(Bucket=new.bucket, Key=key, Body=old_raw)
    assert restore(system, SERVICE, "tehran", into=tmp_path / "still-newest").manifest == new, \
        "a later-sorting name does not make an older backup the newest: manifests are ordered by signed fields"
    by_key = {e.key: e for e in list_vault(system, SERVICE, "tehran")["tehran"]}
    assert later in by_key and by_key[later].verified is None and "not its own key" in str(by_key[later].problem), \
        "`backups list` does not call the planted copy verified"
    assert future not in by_key, "a name dated in the future is passed over"


def test_point_in_time_restore_returns_exactly_what_was_acknowledged_up_to_that_position(
        system: Realization, tmp_path: Path) -> None:
    before = [write(system, n, "pitr-a") for n in range(5)]
    first = back_up(system, SERVICE, "mashhad")
    after = [write(system, n, "pitr-b") for n in range(5)]
    second = back_up(system, SERVICE, "mashhad")
    assert first.position < second.position

    report = restore(system, SERVICE, "mashhad", position=second.position - 1, into=tmp_path / "pitr")
    assert report.manifest == first
    with sqlite3.connect(report.path) as db:
        log = dict(db.execute("SELECT position, hash FROM log"))
        docs = dict(db.execute("SELECT doc_id, position FROM documents"))
    assert max(log) == first.position and log[first.position] == first.chain_head
    primary = system.plan.node(SERVICE, "tehran").url
    assert http("GET", f"{primary}/v1/chain/{first.position}")[1]["hash"] == first.chain_head
    assert {d["doc_id"]: d["position"] for d in before}.items() <= docs.items()
    assert not {d["doc_id"] for d in after} & set(docs)


# --- ransomware, detection, restore and rejoin ------------------------------------------------


def start_fast(start_system: SystemFactory) -> Realization:
    return start_system(**FAST_CHECKS)


def wait_compromised(system: Realization, region: str) -> str:
    return wait_until(lambda: str(node_state(system, region)["compromised"] or ""), DETECTION_TIMEOUT,
                      f"node.{SERVICE}.{region} to report itself compromised")


def wait_rejoined(system: Realization, region: str) -> None:
    wait_until(lambda: len({node_state(system, r)["chain_head"] for r in system.topology.region_names}) == 1,
               30, "every replica to converge on one chain head")
    after = node_state(system, region)
    assert after["role"] == "standby" and after["compromised"] is None


def test_wiped_standby_is_restored_with_the_primarys_chain_and_catches_up(start_system: SystemFactory) -> None:
    system = start_fast(start_system)
    with writers(system, ("isfahan", "mashhad")) as workload:
        wait_until(lambda: workload.acknowledged >= 20, 20, "writes before the backup")
        m = back_up(system, SERVICE, "isfahan")
        wait_until(lambda: workload.acknowledged >= m.position + 20, 20, "writes after the backup")
        for path in system.layout.data(f"node.{SERVICE}.isfahan").iterdir():
            path.unlink()
        assert "database unusable" in wait_compromised(system, "isfahan")
        report = restore(system, SERVICE, "isfahan")
        assert report.manifest == m
        primary = system.plan.node(SERVICE, "tehran").url
        assert http("GET", f"{primary}/v1/chain/{m.position}")[1]["hash"] == m.chain_head
        assert report.caught_up_position is not None and report.target_position is not None
        assert report.caught_up_position >= report.target_position > m.position
    wait_rejoined(system, "isfahan")  # heads converge once the writers stop
    assert_history_holds(system, workload, ("isfahan", "mashhad"))


def test_random_bytes_over_the_primarys_database_fail_over_and_the_node_is_restored(
        start_system: SystemFactory) -> None:
    system = start_fast(start_system)
    survivors = ("isfahan", "mashhad")
    with writers(system, survivors) as workload:
        wait_until(lambda: workload.acknowledged >= 20, 20, "writes before the backup")
        back_up(system, SERVICE, "tehran")
        # Encrypt every file of the store in place (database, WAL, shared index), as ransomware does.
        for path in system.layout.data(f"node.{SERVICE}.tehran").glob("registry.sqlite3*"):
            with path.open("r+b") as victim:
                victim.write(os.urandom(path.stat().st_size))
        wait_compromised(system, "tehran")
        wait_failover_from(system, "tehran", "isfahan")
        before = workload.acknowledged
        wait_until(lambda: workload.acknowledged > before + 20, 30, "writes after the failover")
        restore(system, SERVICE, "tehran")
    # Heads converge once the writers stop: while they write, an asynchronous standby may
    # always be a few entries behind at the instant it is asked.
    wait_rejoined(system, "tehran")
    assert_history_holds(system, workload, system.topology.region_names)


def test_one_silently_changed_record_is_detected_never_served_and_restored(start_system: SystemFactory) -> None:
    system = start_fast(start_system)
    written = [write(system, n, "quiet") for n in range(10)]
    back_up(system, SERVICE, "mashhad")
    victim = written[3]
    with sqlite3.connect(system.layout.data(f"node.{SERVICE}.mashhad") / "registry.sqlite3") as db:
        body = db.execute("SELECT body FROM log WHERE position = ?", (victim["position"],)).fetchone()[0]
        db.execute("UPDATE log SET body = ? WHERE position = ?",
                   (body.replace('"quiet"', '"forged"'), victim["position"]))
    assert "does not match its hash" in wait_compromised(system, "mashhad")
    status, body, _ = http("GET", system.plan.node(SERVICE, "mashhad").url + f"/v1/documents/{victim['doc_id']}")
    assert status == 503 and "forged" not in str(body)
    for region in system.topology.region_names:
        status, body, _ = http("GET", system.plan.gateway(region).url +
                               f"/v1/services/{SERVICE}/documents/{victim['doc_id']}")
        assert status == 200 and body["data"] == {"tag": "quiet", "n": 3}, (region, body)
    # Excluded from promotion: the controllers refuse to make the compromised replica primary.
    from paydar.ops.failover import FailoverRefused, promote
    with pytest.raises(FailoverRefused, match="integrity"):
        promote(system, SERVICE, "mashhad")
    restore(system, SERVICE, "mashhad")
    wait_rejoined(system, "mashhad")
    status, body, _ = http("GET", system.plan.node(SERVICE, "mashhad").url + f"/v1/documents/{victim['doc_id']}")
    assert status == 200 and body["data"] == {"tag": "quiet", "n": 3}


def test_restore_refuses_the_writable_primary_and_changes_nothing(system: Realization) -> None:
    back_up(system, SERVICE, "tehran")
    before = state(system, f"node.{SERVICE}.tehran")
    with pytest.raises(RestoreRefused, match=r"writable primary of service 1101.*Fail over first"):
        restore(system, SERVICE, "tehran")
    after = state(system, f"node.{SERVICE}.tehran")
    assert (after["role"], after["epoch"], after["compromised"]) == (before["role"], before["epoch"], None)


def test_restore_refuses_bytes_that_do_not_match_even_a_validly_signed_manifest(
        system: Realization, tmp_path: Path) -> None:
    # The worst case: the node's own key is stolen too. The attacker signs a manifest naming
    # their swapped object but keeps the original hash: the bytes still give them away.
    m = back_up(system, SERVICE, "tehran")
    swapped = client_of(system, "tehran").put_object(Bucket=m.bucket, Key=m.key, Body=b"\0" * m.size)
    stolen_key = system.keystore().signer(f"node.{SERVICE}.tehran")
    planted = m.model_copy(update={"version_id": swapped["VersionId"], "created_ms": m.created_ms + 1})
    put_manifest(system, SignedManifest.seal(planted, stolen_key), planted.created_ms)
    with pytest.raises(RestoreRefused) as refused:  # it verifies, under its own key, and is the newest: the bytes
        restore(system, SERVICE, "tehran", into=tmp_path / "copy")
    assert "SHA-256" in str(refused.value) and "not the one that was backed up" in str(refused.value)
    assert not (tmp_path / "copy" / "registry.sqlite3").exists()


def test_a_restore_that_does_not_rejoin_puts_the_node_back_as_it_was(system: Realization) -> None:
    m = back_up(system, SERVICE, "mashhad")
    write(system, 1, "after-backup")
    before = wait_until(lambda: (s := node_state(system, "mashhad"))["log_position"] > m.position and s, 10,
                        "mashhad to hold a write newer than its backup")
    with pytest.raises(RestoreFailed, match="previous data was put back"):
        restore(system, SERVICE, "mashhad", rejoin_timeout=0.0)
    after = wait_until(lambda: (s := node_state(system, "mashhad"))["role"] == "standby" and s, 20,
                       "mashhad to serve again")
    assert after["compromised"] is None and after["log_position"] >= before["log_position"]
    assert http("GET", system.plan.node(SERVICE, "mashhad").url + f"/v1/chain/{before['log_position']}")[1]["hash"] \
        == before["chain_head"]


def test_region_credentials_can_neither_hide_nor_replace_a_manifest(system: Realization, tmp_path: Path) -> None:
    m = back_up(system, SERVICE, "tehran")
    key = manifest_key("tehran", m.created_ms, m.position)
    tehran = client_of(system, "tehran")
    tehran.put_object(Bucket=m.bucket, Key=key, Body=b'{"not": "a manifest"}')
    assert tehran.delete_object(Bucket=m.bucket, Key=key)["DeleteMarker"] is True
    listed = list_vault(system, SERVICE, "tehran")["tehran"]
    assert (listed[0].key, listed[0].verified) == (key, m)
    assert restore(system, SERVICE, "tehran", into=tmp_path / "copy").manifest == m
