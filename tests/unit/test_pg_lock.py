"""A stale ``postmaster.pid`` (its server killed with its agent, reaped late or never by init) is
removed before a start, and only when its holder can no longer be the server."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from paydar.postgres.server import Holder, PgServer, stale_lock


def test_the_reasons_a_lock_is_stale() -> None:
    assert stale_lock(None, None, 810_000) == "the lock file names no process"
    assert stale_lock(41, None, 810_000) == "process 41 is gone"
    assert "zombie" in (stale_lock(41, Holder(state="Z", uid=810_000), 810_000) or "")
    assert "PID was reused" in (stale_lock(41, Holder(state="S", uid=0), 810_000) or "")
    assert stale_lock(41, Holder(state="S", uid=810_000), 810_000) is None, "a live server of its uid is kept"


def _server(tmp_path: Path, uid: int) -> PgServer:
    (tmp_path / "data" / "db").mkdir(parents=True)
    return PgServer(data_dir=tmp_path / "data", conf_dir=tmp_path / "conf", port=5432, uid=uid, state_dir=tmp_path)


def _lock(server: PgServer, pid: int) -> Path:
    path = server.data_dir / "db" / "postmaster.pid"
    path.write_text(f"{pid}\n/tmp/pgdata/db\n1796160000\n5432\n")
    return path


def test_a_lock_held_by_a_zombie_is_removed(tmp_path: Path) -> None:
    child = subprocess.Popen(["true"])
    try:
        deadline = time.monotonic() + 10
        while "State:\tZ" not in Path(f"/proc/{child.pid}/status").read_text():
            assert time.monotonic() < deadline, "the child exited (and is not reaped yet)"
            time.sleep(0.01)
        server = _server(tmp_path, os.getuid())
        lock = _lock(server, child.pid)
        assert "zombie" in (server.clear_stale_lock() or "")
        assert not lock.exists()
    finally:
        child.wait(5)


def test_a_lock_held_by_a_live_server_of_its_uid_is_kept_and_one_of_another_uid_removed(tmp_path: Path) -> None:
    ours = _server(tmp_path / "ours", os.getuid())
    lock = _lock(ours, os.getpid())
    assert ours.clear_stale_lock() is None and lock.exists()
    theirs = _server(tmp_path / "theirs", 810_000)
    lock = _lock(theirs, os.getpid())
    assert "PID was reused" in (theirs.clear_stale_lock() or "") and not lock.exists()


def test_no_lock_and_a_symlinked_lock_change_nothing(tmp_path: Path) -> None:
    server = _server(tmp_path, 810_000)
    assert server.clear_stale_lock() is None
    target = tmp_path / "elsewhere"
    target.write_text("41\n")
    (server.data_dir / "db" / "postmaster.pid").symlink_to(target)
    assert server.clear_stale_lock() is None, "a lock planted as a symlink is never followed"
    assert target.exists()
