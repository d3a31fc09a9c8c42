"""N-1 analysis: which services stop acknowledging writes when any one region is lost, and
what `paydar validate` says about them (--strict for CI gates, --json for machines)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from paydar.cli import cli
from paydar.model.errors import TopologyError
from paydar.model.resilience import Finding, cause, n_minus_one, replicas_lost
from paydar.model.topology import Limit, parse_topology

ROOT = Path(__file__).resolve().parents[2]


def topology_with(**service: Any) -> dict[str, Any]:
    example: dict[str, Any] = yaml.safe_load((ROOT / "national.yaml").read_text())
    regions = [r["name"] for r in example["regions"]]
    chosen: list[int] = service.pop("regions", [0, 1, 2])
    extra: dict[str, Any] = {"id": "x9", "name": "X", "agency": "a", "ecosystem": "identity", "tier": 1, "rto": "30s",
                             "rpo": "0s", "sync_replicas": 1, "regions": [regions[i] for i in chosen]} | service
    changed = copy.deepcopy(example)
    changed["services"].append(extra)
    return changed


@pytest.mark.parametrize(("regions", "sync", "expected"), [
    ([0, 1], 1, Finding("x9", Limit.READ_ONLY_AFTER_REGION_LOSS,
                        "service x9 acknowledges a write once 1 standby(s) hold it (sync_replicas 1, 2 regions); after "
                        "losing any one region only 0 standby(s) remain beside the primary: its writes stop until "
                        "that region returns", "host it in 3 regions, or state it openly with accepts: "
                        "[read-only-after-region-loss]")),
    ([0, 1, 2], 2, Finding("x9", Limit.READ_ONLY_AFTER_REGION_LOSS,
                           "service x9 acknowledges a write once 2 standby(s) hold it (sync_replicas 2, 3 regions); "
                           "after losing any one region only 1 standby(s) remain beside the primary: its writes stop "
                           "until that region returns",
                           "host it in 4 regions, or lower sync_replicas to 1, or state it openly with accepts: "
                           "[read-only-after-region-loss]")),
    ([0, 1, 2], 1, None),
])
def test_each_service_is_judged_for_the_loss_of_any_one_region(regions: list[int], sync: int,
                                                               expected: Finding | None) -> None:
    topology = parse_topology(topology_with(regions=regions, sync_replicas=sync), source="<test>")
    assert [f for f in n_minus_one(topology) if f.service == "x9"] == ([expected] if expected else [])


def test_the_example_survives_the_loss_of_any_region() -> None:
    assert n_minus_one(parse_topology(yaml.safe_load((ROOT / "national.yaml").read_text()), source="<x>")) == []


def test_validate_warns_and_strict_fails_the_gate(tmp_path: Path) -> None:
    path = tmp_path / "pair.yaml"
    path.write_text(yaml.safe_dump(topology_with(regions=[0, 1])))
    runner = CliRunner()
    relaxed = runner.invoke(cli, ["validate", str(path)])
    assert relaxed.exit_code == 0 and "read-only-after-region-loss" in relaxed.output
    assert runner.invoke(cli, ["validate", "--strict", str(path)]).exit_code == 1
    answer = runner.invoke(cli, ["validate", "--json", str(path)])
    report = json.loads(answer.stdout)
    assert report["valid"] and [w["service"] for w in report["warnings"]] == ["x9"]
    assert report["warnings"][0]["fix"].startswith("host it in 3 regions, or state it openly")
    assert runner.invoke(cli, ["validate", "--strict", str(ROOT / "national.yaml")]).exit_code == 0
    weakened = runner.invoke(cli, ["validate", "--strict", str(ROOT / "examples/weakened/minority-threshold.yaml")])
    assert weakened.exit_code == 1, "an unsafe: entry fails the gate"


def test_an_accepted_limit_passes_the_gate_and_is_still_stated(tmp_path: Path) -> None:
    path = tmp_path / "pair.yaml"
    path.write_text(yaml.safe_dump(topology_with(regions=[0, 1], accepts=["read-only-after-region-loss"])))
    result = CliRunner().invoke(cli, ["validate", "--strict", "--json", str(path)])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert answer["warnings"] == [] and [f["service"] for f in answer["accepted"]] == ["x9"]
    assert answer["accepted"][0]["accepted"] is True


def test_accepting_a_limit_the_service_does_not_have_is_refused() -> None:
    with pytest.raises(TopologyError) as caught:
        parse_topology(topology_with(accepts=["read-only-after-region-loss"]), source="<test>")
    assert [i.location for i in caught.value.issues] == ["services[4] (id 'x9').accepts"]
    assert "keeps acknowledging writes" in caught.value.issues[0].message


def test_which_replica_each_fault_takes_and_why_that_stops_writes() -> None:
    topology = parse_topology(topology_with(regions=[0, 1]), source="<test>")
    first, second = topology.service("x9").regions
    assert replicas_lost(topology, f"node.x9.{second}") == {"x9": second}
    assert replicas_lost(topology, f"region.{second}") == {s.id: second for s in topology.services_in(second)}
    assert replicas_lost(topology, f"link.{first}.{second}")["x9"] == second
    assert replicas_lost(topology, f"gateway.{first}") == {} and replicas_lost(topology, "vault") == {}
    assert cause(topology.service("x9"), second) == (
        f"x9 needs 1 synchronous standby(s); after losing {second} only 0 remain(s): "
        f"writes stop until {second} returns")
    assert cause(topology.services[0], second) == ""
