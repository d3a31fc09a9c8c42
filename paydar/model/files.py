"""Small file helpers shared by every component: atomic JSON writes and secrets."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

__all__ = ["fsync_directory", "read_secret", "write_json_atomic", "write_secret", "write_text_atomic"]


def write_json_atomic(path: Path, payload: object, mode: int = 0o644) -> None:
    """Write JSON so that readers never see a half-written file, and durably.

    The directory is fsynced after the rename: without it a crash can bring back the old
    file, and a controller that forgot a vote could sign twice.
    """
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True), mode)


def write_text_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Write ``text`` so that readers never see a half-written file, and durably (see :func:`write_json_atomic`)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_directory(path.parent)


def fsync_directory(directory: Path) -> None:
    """Make a rename or a new file in ``directory`` survive a crash."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_secret(path: Path, nbytes: int = 32) -> str:
    """Create a random token file with mode 0600 unless it exists; return the token."""
    if path.exists():
        return read_secret(path)
    token = secrets.token_urlsafe(nbytes)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(token)
    return token


def read_secret(path: Path) -> str:
    return path.read_text(encoding="ascii").strip()
