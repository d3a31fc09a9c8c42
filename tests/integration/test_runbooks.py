"""Each runbook against its real incident: induce it with the chaos actions, run the runbook with
--yes, and the system must be healthy afterwards with no acknowledged write lost."""

from __future__ import annotations

import re
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest

from paydar.chaos.actions import (
    encrypt_node_data,
    flood_gateway,
    partition_region,
    push_rogue_table,
    run_lying_prober,
    undo_fault,
)
from paydar.chaos.liar import ScriptedProber
from paydar.chaos.probes import seconds_until_available, seconds_until_compromise_detected
from paydar.chaos.target import clear_fault, fault
from paydar.infra.local.realizer import Realization
from paydar.ops.backups import backup_now
from paydar.ops.failover import current_table
from tests.helpers import paydar, run_runbook, wait_until, write_topology
from tests.integration.conftest import running

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]



@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Realization]:
    root = tmp_path_factory.mktemp("runbooks")
    config = write_topology(root / "national.yaml", storage={"integrity_interval": "1s", "backup_interval": "1h"})
    with running(config, root / "state") as realization:
        yield realization


def configuration(system: Realization) -> dict[str, str]:
    return {"paydar_state_dir": str(system.layout.root)}


def assert_healthy(system: Realization) -> None:
    seconds_until_available(60, configuration(system))
    done = paydar(system, "check")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "acknowledged writes lost: 0; corrupted documents served: 0" in done.stdout


def test_a_planned_drain_moves_every_primary_out_and_the_region_returns(system: Realization) -> None:
    steps = run_runbook(system, "region-drain-and-return", REGION="isfahan")
    assert [s["command"].split()[:3] for s in steps][1] == ["paydar", "failover", "drain"]
    assert "isfahan drained" in steps[1]["output"]
    assert all(route.primary != "isfahan" for route in current_table(system).table.services.values())
    assert_healthy(system)


def test_restore_from_the_vault_into_a_directory_and_onto_the_node(system: Realization) -> None:
    route = current_table(system).table.route("1101")
    standby = next(r for r in route.regions if r != route.primary)
    [outcome] = backup_now(system, [f"node.1101.{standby}"])
    assert outcome.manifest is not None
    steps = run_runbook(system, "restore-from-vault", SERVICE="1101", REGION=standby)
    assert list((system.layout.root / "forensics").glob(f"1101-{standby}-*"))
    assert "rebuilt and caught up" in steps[2]["output"]
    assert_healthy(system)


def test_ransomware_on_a_node_is_restored_by_its_runbook(system: Realization) -> None:
    attack = encrypt_node_data("node.4412@standby", configuration(system))
    seconds_until_compromise_detected(30, configuration=configuration(system))
    steps = run_runbook(system, "ransomware-on-a-node", SERVICE="4412", REGION=attack["node_region"])
    assert "compromised" in steps[0]["output"]
    assert "rebuilt and caught up" in steps[2]["output"]
    clear_fault(system)  # the runbook undid it
    assert_healthy(system)


def test_a_flooded_gateway_leaves_the_other_regions_serving(system: Realization) -> None:
    answered: list[tuple[dict[str, int], float]] = []
    flood = threading.Thread(target=lambda: answered.append((flood_gateway(
        region="mashhad", seconds=12, concurrency=150, configuration=configuration(system)), time.monotonic())))
    flood.start()
    try:
        wait_until(lambda: fault(system), 10, "the flood to be in force")
        runbook_started = time.monotonic()
        run_runbook(system, "gateway-flood", REGION="mashhad")
    finally:
        flood.join(60)
    [(counts, flood_ended)] = answered
    assert flood_ended > runbook_started + 2, "the runbook's first steps ran while the gateway was flooded"
    assert sum(counts.values()) >= 150, f"the flood never reached the gateway: {counts}"
    assert set(counts) & {"404", "503"}, f"the flooded gateway answered nothing: {counts}"
    clear_fault(system)
    assert_healthy(system)


def test_region_loss_runbook_keeps_citizens_served_and_the_region_returns(system: Realization) -> None:
    partition_region(region="tehran", configuration=configuration(system))
    try:
        seconds_until_available(30, configuration(system))  # the controllers fail over on their own
        steps = run_runbook(system, "region-loss", REGION="tehran")
        assert "tehran drained" in steps[2]["output"]
    finally:
        undo_fault(configuration(system))
    cleared = paydar(system, "failover", "clear", "--region", "tehran")
    assert cleared.returncode == 0, cleared.stdout + cleared.stderr
    assert_healthy(system)


def test_a_compromised_controller_key_is_rotated_by_its_runbook(system: Realization) -> None:
    version = current_table(system).table.version
    push_rogue_table("1101", "controller.mashhad", configuration(system))  # the stolen key at work
    steps = run_runbook(system, "compromised-controller-key", CONTROLLER="controller.mashhad")
    assert "the old key is refused from now on" in steps[2]["output"]
    assert current_table(system).table.version > version
    clear_fault(system)
    assert_healthy(system)


def test_a_lying_prober_is_replaced_and_its_old_key_refused(system: Realization) -> None:
    stolen = system.keystore().signer("prober.isfahan")
    run_lying_prober(region="isfahan", service="1101", configuration=configuration(system))
    undo_fault(configuration(system))  # contained: the compromised process is stopped
    steps = run_runbook(system, "lying-prober", PROBER="prober.isfahan")
    assert "the old key is refused from now on" in steps[2]["output"]
    # A prober holding the stolen key is refused by every controller from now on.
    controllers = [c for c in system.plan.components if c.kind.value == "controller"]
    liar = ScriptedProber(system, "isfahan", lambda _round, _target: False)
    liar.signer = stolen
    with liar:
        wait_until(lambda: all(_refused(system, c.url, "prober.isfahan") > 0 for c in controllers), 30,
                   "every controller to refuse rounds signed with the retired key")
    system.supervisor.rpc().supervisor.startProcess("prober.isfahan", True)
    assert_healthy(system)


def _refused(system: Realization, url: str, prober: str) -> float:
    text = urllib.request.urlopen(url + "/metrics", timeout=5).read().decode()
    pattern = rf'paydar_controller_observations_refused_total{{prober="{prober}",reason="bad-signature"}} ([0-9.]+)'
    found = re.search(pattern, text)
    return float(found.group(1)) if found else 0.0


def test_a_runbook_refuses_to_start_without_its_inputs_and_unknown_names_are_named(system: Realization) -> None:
    missing = paydar(system, "runbook", "run", "region-loss", "--yes")
    assert missing.returncode == 2 and "needs REGION: pass --set REGION=..." in missing.stdout + missing.stderr
    unknown = paydar(system, "runbook", "run", "nope", "--yes")
    assert unknown.returncode == 2 and "no runbook 'nope'; runbooks: compromised-controller-key" in unknown.stderr
    dry = paydar(system, "runbook", "run", "region-loss", "--dry-run")
    assert dry.returncode == 0 and "paydar failover drain" in dry.stdout
