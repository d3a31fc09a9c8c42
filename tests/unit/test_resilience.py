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
from paydar.model.resilience import Finding, Limit, n_minus_one
from paydar.model.topology import parse_topology

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
    ([0, 1], 1, Finding("x9", Limit.WRITES_STOP,
                        "service x9 acknowledges a write once 1 standbys hold it (sync_replicas 1, 2 regions); after "
                        "losing any one region only 0 standby(s) remain beside the primary: its writes stop until "
                        "that region returns", "host it in 3 regions")),
    ([0, 1, 2], 2, Finding("x9", Limit.WRITES_STOP,
                           "service x9 acknowledges a write once 2 standbys hold it (sync_replicas 2, 3 regions); "
                           "after losing any one region only 1 standby(s) remain beside the primary: its writes stop "
                           "until that region returns", "host it in 4 regions, or lower sync_replicas to 1")),
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
    assert relaxed.exit_code == 0 and "writes-stop-after-region-loss" in relaxed.output
    assert runner.invoke(cli, ["validate", "--strict", str(path)]).exit_code == 1
    answer = runner.invoke(cli, ["validate", "--json", str(path)])
    report = json.loads(answer.stdout)
    assert report["valid"] and [w["service"] for w in report["warnings"]] == ["x9"]
    assert report["warnings"][0]["fix"] == "host it in 3 regions"
    assert runner.invoke(cli, ["validate", "--strict", str(ROOT / "national.yaml")]).exit_code == 0
    weakened = runner.invoke(cli, ["validate", "--strict", str(ROOT / "examples/weakened/minority-threshold.yaml")])
    assert weakened.exit_code == 1, "an unsafe: entry fails the gate"
