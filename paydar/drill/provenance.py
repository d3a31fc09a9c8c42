"""Which Paydar produced a report: its version and, from a git checkout, its commit.

Evidence must say what was drilled with what; an installed copy without ``.git`` says so
rather than guessing.
"""

from __future__ import annotations

import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

__all__ = ["provenance"]

SOURCE = Path(__file__).resolve().parents[2]
GIT_TIMEOUT = 5.0


def provenance() -> dict[str, str]:
    """``paydar_version`` and ``paydar_commit`` (with ``+dirty`` when the checkout has uncommitted changes)."""
    try:
        installed = version("paydar")
    except PackageNotFoundError:
        installed = "unknown (not installed)"
    return {"paydar_version": installed, "paydar_commit": _commit()}


def _commit() -> str:
    if not (SOURCE / ".git").exists():
        return "unknown (not a git checkout)"
    try:
        head = subprocess.run(["git", "-C", str(SOURCE), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=GIT_TIMEOUT, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(SOURCE), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=GIT_TIMEOUT, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (git did not answer)"
    return head + ("+dirty" if dirty else "")
