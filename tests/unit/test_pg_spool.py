"""The WAL spool is the server uid's, and the agent reads it as root: only that uid's regular
files of a WAL file's size leave it, never through a link, never more bytes than were checked;
everything else is dropped without stopping the rest."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from paydar.model.signing import Signer
from paydar.postgres.backup import SEGMENT_BYTES, PgBackups

UID = 810_950
SEGMENT = "000000010000000000000007"


@pytest.fixture()
def spooled(tmp_path: Path) -> tuple[PgBackups, Path, list[tuple[str, bytes]]]:
    if os.getuid() != 0:
        pytest.skip("the spool belongs to another uid: root makes it")
    data = tmp_path / "pg"
    (data / "wal-spool").mkdir(parents=True)
    os.chown(data / "wal-spool", UID, UID)
    uploaded: list[tuple[str, bytes]] = []
    backups = PgBackups(service="7701", region="here", data_dir=data, staging=tmp_path / "staging", db_port=1,
                        password_file=tmp_path / "pw", signer=Signer(Ed25519PrivateKey.generate()),
                        vault=("http://127.0.0.1:1", tmp_path / "identity"), epoch=lambda: 3,
                        compromised=lambda: None, uid=UID, generation=lambda: "0123456789ab")

    def put(key: str, path: Path, _content_type: str) -> str:
        uploaded.append((key, path.read_bytes()))
        return f"v{len(uploaded)}"

    backups._put = lambda: put  # type: ignore[method-assign]  # the vault's side is tested on a real vault
    return backups, data / "wal-spool", uploaded


def _plant(spool: Path, name: str, content: bytes = b"", size: int | None = None) -> Path:
    path = spool / name
    with path.open("wb") as out:
        out.write(content)
        if size is not None:
            out.truncate(size)
    os.chown(path, UID, UID)
    return path


def test_only_the_servers_own_wal_files_leave_the_spool(spooled: tuple[PgBackups, Path, list[tuple[str, bytes]]],
                                                        tmp_path: Path) -> None:
    backups, spool, uploaded = spooled
    _plant(spool, SEGMENT, b"W" * SEGMENT_BYTES)
    _plant(spool, "000000010000000000000008", size=1024 ** 3)  # sparse, a GiB: not a segment's size
    secret = tmp_path / "root-only"
    secret.write_text("root's secret")
    (spool / "000000010000000000000009").symlink_to(secret)  # a link under a WAL name
    _plant(spool, "00000002.history", b"1\t0/3000000\tno recovery target specified\n")
    stranger = spool / "00000003.history"
    stranger.write_text("not the server's")  # root's own file in the spool: not the uid's
    _plant(spool, "notes.txt", b"ignored")
    assert backups.archive_spooled() == 2
    assert sorted(k for k, _ in uploaded if "/wal/" in k) == [
        "here/wal/0123456789ab/000000010000000000000007", "here/wal/0123456789ab/00000002.history"]
    assert all(b"root's secret" not in body for _, body in uploaded), "no link is ever followed"
    assert sorted(os.listdir(spool)) == ["notes.txt"], "what was uploaded or refused left the spool"
    assert secret.read_text() == "root's secret", "the link's target is untouched"


def test_a_file_that_grows_after_its_check_is_read_no_further(
        spooled: tuple[PgBackups, Path, list[tuple[str, bytes]]]) -> None:
    backups, spool, uploaded = spooled
    path = _plant(spool, SEGMENT + ".partial", b"P" * 1000)
    original = os.fstat

    def grow_after_the_check(fd: int) -> os.stat_result:
        seen = original(fd)
        if seen.st_size == 1000:  # the spooled file, checked: now the uid writes on
            with path.open("ab") as more:
                more.write(b"X" * 5000)
        return seen

    os.fstat = grow_after_the_check
    try:
        assert backups.archive_spooled() == 1
    finally:
        os.fstat = original
    [(_, body)] = [(k, b) for k, b in uploaded if "/wal/" in k]
    assert body == b"P" * 1000, "exactly the bytes that were checked"
