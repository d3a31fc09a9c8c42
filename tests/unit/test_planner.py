"""The next routing table: fence then promote, caps, zero regions, operator intents, votes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from failover.ballot import Ballot
from failover.planner import Overrides, ReplicaState, fenced_views, is_refence, plan, refence
from failover.promotion import ReplicaView
from infra.routing import RouteMode, RoutingTable, initial_table
from infra.topology import NationalTopology, parse_topology

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def topology() -> NationalTopology:
    return parse_topology(yaml.safe_load((ROOT / "national.yaml").read_text()))


def step(table: RoutingTable, routes: dict) -> RoutingTable:
    return table.model_copy(update={"version": table.version + 1, "services": routes})


def views(epoch: int, **positions: int | None) -> dict[str, ReplicaView]:
    states = {r: ReplicaState(epoch=epoch, log_position=p, acked_position=p, compromised=False)
              if p is not None else None for r, p in positions.items()}
    return fenced_views(states, epoch)


def test_primary_down_is_fenced_then_the_best_standby_promoted(topology: NationalTopology) -> None:
    table = initial_table(topology, 0)
    down = {"node.1101.tehran"}
    routes, changes = plan(table, topology, down=down, overrides=Overrides(), views={}, cap=4)
    fence = routes["1101"]
    assert [c.kind for c in changes] == ["fence"]
    assert (fence.primary, fence.mode, fence.epoch, fence.fenced) == (None, RouteMode.READ_ONLY, 2, "tehran")
    assert fence.standbys == ("tehran", "isfahan", "mashhad"), "fenced regions stay: never zero regions"
    fenced = step(table, routes)
    # isfahan is preferred but mashhad holds more: only a candidate with every write is promoted.
    routes, changes = plan(fenced, topology, down=down, overrides=Overrides(),
                           views={"1101": views(2, tehran=None, isfahan=9, mashhad=10)}, cap=4)
    assert (routes["1101"].primary, routes["1101"].epoch) == ("mashhad", 3)
    assert [c.kind for c in changes] == ["promote"]


def test_unprovable_promotion_stays_read_only(topology: NationalTopology) -> None:
    table = initial_table(topology, 0)
    routes, _ = plan(table, topology, down={"node.1101.tehran"}, overrides=Overrides(), views={}, cap=4)
    fenced = step(table, routes)
    # mashhad has not adopted the fenced epoch: its position proves nothing.
    stale = fenced_views({"tehran": None, "isfahan": ReplicaState(2, 9, 9, False),
                          "mashhad": ReplicaState(1, 12, 12, False)}, 2)
    routes, changes = plan(fenced, topology, down={"node.1101.tehran"}, overrides=Overrides(),
                           views={"1101": stale}, cap=4)
    assert changes == [] and routes["1101"].mode is RouteMode.READ_ONLY


def test_cap_limits_fences_per_table(topology: NationalTopology) -> None:
    table = initial_table(topology, 0)
    down = {f"node.{s.id}.{s.home}" for s in topology.services}
    _, changes = plan(table, topology, down=down, overrides=Overrides(), views={}, cap=2)
    assert len(changes) == 2


def test_no_fence_when_nowhere_else_is_usable(topology: NationalTopology) -> None:
    table = initial_table(topology, 0)
    down = {"node.1101.tehran", "node.1101.isfahan", "node.1101.mashhad"}
    routes, changes = plan(table, topology, down=down, overrides=Overrides(), views={}, cap=4)
    assert changes == [] and routes == dict(table.services)


def test_drain_and_move_intents(topology: NationalTopology) -> None:
    table = initial_table(topology, 0)
    _, changes = plan(table, topology, down=set(), overrides=Overrides(drained=frozenset({"tehran"})), views={}, cap=4)
    assert sorted(c.service for c in changes) == ["1101", "4412"]
    moves = Overrides(moves={"1101": "mashhad"})
    routes, _ = plan(table, topology, down=set(), overrides=moves, views={}, cap=4)
    fenced = step(table, routes)
    routes, _ = plan(fenced, topology, down=set(), overrides=moves,
                     views={"1101": views(2, tehran=5, isfahan=5, mashhad=5)}, cap=4)
    assert routes["1101"].primary == "mashhad"


def test_ballot_signs_one_route_per_service_and_epoch(topology: NationalTopology, tmp_path: Path) -> None:
    table = initial_table(topology, 0)
    routes, _ = plan(table, topology, down={"node.1101.tehran"}, overrides=Overrides(), views={}, cap=4)
    fenced = step(table, routes)
    to = {r: plan(fenced, topology, down={"node.1101.tehran"}, overrides=Overrides(),
                  views={"1101": views(2, tehran=None, isfahan=5, mashhad=5)} if r == "isfahan" else
                  {"1101": views(2, tehran=None, isfahan=4, mashhad=5)}, cap=4)[0] for r in ("isfahan", "mashhad")}
    assert to["isfahan"]["1101"].primary == "isfahan" and to["mashhad"]["1101"].primary == "mashhad"
    ballot = Ballot(tmp_path / "votes.json")
    first = step(fenced, to["isfahan"])
    assert ballot.refusal(fenced, first) is None
    ballot.record(fenced, first)
    again = Ballot(tmp_path / "votes.json")  # votes survive a restart
    assert again.refusal(fenced, step(fenced, to["isfahan"])) is None, "the same route may be signed again"
    assert "already signed another route for service 1101 in epoch 3" in str(
        again.refusal(fenced, step(fenced, to["mashhad"])))


def test_split_votes_are_resolved_by_a_refence(topology: NationalTopology, tmp_path: Path) -> None:
    table = initial_table(topology, 0)
    routes, _ = plan(table, topology, down={"node.1101.tehran"}, overrides=Overrides(), views={}, cap=4)
    held = routes["1101"]
    regions = topology.service("1101").regions
    again = refence(held, regions, 5)
    assert (again.mode, again.primary, again.fenced, again.epoch) == (RouteMode.READ_ONLY, None, "tehran", 5)
    assert is_refence(held, again, regions)
    assert not is_refence(held, again.model_copy(update={"primary": "isfahan", "mode": RouteMode.READ_WRITE}), regions)
    assert not is_refence(table.services["1101"], refence(table.services["1101"], regions, 2), regions), \
        "a writable route is never re-fenced by a peer's say-so"
    ballot = Ballot(tmp_path / "votes.json")
    fenced = step(table, routes)
    promoted = step(fenced, {**routes, "1101": held.model_copy(update={"primary": "isfahan", "epoch": 3,
                                                                       "mode": RouteMode.READ_WRITE})})
    ballot.record(fenced, promoted)
    assert ballot.highest_epoch("1101") == 3 and ballot.highest_epoch("2204") == 0
