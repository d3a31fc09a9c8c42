"""Evidence bundles: signed by the operator key, checked byte for byte, refused when anything
was altered, added, removed, or signed by a key the verifier does not trust."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from paydar.cli import cli
from paydar.model.signing import Signer, key_id, public_key_to_b64
from paydar.ops import evidence
from paydar.ops.evidence import MANIFEST, SIGNATURE, EvidenceInvalid, verify_bundle, write_bundle

OPERATOR = Ed25519PrivateKey.generate()
TRUSTED = {key_id(OPERATOR.public_key()): OPERATOR.public_key()}


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    (tmp_path / "report.json").write_text(json.dumps({"passed": True}))
    (tmp_path / "journal.json").write_text("{}")
    return write_bundle(tmp_path / "evidence.tar.gz", {"report.json": tmp_path / "report.json",
                                                       "chaos/journals/a.json": tmp_path / "journal.json"},
                        Signer(OPERATOR), {"topology_sha256": "ab" * 32})


def rewrite(source: Path, target: Path, change: dict[str, bytes | None], add: dict[str, bytes] | None = None) -> Path:
    """Copy a bundle, replacing (bytes) or dropping (None) the named members, and adding others."""
    with tarfile.open(source, "r:gz") as old, tarfile.open(target, "w:gz") as new:
        for member in old:
            data = change.get(member.name, old.extractfile(member).read())  # type: ignore[union-attr]
            if data is None:
                continue
            info = tarfile.TarInfo(member.name)
            info.size = len(data)
            new.addfile(info, io.BytesIO(data))
        for name, data in (add or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            new.addfile(info, io.BytesIO(data))
    return target


def test_a_bundle_verifies_against_the_operator_key(bundle: Path) -> None:
    checked = verify_bundle(bundle, TRUSTED)
    assert (checked.files, checked.meta["topology_sha256"]) == (2, "ab" * 32)
    assert checked.key_id == key_id(OPERATOR.public_key())


@pytest.mark.parametrize(("change", "add", "reason"), [
    ({"report.json": b'{"passed": false}'}, None, "1 file(s) altered: report.json"),
    ({"chaos/journals/a.json": None}, None, "1 file(s) missing: chaos/journals/a.json"),
    ({}, {"extra.json": b"{}"}, "1 file(s) not in the signed manifest: extra.json"),
    ({SIGNATURE: None}, None, "holds no evidence.json and evidence.sig.json"),
    ({}, {"report.json": b"{}"}, "'report.json' appears twice"),
])
def test_an_altered_bundle_is_refused_with_what_changed(bundle: Path, tmp_path: Path, change: dict[str, bytes | None],
                                                       add: dict[str, bytes] | None, reason: str) -> None:
    with pytest.raises(EvidenceInvalid, match=reason.replace("(", r"\(").replace(")", r"\)")):
        verify_bundle(rewrite(bundle, tmp_path / "altered.tar.gz", change, add), TRUSTED)


def test_a_rewritten_manifest_no_longer_verifies(bundle: Path, tmp_path: Path) -> None:
    with tarfile.open(bundle, "r:gz") as archive:
        manifest = json.loads(archive.extractfile(MANIFEST).read())  # type: ignore[union-attr]
    manifest["meta"]["topology_sha256"] = "cd" * 32
    forged = rewrite(bundle, tmp_path / "forged.tar.gz", {MANIFEST: json.dumps(manifest).encode()})
    with pytest.raises(EvidenceInvalid, match="signature does not verify"):
        verify_bundle(forged, TRUSTED)


def test_a_bundle_signed_by_another_key_is_not_trusted(tmp_path: Path) -> None:
    (tmp_path / "r.json").write_text("{}")
    other = write_bundle(tmp_path / "other.tar.gz", {"r.json": tmp_path / "r.json"},
                         Signer(Ed25519PrivateKey.generate()), {})
    with pytest.raises(EvidenceInvalid, match="not a trusted operator key"):
        verify_bundle(other, TRUSTED)


def test_links_and_oversized_bundles_are_refused_unread(bundle: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    linked = tmp_path / "link.tar.gz"
    with tarfile.open(linked, "w:gz") as archive:
        info = tarfile.TarInfo("report.json")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/shadow"
        archive.addfile(info)
    with pytest.raises(EvidenceInvalid, match="not a regular file"):
        verify_bundle(linked, TRUSTED)
    monkeypatch.setattr(evidence, "MAX_BYTES", 10)
    with pytest.raises(EvidenceInvalid, match="more than 10 bytes"):
        verify_bundle(bundle, TRUSTED)
    (tmp_path / "junk.tar.gz").write_bytes(b"not gzip")
    with pytest.raises(EvidenceInvalid, match="not a readable evidence bundle"):
        verify_bundle(tmp_path / "junk.tar.gz", TRUSTED)


def test_the_command_checks_with_a_public_key_and_exits_1_when_altered(bundle: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    key = public_key_to_b64(OPERATOR.public_key())
    good = runner.invoke(cli, ["evidence", "verify", str(bundle), "--public-key", key])
    assert good.exit_code == 0 and "verified — 2 files" in good.output
    altered = rewrite(bundle, tmp_path / "altered.tar.gz", {"report.json": b"{}"})
    bad = runner.invoke(cli, ["evidence", "verify", str(altered), "--public-key", key])
    assert bad.exit_code == 1 and "NOT verified: 1 file(s) altered: report.json" in bad.output
    malformed = runner.invoke(cli, ["evidence", "verify", str(bundle), "--public-key", "not-a-key"])
    assert malformed.exit_code == 2 and "no trusted operator key" in malformed.output


def _tar_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_nothing_hides_behind_a_damaged_header(bundle: Path, tmp_path: Path) -> None:
    # Python's tarfile stops silently at a bad header; GNU tar skips it and extracts what follows.
    raw = gzip.decompress(bundle.read_bytes())
    with tarfile.open(fileobj=io.BytesIO(raw)) as archive:
        last = archive.getmembers()[-1]
    end = last.offset_data + -(-last.size // 512) * 512
    hidden = raw[:end] + b"\x01" * 512 + _tar_bytes({"chaos/forged.json": b'{"passed": true}'})
    (tmp_path / "hidden.tar.gz").write_bytes(gzip.compress(hidden))
    with pytest.raises(EvidenceInvalid, match=r"not in the signed manifest: chaos/forged\.json"):
        verify_bundle(tmp_path / "hidden.tar.gz", TRUSTED)


def test_a_header_that_claims_gigabytes_is_refused_before_it_is_read(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(evidence, "MAX_BYTES", 1024 * 1024)
    monkeypatch.setattr(evidence, "MAX_MANIFEST_BYTES", 1024 * 1024)
    long_name = tarfile.TarInfo("././@LongLink")
    long_name.type, long_name.size = tarfile.GNUTYPE_LONGNAME, 8 * 1024 * 1024
    header = long_name.tobuf(format=tarfile.GNU_FORMAT)
    (tmp_path / "bomb.tar.gz").write_bytes(gzip.compress(header + bytes(long_name.size) + bytes(1024)))
    with pytest.raises(EvidenceInvalid, match="not a Paydar evidence bundle"):
        verify_bundle(tmp_path / "bomb.tar.gz", TRUSTED)


def test_the_manifest_on_disk_is_exactly_the_signed_bytes(bundle: Path, tmp_path: Path) -> None:
    with tarfile.open(bundle, "r:gz") as archive:
        raw = archive.extractfile(MANIFEST).read()  # type: ignore[union-attr]
    reordered = json.dumps(json.loads(raw), indent=1).encode()
    with pytest.raises(EvidenceInvalid, match="signature does not verify"):
        verify_bundle(rewrite(bundle, tmp_path / "reordered.tar.gz", {MANIFEST: reordered}), TRUSTED)
