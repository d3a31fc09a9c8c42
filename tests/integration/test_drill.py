"""The drill end to end, and the weakened topologies it must catch, each on a system of its own."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

from paydar.chaos.catalog import experiments, load_catalog, run_experiments
from paydar.drill.run import DrillOptions, DrillReport, run_drill
from paydar.infra.local.layout import StateLayout
from paydar.infra.local.realizer import down
from paydar.model.topology import load_topology
from tests.helpers import ROOT, write_topology
from tests.integration.conftest import running

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

WEAKENED = ROOT / "examples" / "weakened"


@pytest.mark.parametrize(("example", "experiment", "broken"), [
    ("minority-threshold", "rogue-controller-table", "unmet: the-certified-route-still-holds"),
    ("single-vantage-point", "lying-prober", "unmet: the-certified-route-still-holds"),
    ("no-synchronous-standby", "crash-primary-node", "failed: seconds-until-citizens-served-again"),
])
def test_each_weakened_example_is_caught_by_its_experiment(tmp_path: Path, example: str, experiment: str,
                                                           broken: str) -> None:
    # The drill must be able to fail: each shipped weakening breaks the experiment it names,
    # and the result says which citizen-level promise broke.
    topology = yaml.safe_load((WEAKENED / f"{example}.yaml").read_text())
    topology["services"] = [s for s in topology["services"] if s["id"] == "1101"]
    config = tmp_path / "weak.yaml"
    config.write_text(yaml.safe_dump(topology))
    with running(config, tmp_path / "state") as weak:
        assert [w.caught_by for w in weak.topology.unsafe] == [experiment]
        [result] = run_experiments(weak, load_catalog([ROOT / "chaos" / "experiments" / f"{experiment}.json"]))
    assert not result.held and result.steady_before
    kind, name = broken.split(": ")
    if kind == "unmet":
        assert result.unmet == (name,)
    else:
        assert [f.split(":")[0] for f in result.failed_activities][:1] == [name], result.failed_activities


@pytest.mark.timeout(450)
def test_the_drill_runs_matrix_cells_under_locust_load_and_writes_its_report(tmp_path: Path) -> None:
    state = tmp_path / "state"
    config = write_topology(tmp_path / "national.yaml", storage={"integrity_interval": "1s", "backup_interval": "1h"})
    cells = ["node.1101@primary:crash", "node.2204@standby:corrupt", "link.isfahan.tehran:cut", "gateway.mashhad:hang"]
    try:
        run = subprocess.run([str(Path(sys.executable).with_name("paydar")), "drill", "--config", str(config),
                              "--state-dir", str(state), "--matrix", "--users", "3", "--dwell", "1",
                              *(arg for cell in cells for arg in ("--only", cell))],
                             capture_output=True, text=True, timeout=400, cwd=tmp_path, check=False)
    finally:
        pid_file = StateLayout(state).supervisor_pid
        left_running = pid_file.exists() and _alive_pid(pid_file)
        if left_running:
            down(state)
    assert not left_running, "the drill must tear down the system it started"
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-3000:]
    report = json.loads((state / "report.json").read_text())
    assert report["passed"] and report["mode"] == "matrix" and report["lost"] == report["corrupted"] == 0
    assert {e["name"] for e in report["experiments"]} == set(cells)
    by_name = {e["name"]: e for e in report["experiments"]}
    assert by_name["node.2204@standby:corrupt"]["detection_seconds"] > 0
    assert by_name["node.1101@primary:crash"]["fault_component"] == "node.1101.tehran", "resolved when it started"
    assert all(e["recovery_seconds"] is not None and e["availability_during_fault"] is not None
               and e["lost"] == 0 and e["corrupted"] == 0 for e in report["experiments"])
    assert report["load"]["users"] == 3 and sum(v["requests"] for v in report["load"].values()
                                                if isinstance(v, dict)) > 0
    assert report["writes_acknowledged"] > 0 and set(report["timeline"]) == {"tehran", "isfahan", "mashhad"}
    page = (state / "report.html").read_text()
    assert "<h2>N-1 matrix</h2>" in page and "<tr><th>node.2204@standby</th>" in page and "PASSED" in page
    assert (state / "chaos" / "journals" / "node.1101@primary--crash.json").exists()
    services = {v["service"]: v for v in report["services"]}
    assert set(services) == {"1101", "2204", "3307", "4412"} and all(v["outcome"] == "met" for v in services.values())
    assert [v["tier"] for v in report["services"]] == sorted(v["tier"] for v in report["services"])
    assert services["1101"]["worst_writes_cell"] in ("", "node.1101@primary:crash")
    assert "<h2>Services against their own targets</h2>" in page and "tier 1 (critical)" in page
    meta = report["meta"]
    assert meta["paydar_version"] and meta["paydar_commit"] and meta["settings"]["users"] == 3
    assert meta["topology_sha256"] == hashlib.sha256(config.read_bytes()).hexdigest()
    verified = subprocess.run([str(Path(sys.executable).with_name("paydar")), "evidence", "verify",
                               str(state / "evidence.tar.gz"), "--state-dir", str(state)],
                              capture_output=True, text=True, timeout=60, check=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    with tarfile.open(state / "evidence.tar.gz") as bundle:
        names = set(bundle.getnames())
    assert {"report.json", "report.html", "chaos/tables.jsonl", "chaos/locust_stats.csv",
            "chaos/journals/node.1101@primary--crash.json"} <= names
    history = [json.loads(line) for line in (state / "chaos" / "tables.jsonl").read_text().splitlines()]
    versions = [entry["table"]["table"]["version"] for entry in history]
    assert len(versions) >= 2 and versions == sorted(versions), "the primary's crash moved it: a newer table"


def _alive_pid(path: Path) -> bool:
    try:
        os.kill(int(path.read_text()), 0)
    except (OSError, ValueError):
        return False
    return True


def _topology(path: Path, regions: list[str], services: list[dict[str, Any]], threshold: int) -> Path:
    """A topology of other cities and services, on the example's settings otherwise."""
    example = yaml.safe_load((ROOT / "national.yaml").read_text())
    template = example["services"][0]
    example["regions"] = [{"name": r, "display_name": r.title()} for r in regions]
    example["vault"]["sites"] = [{"name": "vault-apart", "display_name": "Vault apart"}]
    example["control"]["threshold"] = threshold
    example["services"] = [{**template, "name": f"Service {s['id']}", **s} for s in services]
    path.write_text(yaml.safe_dump(example))
    return path


