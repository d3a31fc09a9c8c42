"""The topology model: the example validates, and every rule has a message that is tested."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from paydar.model.errors import TopologyError
from paydar.model.topology import load_topology, parse_duration, parse_topology

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def example() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "national.yaml").read_text())
    return loaded


def issues_of(data: Any) -> list[str]:
    with pytest.raises(TopologyError) as info:
        parse_topology(data, "t.yaml")
    return [str(issue) for issue in info.value.issues]


def test_example_topology_is_valid() -> None:
    topology = load_topology(ROOT / "national.yaml")
    assert len(topology.regions) >= 3
    assert {s.ecosystem for s in topology.services} >= {"identity", "health", "commerce", "education"}
    assert all(len(s.regions) >= 2 for s in topology.services)
    assert not set(topology.region_names) & {v.name for v in topology.vault.sites}


@pytest.mark.parametrize(("text", "seconds"), [("500ms", 0.5), ("30s", 30), ("5m", 300), ("2h", 7200),
                                               ("7d", 604800), (12, 12.0)])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["soon", "5 minutes", True, "-3s"])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


def test_unknown_region(example: dict[str, Any]) -> None:
    example["services"][0]["regions"] = ["tehran", "shiraz"]
    assert issues_of(example) == [
        "services[0] (id '1101').regions[1]: unknown region 'shiraz' "
        "(hint: declare it under regions, or use one of: tehran, isfahan, mashhad)"]


def test_duplicate_service_id(example: dict[str, Any]) -> None:
    example["services"][1]["id"] = example["services"][0]["id"]
    assert issues_of(example) == [
        "services[1]: service identifiers must be unique: '1101' appears twice (hint: rename or remove one)"]


def test_sync_replicas_larger_than_standbys(example: dict[str, Any]) -> None:
    example["services"][2]["sync_replicas"] = 3
    assert issues_of(example) == [
        "services[2] (id '3307').sync_replicas: sync_replicas 3 is larger than the 2 standbys available "
        "(hint: use at most 2, or host the service in more regions)"]


def test_single_region_service(example: dict[str, Any]) -> None:
    example["services"][3]["regions"] = ["tehran"]
    example["services"][3]["sync_replicas"] = 0
    example["services"][3]["rpo"] = "5m"
    assert issues_of(example) == [
        "services[3] (id '4412').regions: the service is in one region only (hint: list at least two regions so "
        "losing one region does not take the service down)"]


def test_rpo_zero_needs_a_synchronous_standby(example: dict[str, Any]) -> None:
    example["services"][0]["sync_replicas"] = 0
    assert issues_of(example) == [
        "services[0] (id '1101').sync_replicas: rpo 0s needs at least one synchronous standby "
        "(hint: set sync_replicas: 1, or declare the data loss the service tolerates as rpo)"]


def test_vantage_points_must_be_known_regions_and_at_least_three(example: dict[str, Any]) -> None:
    example["probes"] = {"vantage_points": ["tehran", "shiraz", "tehran"]}
    assert issues_of(example) == [
        "probes.vantage_points[1]: unknown region 'shiraz' (hint: use one of: tehran, isfahan, mashhad)",
        "probes.vantage_points[2]: each region runs one prober: 'tehran' appears twice (hint: rename or remove one)",
        "probes.vantage_points: 2 vantage point(s): one lying or failing prober is then enough to trigger or block "
        "a failover (hint: probe from at least three regions (leave vantage_points out for every region))"]


@pytest.mark.parametrize(("weakening", "change"), [
    ("minority-threshold", lambda t: t["control"].update(threshold=1)),
    ("no-synchronous-standby", lambda t: [s.update(sync_replicas=0) for s in t["services"]]),
    ("single-vantage-point", lambda t: t.update(probes={"vantage_points": ["tehran"]})),
])
def test_a_weakening_is_allowed_only_when_declared_and_names_its_drill(example: dict[str, Any], weakening: str,
                                                                      change: Any) -> None:
    change(example)
    assert issues_of(copy.deepcopy(example))
    topology = parse_topology(example | {"unsafe": [weakening]})
    [declared] = topology.unsafe
    assert declared.risk and (ROOT / "chaos" / "experiments" / f"{declared.caught_by}.json").exists()
    shipped = load_topology(ROOT / "examples" / "weakened" / f"{weakening}.yaml")
    assert [w.value for w in shipped.unsafe] == [weakening]


def test_vault_site_inside_a_region(example: dict[str, Any]) -> None:
    example["vault"]["sites"][0]["name"] = "tehran"
    assert issues_of(example) == [
        "vault.sites[0].name: vault site 'tehran' is also a service region "
        "(hint: keep backups in a failure domain apart from the regions they protect)"]


def test_threshold_beyond_controllers(example: dict[str, Any]) -> None:
    example["control"]["threshold"] = 4
    assert issues_of(example) == [
        "control.threshold: threshold 4 exceeds the 3 controllers (one per region) "
        "(hint: use a threshold between 1 and 3; a majority is the safe choice)"]


def test_minority_threshold_and_oversized_cap(example: dict[str, Any]) -> None:
    example["control"].update(threshold=1, max_failovers_per_round=9)
    assert issues_of(example) == [
        "control.threshold: threshold 1 is not a majority of the 3 controllers (hint: use at least 2: with a "
        "minority threshold two disjoint groups of controllers could sign conflicting tables)",
        "control.max_failovers_per_round: cap 9 exceeds the 4 services "
        "(hint: use a cap no larger than the catalog, or leave it out for half the catalog)"]


def test_probe_and_control_settings_are_validated(example: dict[str, Any]) -> None:
    example["probes"] = {"interval": "10ms", "timeout": "soon"}
    example["control"]["down_after_rounds"] = 0
    problems = issues_of(example)
    assert any(p.startswith("probes.interval:") for p in problems)
    assert any(p.startswith("probes.timeout:") and "expected a duration" in p for p in problems)
    assert any(p.startswith("control.down_after_rounds:") for p in problems)


def test_duplicate_region_and_repeated_region_in_service(example: dict[str, Any]) -> None:
    example["regions"].append({"name": "tehran"})
    example["services"][0]["regions"] = ["tehran", "tehran", "isfahan"]
    found = issues_of(example)
    assert "regions[3]: region names must be unique: 'tehran' appears twice (hint: rename or remove one)" in found
    assert "services[0] (id '1101').regions: a region is listed twice (hint: list each region once)" in found


def test_schema_errors_name_field_and_fix(example: dict[str, Any]) -> None:
    broken = copy.deepcopy(example)
    broken["services"][0]["ecosystem"] = "Astrology!"
    broken["services"][1]["colour"] = "blue"
    del broken["services"][2]["agency"]
    found = issues_of(broken)
    assert any(f.startswith("services[0].ecosystem: String should match pattern") for f in found)
    assert "services[1].colour: Extra inputs are not permitted (hint: remove it or check its spelling)" in found
    assert "services[2].agency: Field required (hint: add this field)" in found


def test_every_issue_is_reported_at_once(example: dict[str, Any]) -> None:
    example["services"][0]["regions"] = ["nowhere", "tehran"]
    example["services"][1]["sync_replicas"] = 9
    assert len(issues_of(example)) == 2


def test_not_a_mapping() -> None:
    assert issues_of(["regions"]) == [
        "(top level): expected a mapping with regions, vault and services (hint: start from the example national.yaml)"]


def test_bad_yaml_names_line(tmp_path: Path) -> None:
    path = tmp_path / "n.yaml"
    path.write_text("regions:\n  - name: tehran\n bad: [\n")
    with pytest.raises(TopologyError) as info:
        load_topology(path)
    assert info.value.issues[0].location.startswith("line ")
    assert "not valid YAML" in info.value.issues[0].message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match="cannot read"):
        load_topology(tmp_path / "absent.yaml")


@pytest.mark.parametrize(("regions", "sync", "ack"), [(2, 1, 1), (3, 1, 1), (4, 1, 2), (5, 1, 2), (5, 3, 3), (3, 0, 0)])
def test_acknowledgement_needs_a_majority_of_replicas(example: dict[str, Any], regions: int, sync: int,
                                                      ack: int) -> None:
    names = ["tehran", "isfahan", "mashhad", "shiraz", "tabriz"][:regions]
    example["regions"] = [{"name": n} for n in names]
    example["vault"]["sites"] = [{"name": "kish-embassy"}]
    example["services"] = [example["services"][0] | {"regions": names, "sync_replicas": sync}]
    example["control"]["threshold"] = regions // 2 + 1
    if sync == 0:
        example["unsafe"] = ["no-synchronous-standby"]
    service = parse_topology(example).services[0]
    assert service.ack_replicas == ack, \
        "the primary and the standbys it waits for are a majority, sync_replicas 0 aside"


def test_validate_says_what_the_majority_rule_costs(tmp_path: Path, example: dict[str, Any]) -> None:
    from click.testing import CliRunner

    from paydar.cli import cli

    names = ["tehran", "isfahan", "mashhad", "shiraz"]
    example["regions"] = [{"name": n} for n in names]
    example["services"] = [example["services"][0] | {"regions": names, "sync_replicas": 1}]
    example["control"]["threshold"] = 3
    path = tmp_path / "four.yaml"
    path.write_text(yaml.safe_dump(example))
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "service 1101 acknowledges a write once 2 standbys hold it (sync_replicas 1)" in result.output
    assert "majority of its 4 replicas" in result.output


def test_services_speak_the_catalogs_declared_vocabulary(example: dict[str, Any]) -> None:
    broken = copy.deepcopy(example)
    broken["services"][0]["ecosystem"] = "astrology"
    broken["services"][1]["tier"] = 7
    assert issues_of(broken) == [
        "services[0] (id '1101').ecosystem: ecosystem 'astrology' is not declared under vocabulary.ecosystems "
        "(hint: use one of: identity, health, commerce, education, wallet, judiciary, social-welfare, taxation; "
        "or declare it under vocabulary.ecosystems)",
        "services[1] (id '2204').tier: tier 7 is not declared under vocabulary.tiers (hint: use one of: 1, 2, 3; "
        "or declare it under vocabulary.tiers)"]
    open_vocabulary = copy.deepcopy(broken)
    del open_vocabulary["vocabulary"]
    accepted = parse_topology(open_vocabulary, source="<test>")  # without a declared vocabulary, any word
    assert (accepted.services[0].ecosystem, accepted.services[1].tier) == ("astrology", 7)


@pytest.mark.parametrize(("content", "expected"), [
    (b"name: x\nname: y\n", "line 2, column 1: not valid YAML: key 'name' appears twice in one mapping "
                            "(hint: keep one of the two)"),
    (b"name: \xff\xfe\n", "byte 6: not UTF-8 text (hint: save the file as UTF-8 (YAML files are UTF-8))"),
])
def test_a_file_a_new_user_might_write_gets_a_clear_error(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "t.yaml"
    path.write_bytes(content)
    with pytest.raises(TopologyError) as info:
        load_topology(path)
    assert [str(issue) for issue in info.value.issues] == [expected]
