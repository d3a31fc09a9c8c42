"""The next routing table: fence then promote, caps, zero regions, operator intents, votes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from paydar.failover.ballot import Ballot
from paydar.failover.planner import Overrides, ReplicaState, fenced_views, plan
from paydar.failover.promotion import ReplicaView
from paydar.model.routing import RouteMode, RoutingTable, ServiceRoute, initial_table
from paydar.model.topology import NationalTopology, parse_topology

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def topology() -> NationalTopology:
    return parse_topology(yaml.safe_load((ROOT / "national.yaml").read_text()))


def step(table: RoutingTable, routes: dict[str, ServiceRoute]) -> RoutingTable:
    return table.model_copy(update={"version": table.version + 1, "services": routes, "previous": table.digest()})


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


def test_a_candidate_still_judged_down_is_passed_over(topology: NationalTopology) -> None:
    """Back from a fault, a replica answers before the controllers judge it up again: promoted then,
    it would be fenced at the next round (and a second fault meanwhile leaves no primary)."""
    table = initial_table(topology, 0)
    routes, _ = plan(table, topology, down={"node.1101.tehran"}, overrides=Overrides(), views={}, cap=4)
    fenced = step(table, routes)
    returning = {"node.1101.tehran", "node.1101.mashhad"}
    routes, changes = plan(fenced, topology, down=returning, overrides=Overrides(),
                           views={"1101": views(2, tehran=None, isfahan=10, mashhad=10)}, cap=4)
    assert (routes["1101"].primary, [c.kind for c in changes]) == ("isfahan", ["promote"]), \
        "the equally proven candidate judged up is the one promoted"
    routes, changes = plan(fenced, topology, down=returning, overrides=Overrides(),
                           views={"1101": views(2, tehran=None, isfahan=9, mashhad=10)}, cap=4)
    assert changes == [] and routes["1101"].mode is RouteMode.READ_ONLY, \
        "the only candidate holding every write is still judged down: wait for it"


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
    assert again.conflicts(fenced, step(fenced, to["mashhad"])) == {
        "1101": "already signed another route for service 1101 in epoch 3"}, "the route vote holds on its own"


def test_ballot_signs_one_successor_per_table(topology: NationalTopology, tmp_path: Path) -> None:
    table = initial_table(topology, 0)
    fence_1101, _ = plan(table, topology, down={"node.1101.tehran"}, overrides=Overrides(), views={}, cap=4)
    fence_both, _ = plan(table, topology, down={"node.1101.tehran", "node.4412.tehran"}, overrides=Overrides(),
                         views={}, cap=4)
    ballot = Ballot(tmp_path / "votes.json")
    first = step(table, fence_1101)
    ballot.record(table, first)
    again = Ballot(tmp_path / "votes.json")
    retried = first.model_copy(update={"issued_at": 99.0, "reason": "retried"})
    assert again.refusal(table, retried) is None, "the same changes with fresh timestamps may be signed again"
    assert again.refusal(table, step(table, fence_both)) == "already signed another successor of table v1"
    assert again.signed_successor(table) == {"1101": fence_1101["1101"]}


def test_ballot_prunes_votes_the_table_in_force_made_moot(topology: NationalTopology, tmp_path: Path) -> None:
    table = initial_table(topology, 0)
    routes, _ = plan(table, topology, down={"node.1101.tehran"}, overrides=Overrides(), views={}, cap=4)
    fenced = step(table, routes)
    ballot = Ballot(tmp_path / "votes.json")
    ballot.record(table, fenced)
    promoted, _ = plan(fenced, topology, down={"node.1101.tehran"}, overrides=Overrides(),
                       views={"1101": views(2, tehran=None, isfahan=5, mashhad=5)}, cap=4)
    final = step(fenced, promoted)
    ballot.record(fenced, final)
    assert set(ballot.votes) == {"1101@2", "1101@3"} and len(ballot.successors) == 2
    assert ballot.prune(final) == 3, "the epoch-2 vote and both successor votes are moot once v3 is in force"
    assert set(ballot.votes) == {"1101@3"} and ballot.successors == {}
    assert set(Ballot(tmp_path / "votes.json").votes) == {"1101@3"}, "pruning is kept on disk"


def test_ballot_reads_the_first_file_format(tmp_path: Path) -> None:
    (tmp_path / "votes.json").write_text('{"1101@2": "{}"}')
    assert Ballot(tmp_path / "votes.json").votes == {"1101@2": "{}"}


def _as_database(topology: NationalTopology) -> NationalTopology:
    data = topology.model_dump(mode="json", exclude_defaults=True)
    data["services"] = [dict(s, workload="postgres") if s["id"] == "1101" else s for s in data["services"]]
    return parse_topology(data)


def test_a_database_is_promoted_on_its_standbys_proof_alone(topology: NationalTopology) -> None:
    """A stopped PostgreSQL primary cannot say what was acknowledged: its claim is never the
    requirement, it is never a candidate, and a standby lacking what another holds is refused."""
    database = _as_database(topology)
    table = initial_table(database, 0)
    routes, _ = plan(table, database, down={"node.1101.tehran"}, overrides=Overrides(), views={}, cap=4)
    fenced = step(table, routes)
    # The fenced primary answers with a low acknowledged position: for the registry that would be
    # the requirement, and the preferred standby (isfahan, behind mashhad) would be promoted.
    answers = views(2, tehran=5, isfahan=9, mashhad=10)
    routes, changes = plan(fenced, database, down={"node.1101.tehran"}, overrides=Overrides(),
                           views={"1101": answers}, cap=4)
    assert (routes["1101"].primary, [c.kind for c in changes]) == ("mashhad", ["promote"])
    assert "it holds position 10 >= 10" in changes[0].detail, "the most advanced standby's position is required"
    # One standby silent: the other's word cannot prove where acknowledged commits are.
    routes, changes = plan(fenced, database, down={"node.1101.tehran"}, overrides=Overrides(),
                           views={"1101": views(2, tehran=5, isfahan=9, mashhad=None)}, cap=4)
    assert changes == [] and routes["1101"].mode is RouteMode.READ_ONLY
    # An operator asks for the lagging standby: refused, the service stays read-only.
    routes, changes = plan(fenced, database, down={"node.1101.tehran"},
                           overrides=Overrides(moves={"1101": "isfahan"}), views={"1101": answers}, cap=4)
    assert changes == [] and routes["1101"].mode is RouteMode.READ_ONLY