def _other_topology(path: Path) -> Path:
    """Four other cities, three other services, other replication settings (one with two synchronous standbys)."""
    regions = ["qom", "yazd", "rasht", "kerman"]
    return _topology(path, regions, [
        {"id": "a1", "regions": regions, "sync_replicas": 2},
        {"id": "b2", "regions": ["rasht", "kerman", "qom"], "sync_replicas": 1},
        {"id": "c3", "regions": ["kerman", "yazd", "rasht"], "sync_replicas": 1},
    ], threshold=3)


def _drill(system: Any, console_path: Path, **options: Any) -> DrillReport:
    """Drill a running system (attached: it stays up for the next drill)."""
    with console_path.open("w") as log:
        return run_drill(config=system.layout.topology, state_dir=system.layout.root, keep=True, attach=True,
                         console=Console(file=log, width=200), options=DrillOptions(users=3, dwell=1, **options))


def _catalog_and_cells(config: Path, tmp_path: Path, only: tuple[str, ...]) -> tuple[DrillReport, DrillReport]:
    """The whole catalog, then the matrix cells ``only``, on one system of ``config``; both must pass."""
    with running(config, tmp_path / "state") as system:
        catalog = _drill(system, tmp_path / "catalog.log")
        cells = _drill(system, tmp_path / "matrix.log", matrix=True, only=only)
    for report in (catalog, cells):
        assert report.passed, report.failure
    return catalog, cells


@pytest.mark.timeout(600)
def test_the_catalog_and_matrix_cells_hold_on_a_topology_with_other_names_and_sizes(tmp_path: Path) -> None:
    catalog, cells = _catalog_and_cells(_other_topology(tmp_path / "other.yaml"), tmp_path,
                                        ("node.a1@standby:hang", "node.c3@primary:crash", "region.yazd:partition"))
    for report in (catalog, cells):
        assert [v["outcome"] for v in report.services] == ["met"] * 3
    assert len(catalog.experiments) == len(load_catalog(experiments(), load_topology(tmp_path / "other.yaml")))
    assert {e["name"] for e in cells.experiments} == {"node.a1@standby:hang", "node.c3@primary:crash",
                                                      "region.yazd:partition"}


