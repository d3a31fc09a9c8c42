"""The N-1 matrix: which cells exist, and the experiment each becomes."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import yaml

from paydar.chaos.catalog import experiments, load_catalog
from paydar.chaos.faults import FAULTS
from paydar.chaos.load import Sample
from paydar.chaos.matrix import cells, experiment
from paydar.drill.report import render_html
from paydar.drill.run import DrillReport, blast_radius
from paydar.infra.local.plan import build_plan
from paydar.infra.local.realizer import Realization
from paydar.model.topology import load_topology

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def system() -> Realization:
    # cells() reads only a realization's topology and plan: no system is started.
    topology = load_topology(ROOT / "national.yaml")
    return cast("Realization", SimpleNamespace(topology=topology, plan=build_plan(topology, Path("/nonexistent"))))


def test_every_component_instance_meets_every_fault_of_its_kind(system: Realization) -> None:
    matrix = cells(system)
    by_component = Counter(c.component for c in matrix)
    regions, services = len(system.topology.regions), len(system.topology.services)
    assert len(by_component) == 2 * services + 3 * regions + regions * (regions - 1) + 1 + regions
    assert len(matrix) == (2 * services * len(FAULTS["node"]) + regions * (
        len(FAULTS["gateway"]) + len(FAULTS["prober"]) + len(FAULTS["controller"]) + len(FAULTS["region"]))
                           + regions * (regions - 1) * len(FAULTS["link"]) + len(FAULTS["vault"]))
    assert (services, len(matrix)) == (4, 106)
    assert {c.fault for c in matrix} >= {"byzantine-primary", "poison", "equivocate", "tamper", "side-door"}, \
        "the full-compromise faults are cells too"
    assert len({c.name for c in matrix}) == len(matrix)


def test_a_node_fault_runs_on_the_primary_and_on_a_standby_resolved_when_the_cell_starts(
        system: Realization) -> None:
    service = system.topology.services[1].id
    named = {c.name: c for c in cells(system, (f"node.{service}@*",))}
    assert set(named) == {f"node.{service}@{role}:{fault}" for role in ("primary", "standby")
                          for fault in FAULTS["node"]}
    assert named[f"node.{service}@standby:hang"].arguments == {"component": f"node.{service}@standby"}
    assert named[f"node.{service}@primary:encrypt"].arguments == {"node": f"node.{service}@primary"}
    assert not any(c.component.count(".") == 2 and c.component.startswith("node.") for c in cells(system)), \
        "no node cell names a region: which node a role is depends on the cells that ran before"


def test_only_narrows_by_component_and_fault_patterns(system: Realization) -> None:
    assert {c.name for c in cells(system, ("node.1101@primary:*", "*:partition"))} == {
        "node.1101@primary:crash", "node.1101@primary:hang", "node.1101@primary:encrypt", "node.1101@primary:corrupt",
        "node.1101@primary:byzantine-primary", "region.tehran:partition", "region.isfahan:partition",
        "region.mashhad:partition"}
    assert cells(system, ("nothing:*",)) == []


def test_a_cell_is_a_chaos_toolkit_experiment_with_the_citizen_steady_state(system: Realization) -> None:
    [cell] = cells(system, ("prober.isfahan:lie",))
    built = experiment(cell, dwell=1.5)
    probes = [p["provider"]["func"] for p in built["steady-state-hypothesis"]["probes"]]
    assert probes == ["citizen_availability", "acknowledged_writes_lost", "corrupted_documents_served",
                      "certified_route_unchanged"]
    assert built["method"][0]["provider"] == {"type": "python", "module": "paydar.chaos.actions",
                                              "func": "run_lying_prober",
                                              "arguments": {"region": "isfahan"}}
    assert built["method"][-1]["pauses"] == {"after": 1.5}
    assert [r["provider"]["func"] for r in built["rollbacks"]] == ["undo_fault"]
    [equivocate] = cells(system, ("controller.tehran:equivocate",))
    assert experiment(equivocate, 0)["method"][0]["provider"]["module"] == "paydar.chaos.compromise"
    [encrypt] = cells(system, ("node.2204@standby:encrypt",))
    assert [m["provider"]["func"] for m in experiment(encrypt, 0)["method"]] == [
        "encrypt_node_data", "seconds_until_compromise_detected", "seconds_until_available"]


def test_blast_radius_names_the_regions_and_services_that_saw_a_failure() -> None:
    samples = [Sample(10.5, "tehran", False, "1101"), Sample(11.0, "isfahan", True, "2204"),
               Sample(12.0, "mashhad", False, "3307"), Sample(30.0, "isfahan", False, "2204")]
    assert blast_radius(samples, {"window": [10.0, 20.0]}) == {"regions": ["mashhad", "tehran"],
                                                              "services": ["1101", "3307"]}
    assert blast_radius(samples, {"window": [13.0, 20.0]}) == {"regions": [], "services": []}
    assert blast_radius(samples, {"window": None}) is None


def test_the_matrix_report_draws_a_heat_map_of_every_cell() -> None:
    def cell(name: str, held: bool, share: float | None) -> dict[str, Any]:
        return {"name": name, "title": name, "held": held, "status": "completed", "seconds": 5.0,
                "steady_state_before": True, "steady_state_after": held, "unmet": [] if held else ["x"],
                "failed_activities": [], "recovery_seconds": 1.5, "availability_during_fault": share,
                "blast_radius": {"regions": [], "services": []}, "window": None}

    report = DrillReport(state_dir="s", mode="matrix", writes_acknowledged=5, experiments=[
        cell("node.1101.tehran:crash", True, 0.9), cell("gateway.tehran:flood", True, 1.0),
        cell("link.tehran.isfahan:cut", False, 0.5)])
    page = render_html(report.as_dict())
    assert "<h2>N-1 matrix</h2>" in page
    assert all(f"<tr><th>{c}</th>" in page for c in ("node.1101.tehran", "gateway.tehran", "link.tehran.isfahan"))
    assert ">90%<br>1.5s</td>" in page and ">BROKE<br>1.5s</td>" in page and "class='na'" in page
    assert "FAILED: experiments broke: link.tehran.isfahan:cut" in page


def _realization(path: Path) -> Realization:
    topology = load_topology(path)
    return cast("Realization", SimpleNamespace(topology=topology, plan=build_plan(topology, Path("/nonexistent"))))


def test_an_app_instance_gets_the_app_faults_by_role_and_the_catalog_its_experiments() -> None:
    example = _realization(ROOT / "examples" / "http-service.yaml")
    app = next(iter(example.topology.http_services))
    named = {c.name: c for c in cells(example, (f"node.{app}@*",))}
    assert set(named) == {f"node.{app}@{role}:{fault}" for role in ("primary", "standby") for fault in FAULTS["app"]}
    assert named[f"node.{app}@primary:flood"].action == "flood_instance"
    assert named[f"node.{app}@standby:lying-instance"].action == "impersonate_instance"
    with_apps = {name for name, _ in load_catalog(experiments(), example.topology)}
    without = {name for name, _ in load_catalog(experiments(), load_topology(ROOT / "national.yaml"))}
    assert with_apps - without == {"crash-an-app-instance", "hang-an-app-instance", "lying-app-instance",
                                   "flood-an-app-instance"}


def test_an_app_paydar_does_not_run_gets_no_instance_cells(tmp_path: Path) -> None:
    data = yaml.safe_load((ROOT / "examples" / "http-service.yaml").read_text())
    app = next(s for s in data["services"] if s.get("workload") == "http")
    first = app["regions"][0]
    app["http"]["instances"][first] = {"url": "http://127.0.0.1:8080"}
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(data))
    system = _realization(tmp_path / "t.yaml")
    assert not cells(system, (f"node.{app['id']}@*",)), "an instance given by URL is not Paydar's to crash"
    assert {c.name for c in cells(system, ("region.*:partition",))}, "region partitions still cut it off"
    assert system.plan.node(app["id"], first).supervised is False
    assert "lying-app-instance" not in {name for name, _ in load_catalog(experiments(), system.topology)}
