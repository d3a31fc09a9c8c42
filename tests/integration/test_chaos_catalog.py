"""The attack catalog, run with plain `chaos run` against a real local national system.

Experiments run in sequence on one system: each one's rollback must leave it healthy for the
next, so a rollback that does not restore the system fails the following experiment's
steady-state check (the catalog is the test of its own rollbacks).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from paydar import chaos
from paydar.chaos.catalog import NEEDS_POSTGRES
from paydar.chaos.invariants import check_acknowledged
from paydar.chaos.load import CitizenLoad
from paydar.chaos.probes import acknowledged_writes_lost, citizen_availability
from paydar.chaos.target import append_ledger
from paydar.chaos.workload import read_back
from paydar.infra.local.realizer import Realization
from tests.helpers import EXPERIMENTS, assert_experiment_holds, with_app, write_topology
from tests.integration.conftest import running

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

CATALOG = [p for p in EXPERIMENTS if NEEDS_POSTGRES not in json.loads(p.read_text())["tags"]]
"""The database experiments run on a system with a database: ``test_postgres_service``."""


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Realization, CitizenLoad]]:
    """One system for the whole catalog, under a quick Locust load (3 citizens) throughout; with an
    agency app beside the registry services, so the app experiments have their target."""
    root = tmp_path_factory.mktemp("chaos")
    config = with_app(write_topology(root / "national.yaml",
                                     storage={"integrity_interval": "1s", "backup_interval": "1h"}))
    with running(config, root / "state") as realization:
        load = CitizenLoad(realization, users=3).start()
        try:
            yield realization, load
        finally:
            load.stop()


@pytest.fixture()
def system(loaded: tuple[Realization, CitizenLoad]) -> Realization:
    return loaded[0]


def test_the_catalog_covers_the_attacks_and_discovery_lists_every_activity() -> None:
    names = {path.stem for path in EXPERIMENTS}
    assert names >= {"crash-primary-node", "hang-primary-node", "partition-primary-region", "ransomware-on-a-standby",
                     "rogue-controller-table", "stolen-region-vault-credentials", "flood-one-gateway",
                     "lying-prober", "tampering-link", "equivocating-controller", "poisoning-prober",
                     "byzantine-primary", "vault-side-doors"}
    discovered = {a["name"] for a in chaos.discover()["activities"]}
    used = {activity["provider"]["func"]
            for path in EXPERIMENTS for activity in _activities(json.loads(path.read_text()))}
    assert used <= discovered


def _activities(experiment: dict[str, Any]) -> list[dict[str, Any]]:
    return [*experiment["steady-state-hypothesis"]["probes"], *experiment["method"], *experiment["rollbacks"]]


@pytest.mark.parametrize("experiment", CATALOG, ids=[p.stem for p in CATALOG])
def test_experiment_holds_its_steady_state_and_rolls_back(system: Realization, experiment: Path,
                                                          tmp_path: Path) -> None:
    assert_experiment_holds(system, experiment, tmp_path)


def test_every_write_the_citizen_load_saw_acknowledged_survived_the_catalog(
        loaded: tuple[Realization, CitizenLoad]) -> None:
    # Runs after the experiments above (file order): Locust wrote throughout every attack.
    system, load = loaded
    ledger = load.ledger()
    assert ledger.acknowledged_count > 100, "the load must have run during the catalog"
    for region in system.topology.region_names:
        assert check_acknowledged(ledger, asyncio.run(read_back(system, ledger, region))) == []
    assert load.alive()


def test_the_probes_can_fail(system: Realization) -> None:
    # A probe that cannot fail proves nothing: a write the ledger holds as acknowledged but
    # that no node ever received must count as lost.
    assert citizen_availability(writes=1, configuration={"paydar_state_dir": str(system.layout.root)}) == 1.0
    append_ledger(system, [("1101", "never-written", {"citizen_id": "0000000001", "kind": "diploma"}, True)])
    try:
        assert acknowledged_writes_lost(configuration={"paydar_state_dir": str(system.layout.root)}) == 1
    finally:
        (system.layout.root / "chaos" / "ledger.jsonl").unlink()
