"""Each service against its own RTO and RPO: the recovery arithmetic, the causes in words, the
accepted limits, tiers first; and the safeguard's floor."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from paydar.chaos.load import Sample
from paydar.chaos.safeguard import Safeguard
from paydar.drill.verdict import Outcome, judge, outage
from paydar.model.topology import NationalTopology, parse_topology

ROOT = Path(__file__).resolve().parents[2]


def topology(**extra: Any) -> NationalTopology:
    """The example plus service x9 in its first two regions (writes stop when either is lost)."""
    example: dict[str, Any] = yaml.safe_load((ROOT / "national.yaml").read_text())
    data = copy.deepcopy(example)
    regions = [r["name"] for r in data["regions"]]
    data["services"].append({"id": "x9", "name": "X", "agency": data["services"][0]["agency"],
                             "ecosystem": data["services"][0]["ecosystem"], "tier": 1, "rto": "5s", "rpo": "0s",
                             "sync_replicas": 1, "regions": regions[:2]} | extra)
    return parse_topology(data, source="<test>")


def test_outage_runs_from_the_attack_to_the_first_success_after_the_last_failure() -> None:
    assert outage([(1.0, True), (2.0, True)], 0.0) == 0.0
    assert outage([(1.0, True), (2.0, False), (3.0, False), (4.5, True), (5.0, True)], 1.5) == 3.0
    assert outage([(1.0, False), (2.0, True), (3.0, False)], 0.0) is None, "still failing when the cell ended"
    assert outage([(1.0, False), (9.0, False), (12.0, True)], 0.0, until=8.0) == 12.0, \
        "the next cell's failures are its own, but the first success may come after its attack began"


def samples(service: str, region: str, failing: tuple[float, float], until: float) -> list[Sample]:
    """One interaction every half second from 100.0 to ``until``; writes refused within ``failing``,
    reads always served."""
    points, at = [], 100.0
    while at < until:
        ok = not failing[0] <= at < failing[1]
        points.append(Sample(at, region, ok, service, acknowledged=ok, read=True, doc_id=f"{service}-{at}"))
        at += 0.5
    return points


def test_a_missed_rto_fails_with_the_arithmetic_in_words() -> None:
    topo = topology()
    lost_region = topo.service("x9").regions[1]
    cell = {"name": f"region.{lost_region}:partition", "window": [101.0, 130.0], "affected_region": lost_region,
            "fault": {"component": f"region.{lost_region}"}}
    other = next(r for r in topo.region_names if r != lost_region)
    verdicts = {v.service: v for v in judge(topo, [cell], samples("x9", other, (101.0, 131.0), 140.0), {})}
    x9 = verdicts["x9"]
    assert x9.outcome is Outcome.MISSED and x9.worst_writes == 30.0 and x9.worst_reads == 0.0
    assert x9.worst_writes_cell == cell["name"]
    assert x9.causes == [f"x9 needs 1 synchronous standby(s); after losing {lost_region} only 0 remain(s): writes stop "
                         f"until {lost_region} returns ({cell['name']}: writes took 30.0s, rto 5s)"]
    assert verdicts[topo.services[0].id].outcome is Outcome.UNMEASURED, "no request of it: nothing to judge"


def test_an_accepted_limit_passes_with_its_statement_never_silently() -> None:
    topo = topology(accepts=["read-only-after-region-loss"])
    lost_region = topo.service("x9").regions[1]
    cell = {"name": "node.x9@standby:crash", "window": [101.0, 130.0], "affected_region": None,
            "fault": {"component": f"node.x9.{lost_region}"}}
    [x9] = [v for v in judge(topo, [cell], samples("x9", lost_region, (101.0, 131.0), 140.0), {})
            if v.service == "x9"]
    assert x9.outcome is Outcome.ACCEPTED and x9.causes == []
    assert x9.accepted == [f"node.x9@standby:crash: read-only as accepted (x9 needs 1 synchronous standby(s); after "
                           f"losing {lost_region} only 0 remain(s): writes stop until {lost_region} returns)"]


def test_an_accepted_limit_is_stated_even_when_the_fault_was_short() -> None:
    topo = topology(accepts=["read-only-after-region-loss"])
    lost_region = topo.service("x9").regions[1]
    cell = {"name": "node.x9@standby:hang", "window": [101.0, 104.0], "affected_region": None,
            "fault": {"component": f"node.x9.{lost_region}"}}
    [x9] = [v for v in judge(topo, [cell], samples("x9", lost_region, (101.0, 103.0), 110.0), {})
            if v.service == "x9"]
    assert x9.outcome is Outcome.ACCEPTED and len(x9.accepted) == 1, "2 s read-only is within the RTO, yet stated"


def test_an_accepted_limit_does_not_excuse_a_fault_that_takes_no_replica() -> None:
    topo = topology(accepts=["read-only-after-region-loss"])
    cell = {"name": "gateway.x:flood", "window": [101.0, 130.0], "affected_region": None, "fault": None}
    [x9] = [v for v in judge(topo, [cell], samples("x9", topo.region_names[0], (101.0, 120.0), 140.0), {})
            if v.service == "x9"]
    assert x9.outcome is Outcome.MISSED
    assert x9.causes == ["x9 writes took 19.0s to recover after gateway.x:flood, beyond its rto of 5s"]


def test_reads_are_judged_and_the_gateway_of_the_affected_region_is_not() -> None:
    topo = topology()
    region = topo.region_names[0]
    cell = {"name": f"gateway.{region}:crash", "window": [101.0, 110.0], "affected_region": region,
            "fault": {"component": f"gateway.{region}"}}
    unserved = [Sample(at, region, False, "x9", acknowledged=False, read=False) for at in (102.0, 103.0, 104.0)]
    [x9] = [v for v in judge(topo, [cell], unserved, {}) if v.service == "x9"]
    assert x9.outcome is Outcome.UNMEASURED, "the affected region's own citizens are not promised service"
    other = topo.region_names[1]
    stale = [Sample(102.0, other, False, "x9", acknowledged=True, read=False),
             Sample(109.0, other, True, "x9", acknowledged=True, read=True)]
    [x9] = [v for v in judge(topo, [cell], stale, {}) if v.service == "x9"]
    assert (x9.worst_reads, x9.outcome) == (8.0, Outcome.MISSED)
    assert "reads took 8.0s" in x9.causes[0]


def test_lost_writes_are_held_to_the_rpo_and_tiers_come_first() -> None:
    topo = topology()
    verdicts = judge(topo, [], [], {"x9": [100.0], topo.services[0].id: [None]})
    assert [v.tier for v in verdicts] == sorted(v.tier for v in verdicts)
    by_id = {v.service: v for v in verdicts}
    assert by_id["x9"].causes == ["x9 lost 1 acknowledged write(s), beyond its rpo of 0s"]
    assert by_id["x9"].lost == 1
    tolerant = topology(rpo="10s")
    cell = {"name": "c", "window": [700.0, 710.0], "affected_region": None, "fault": None}
    [recent] = [v for v in judge(tolerant, [cell], [], {"x9": [695.0]}) if v.service == "x9"]
    assert recent.causes == [], "sent 5 s before the fault: within an rpo of 10 s"
    [old] = [v for v in judge(tolerant, [cell], [], {"x9": [100.0]}) if v.service == "x9"]
    assert old.causes == ["x9 lost 1 acknowledged write(s), beyond its rpo of 10s"], "10 minutes before it: beyond"


def test_a_service_no_citizen_request_reached_is_unmeasured_not_met() -> None:
    topo = topology()
    cell = {"name": "c", "window": [101.0, 110.0], "affected_region": None, "fault": None}
    verdicts = {v.service: v for v in judge(topo, [cell], samples("x9", topo.region_names[0], (0, 0), 120.0), {})}
    assert verdicts["x9"].outcome is Outcome.MET
    other = verdicts[topo.services[0].id]
    assert other.outcome is Outcome.UNMEASURED and other.unmeasured == ["c"]


def test_a_delayed_link_takes_no_replica_and_a_cut_one_only_from_a_primary_behind_it() -> None:
    topo = topology(accepts=["read-only-after-region-loss"])
    first, second = topo.service("x9").regions
    delayed = {"name": "d", "window": [101.0, 130.0], "affected_region": None,
               "fault": {"kind": "delay", "component": f"link.{first}.{second}", "primaries": {"x9": first}}}
    [x9] = [v for v in judge(topo, [delayed], samples("x9", first, (101.0, 120.0), 140.0), {}) if v.service == "x9"]
    assert x9.outcome is Outcome.MISSED and x9.accepted == [], "a delay does not excuse stopped writes"
    cut_behind = {**delayed, "fault": {"kind": "cut", "component": f"link.{second}.{first}",
                                       "primaries": {"x9": first}}}
    [x9] = [v for v in judge(topo, [cut_behind], samples("x9", first, (101.0, 120.0), 140.0), {})
            if v.service == "x9"]
    assert x9.outcome is Outcome.MISSED, "the primary's replication does not cross that link"
    cut = {**delayed, "fault": {"kind": "cut", "component": f"link.{first}.{second}", "primaries": {"x9": first}}}
    [x9] = [v for v in judge(topo, [cut], samples("x9", first, (101.0, 120.0), 140.0), {}) if v.service == "x9"]
    assert x9.outcome is Outcome.ACCEPTED


def test_the_safeguard_aborts_only_after_the_floor_stays_broken_for_longer_than_allowed() -> None:
    guard = Safeguard(floor=0.5, seconds=10)
    assert guard.observe(0.2, 0.0) == "" and guard.observe(0.4, 9.0) == ""
    assert guard.observe(0.9, 9.5) == "", "one good measurement resets the clock"
    assert guard.observe(0.1, 10.0) == "" and guard.observe(0.1, 19.9) == ""
    reason = guard.observe(0.25, 20.5)
    assert reason.startswith("availability through the unaffected regions stayed below the floor of 50% for 10.5s")
    assert "aborted and rolled back" in reason
    assert Safeguard.of({"paydar_floor": 0.8, "paydar_floor_seconds": 3}) == Safeguard(0.8, 3.0)
