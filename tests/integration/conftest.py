"""Real national systems for integration tests: supervisord, SeaweedFS, nodes, gateways, links.

One system per session serves the tests that leave it healthy; destructive tests start a
small one of their own. Every system is stopped by PID at teardown, even after a failure,
and the session fails if any process a test started is still alive.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from paydar.bench.up import process_tree
from paydar.infra.local.realizer import Realization, down, up
from tests.helpers import ROOT, write_topology

STARTED_PIDS: set[int] = set()


def _track(realization: Realization) -> None:
    pid = realization.supervisor.pid()
    if pid:
        STARTED_PIDS.update(process_tree(pid))


@contextmanager
def running(config: Path, state: Path) -> Iterator[Realization]:
    """The system of ``config``, up in ``state`` for the block; always brought down (by PID)."""
    realization = up(config, state)
    _track(realization)
    try:
        yield realization
    finally:
        down(state)


@pytest.fixture(scope="session")
def national(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Realization]:
    """The example national system, shared by tests that leave it healthy."""
    with running(ROOT / "national.yaml", tmp_path_factory.mktemp("national")) as realization:
        yield realization


SystemFactory = Callable[..., Realization]


@pytest.fixture()
def start_system(tmp_path: Path) -> Iterator[SystemFactory]:
    """Start a private system (default: one service, 3 regions) that the test may break."""
    started: list[Path] = []

    def start(**overrides: Any) -> Realization:
        overrides.setdefault("services", ["1101"])
        state = tmp_path / f"state{len(started)}"
        config = write_topology(tmp_path / f"national{len(started)}.yaml", **overrides)
        started.append(state)
        realization = up(config, state)
        _track(realization)
        return realization

    yield start
    for state in started:
        down(state)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind() -> Iterator[None]:
    yield
    left = sorted(pid for pid in STARTED_PIDS if _alive(pid))
    assert not left, f"processes started by tests still alive after the session: {left}"
