"""The catalog is topology-generic: experiments choose their targets by role, and nothing Paydar
ships names a service or region of the example topology."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from paydar.chaos.catalog import experiments
from paydar.chaos.roles import Role, pick
from paydar.model.routing import initial_table
from paydar.model.topology import NationalTopology, load_topology, parse_topology

ROOT = Path(__file__).resolve().parents[2]
NOW = 1_800_000_000.0


def other_topology() -> NationalTopology:
    """Five other cities and six other services, one of them in two regions only."""
    regions = ["qom", "yazd", "rasht", "kerman", "sari"]
    services = [{"id": f"s{n}", "name": f"S{n}", "agency": "a", "ecosystem": "identity", "tier": 1 + n % 3,
                 "rto": "30s", "rpo": "0s", "regions": regions[n % 5:] + regions[:n % 5], "sync_replicas": 1}
                for n in range(5)]
    services.append({"id": "pair", "name": "Pair", "agency": "a", "ecosystem": "identity", "tier": 2, "rto": "30s",
                     "rpo": "0s", "regions": ["sari", "qom"], "sync_replicas": 1})
    return parse_topology({"name": "other", "regions": [{"name": r} for r in regions],
                           "vault": {"sites": [{"name": "vault-apart"}]}, "control": {"threshold": 3},
                           "services": services}, source="<test>")


def test_roles_name_the_parts_of_whatever_topology_runs() -> None:
    topology = other_topology()
    table = initial_table(topology, NOW)
    assert pick(Role.MOST_REPLICATED_SERVICE, topology, table) == "s0", "five regions, first in order"
    assert pick(Role.PRIMARY_REGION_OF_MOST_REPLICATED, topology, table) == "qom"
    assert pick(Role.REGION_WITH_MOST_PRIMARIES, topology, table) == "sari", "s4 and pair start there"
    assert pick(Role.QUIETEST_REGION, topology, table) == "qom", "one primary, like three others: first in order"


def test_roles_on_the_example_pick_from_its_own_catalog() -> None:
    topology = load_topology(ROOT / "national.yaml")
    table = initial_table(topology, NOW)
    service = pick(Role.MOST_REPLICATED_SERVICE, topology, table)
    assert len(topology.service(service).regions) == max(len(s.regions) for s in topology.services)
    assert pick(Role.QUIETEST_REGION, topology, table) in topology.region_names


def _example_names() -> set[str]:
    example: dict[str, Any] = yaml.safe_load((ROOT / "national.yaml").read_text())
    return ({s["id"] for s in example["services"]} | {r["name"] for r in example["regions"]}
            | {s["name"] for s in example["vault"]["sites"]})


def test_nothing_paydar_ships_names_an_example_service_or_region() -> None:
    pattern = re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, sorted(_example_names()))) + r")(?![\w-])")
    named = [f"{path.relative_to(ROOT)}: {match.group(1)}" for path in sorted((ROOT / "paydar").rglob("*"))
             if path.suffix in (".py", ".md", ".json", ".yaml") and "__pycache__" not in path.parts
             for match in pattern.finditer(path.read_text(encoding="utf-8"))]
    assert named == []


@pytest.mark.parametrize("path", experiments(), ids=lambda p: p.stem)
def test_every_experiment_chooses_by_role_and_always_rolls_back(path: Path) -> None:
    experiment = json.loads(path.read_text())
    assert experiment["runtime"] == {"rollbacks": {"strategy": "always"}}
    dynamic = {k: v for k, v in experiment["configuration"].items() if isinstance(v, dict) and v.get("type") == "probe"}
    for entry in dynamic.values():
        assert entry["provider"]["func"] == "choose" and Role(entry["provider"]["arguments"]["role"])
    used = set(re.findall(r"\$\{(\w+)\}", path.read_text()))
    assert used <= set(dynamic), f"every ${{var}} is chosen by role: {used - set(dynamic)}"
