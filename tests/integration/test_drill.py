"""The drill end to end, and the weakened topologies it must catch, each on a system of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from paydar.chaos.catalog import load_catalog, run_experiments
from paydar.infra.local.layout import StateLayout
from paydar.infra.local.realizer import down
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
    cells = ["node.1101.tehran:crash", "node.2204.isfahan:corrupt", "link.isfahan.tehran:cut", "gateway.mashhad:hang"]
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
    assert by_name["node.2204.isfahan:corrupt"]["detection_seconds"] > 0
    assert all(e["recovery_seconds"] is not None and e["availability_during_fault"] is not None
               and e["lost"] == 0 and e["corrupted"] == 0 for e in report["experiments"])
    assert report["load"]["users"] == 3 and sum(v["requests"] for v in report["load"].values()
                                                if isinstance(v, dict)) > 0
    assert report["writes_acknowledged"] > 0 and set(report["timeline"]) == {"tehran", "isfahan", "mashhad"}
    page = (state / "report.html").read_text()
    assert "<h2>N-1 matrix</h2>" in page and "<tr><th>node.2204.isfahan</th>" in page and "PASSED" in page
    assert (state / "chaos" / "journals" / "node.1101.tehran--crash.json").exists()


def _alive_pid(path: Path) -> bool:
    try:
        os.kill(int(path.read_text()), 0)
    except (OSError, ValueError):
        return False
    return True


def _other_topology(path: Path) -> Path:
    """Four other cities, three other services, other replication settings (one with two synchronous standbys)."""
    regions = ["qom", "yazd", "rasht", "kerman"]
    services = [
        {"id": "a1", "regions": regions, "sync_replicas": 2},
        {"id": "b2", "regions": ["rasht", "kerman", "qom"], "sync_replicas": 1},
        {"id": "c3", "regions": ["kerman", "yazd", "rasht"], "sync_replicas": 1},
    ]
    example = yaml.safe_load((ROOT / "national.yaml").read_text())
    template = example["services"][0]
    example["regions"] = [{"name": r, "display_name": r.title()} for r in regions]
    example["vault"]["sites"] = [{"name": "vault-apart", "display_name": "Vault apart"}]
    example["control"]["threshold"] = 3
    example["services"] = [{**template, "name": f"Service {s['id']}", **s} for s in services]
    path.write_text(yaml.safe_dump(example))
    return path


@pytest.mark.timeout(600)
def test_the_whole_catalog_holds_on_a_topology_with_other_names_and_sizes(tmp_path: Path) -> None:
    from paydar.chaos.catalog import experiments

    config = _other_topology(tmp_path / "other.yaml")
    with running(config, tmp_path / "state") as other:
        results = run_experiments(other, load_catalog(experiments()))
    broken = {r.name: (r.unmet, r.failed_activities) for r in results if not r.held}
    assert broken == {}
    assert len(results) == len(experiments())