def _five_regions(path: Path, *, accepts: bool, rto: str = "30s") -> Path:
    """Five other cities, four other services; d4 lives in two of them only, so losing either stops
    its writes: stated openly under ``accepts`` or not."""
    regions = ["sari", "arak", "ilam", "zanjan", "bushehr"]
    return _topology(path, regions, [
        {"id": "d4", "regions": ["arak", "sari"], "sync_replicas": 1, "rto": rto,
         **({"accepts": ["read-only-after-region-loss"]} if accepts else {})},
        {"id": "e5", "regions": ["ilam", "zanjan", "bushehr"], "sync_replicas": 1, "tier": 2},
        {"id": "f6", "regions": regions, "sync_replicas": 2},
        {"id": "g7", "regions": ["bushehr", "arak", "sari", "ilam"], "sync_replicas": 1, "tier": 2},
    ], threshold=3)


@pytest.mark.timeout(600)
def test_a_service_in_two_regions_that_accepts_read_only_passes_with_the_statement(tmp_path: Path) -> None:
    # The cells alone: the catalog on other names and sizes is the four-city test's.
    with running(_five_regions(tmp_path / "five.yaml", accepts=True), tmp_path / "state") as system:
        cells = _drill(system, tmp_path / "matrix.log", matrix=True,
                       only=("node.d4@standby:crash", "region.arak:partition", "gateway.ilam:crash"))
    assert cells.passed, cells.failure
    d4 = next(v for v in cells.services if v["service"] == "d4")
    assert d4["outcome"] == "accepted", d4
    assert any(s.startswith("node.d4@standby:crash: read-only as accepted (d4 needs 1 synchronous standby(s)")
               for s in d4["accepted"]), d4["accepted"]
    assert [v["tier"] for v in cells.services] == [1, 1, 2, 2]


@pytest.mark.timeout(450)
def test_a_missed_rto_fails_the_drill_with_its_cause_and_the_safeguard_aborts_a_cell(tmp_path: Path) -> None:
    config = _five_regions(tmp_path / "five.yaml", accepts=False, rto="5s")
    with running(config, tmp_path / "state") as five:
        missed = _drill(five, tmp_path / "missed.log", matrix=True, only=("region.arak:partition",))
        guarded = _drill(five, tmp_path / "guarded.log", matrix=True, only=("node.d4@standby:hang",),
                         floor=0.9, floor_seconds=1.0)
    assert not missed.passed
    assert "d4 needs 1 synchronous standby(s); after losing arak only 0 remain(s): writes stop until arak returns" \
        in missed.failure
    d4 = next(v for v in missed.services if v["service"] == "d4")
    assert d4["outcome"] == "missed" and d4["worst_writes_cell"] == "region.arak:partition"
    assert d4["worst_writes"] is None or d4["worst_writes"] > 5
    assert all(v["outcome"] == "met" for v in missed.services if v["service"] != "d4")
    [aborted] = guarded.experiments
    assert not guarded.passed and not aborted["held"]
    assert aborted["aborted"].startswith("availability through the unaffected regions stayed below the floor of 90%")
    assert any(r["activity"]["name"] == "undo-the-fault" and r["status"] == "succeeded"
               for r in json.loads(Path(aborted["journal"]).read_text())["rollbacks"]), "the rollback still ran"


@pytest.mark.timeout(450)
def test_an_agency_app_is_drilled_and_judged_beside_the_registry(tmp_path: Path) -> None:
    example = ROOT / "examples" / "http-service.yaml"
    topology = load_topology(example)
    app = next(iter(topology.http_services))
    region = topology.service(app).regions[-1]
    only = (f"node.{app}@primary:lying-instance", f"node.{app}@standby:hang", f"region.{region}:partition")
    with running(example, tmp_path / "state") as system:
        report = _drill(system, tmp_path / "app.log", matrix=True, only=only)
    assert report.passed, report.failure
    assert {e["name"] for e in report.experiments} == set(only)
    verdict = next(v for v in report.services if v["service"] == app)
    assert verdict["outcome"] == "met" and verdict["worst_writes"] is not None, verdict
    assert verdict["worst_writes"] <= topology.service(app).rto
    lying = next(e for e in report.experiments if e["name"] == only[0])
    assert lying["fault"]["kind"] == "lying-instance" and lying["fault_component"].startswith(f"node.{app}.")
