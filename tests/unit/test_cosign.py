"""The controller's co-signing rules, decision by decision, each with the reason it gives."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from paydar.failover.ballot import Ballot
from paydar.failover.cosign import CosignReason, decide_cosign
from paydar.failover.planner import Overrides, plan
from paydar.model.routing import RoutingTable, ServiceRoute, initial_table
from paydar.model.topology import NationalTopology, parse_topology

ROOT = Path(__file__).resolve().parents[2]
NOW = 1_000.0
TTL = 7 * 86400.0


@pytest.fixture()
def topology() -> NationalTopology:
    return parse_topology(yaml.safe_load((ROOT / "national.yaml").read_text()))


@pytest.fixture()
def held(topology: NationalTopology) -> RoutingTable:
    return initial_table(topology, NOW)


def proposal(held: RoutingTable, routes: dict[str, ServiceRoute], **update: object) -> RoutingTable:
    fields = {"version": held.version + 1, "issued_at": NOW, "expires_at": NOW + TTL, "previous": held.digest(),
              "services": routes, **update}
    return held.model_copy(update=fields)


def fence_1101(topology: NationalTopology, held: RoutingTable) -> dict[str, ServiceRoute]:
    return plan(held, topology, down={"node.1101.tehran"}, overrides=Overrides(), views={}, cap=4)[0]


def decide(held: RoutingTable, offered: RoutingTable, own: dict[str, ServiceRoute], *, ballot: Ballot | None = None,
           signed: bool = True, under_signed: bool = False) -> CosignReason:
    return decide_cosign(held=held, proposal=offered, own_routes=own, signed_by_controller=signed,
                         under_signed=under_signed, ballot=ballot or Ballot(), now=NOW, ttl=TTL, skew=30.0).reason


def test_agrees_with_its_own_view_and_with_part_of_it(topology: NationalTopology, held: RoutingTable) -> None:
    own = plan(held, topology, down={"node.1101.tehran", "node.4412.tehran"}, overrides=Overrides(), views={},
               cap=4)[0]
    assert decide(held, proposal(held, own), own) is CosignReason.AGREE
    assert decide(held, proposal(held, fence_1101(topology, held)), own) is CosignReason.AGREE, \
        "fewer changes than my view calls for, none other: each is justified on its own"


@pytest.mark.parametrize(("change", "expected"), [
    ({"version": 3}, CosignReason.NOT_NEXT),
    ({"previous": "f" * 64}, CosignReason.WRONG_PREDECESSOR),
    ({"previous": ""}, CosignReason.WRONG_PREDECESSOR),
    ({"issued_at": NOW + 3600, "expires_at": NOW + 3600 + TTL}, CosignReason.TIMESTAMPS),
    ({"expires_at": NOW + 10 * TTL}, CosignReason.TIMESTAMPS),
])
def test_refuses_a_proposal_that_is_not_the_next_table(topology: NationalTopology, held: RoutingTable,
                                                       change: dict[str, object], expected: CosignReason) -> None:
    own = fence_1101(topology, held)
    assert decide(held, proposal(held, own, **change), own) is expected


def test_refuses_what_its_own_view_does_not_call_for(topology: NationalTopology, held: RoutingTable) -> None:
    own = fence_1101(topology, held)
    promoted = {**held.services, "1101": held.services["1101"].model_copy(update={"primary": "isfahan", "epoch": 2,
                                                                                   "standbys": ("tehran", "mashhad")})}
    decision = decide_cosign(held=held, proposal=proposal(held, promoted), own_routes=own, signed_by_controller=True,
                             under_signed=False, ballot=Ballot(), now=NOW, ttl=TTL, skew=30.0)
    assert decision.reason is CosignReason.VIEW_DIFFERS and str(decision) == "my own view differs: service(s) 1101"
    assert decide(held, proposal(held, dict(held.services)), own) is CosignReason.NOTHING_CHANGES, \
        "a successor that changes nothing would let a rogue fork the table lineage at will"
    assert decide(held, proposal(held, own), own, signed=False) is CosignReason.NOT_SIGNED
    fewer = {k: v for k, v in own.items() if k != "2204"}
    assert decide(held, proposal(held, fewer), own) is CosignReason.OTHER_SERVICES


def test_an_epoch_moves_by_exactly_one(topology: NationalTopology, held: RoutingTable) -> None:
    own = fence_1101(topology, held)
    inflated = {**own, "1101": own["1101"].model_copy(update={"epoch": 1_000_004})}
    decision = decide_cosign(held=held, proposal=proposal(held, inflated), own_routes=inflated,
                             signed_by_controller=True, under_signed=False, ballot=Ballot(), now=NOW, ttl=TTL,
                             skew=30.0)
    assert decision.reason is CosignReason.EPOCH_JUMP and decision.detail == "1101 1->1000004", \
        "even a route my own view would take is refused at an inflated epoch"


def test_keeps_its_votes(topology: NationalTopology, held: RoutingTable) -> None:
    own_a = fence_1101(topology, held)
    own_b = plan(held, topology, down={"node.4412.tehran"}, overrides=Overrides(), views={}, cap=4)[0]
    ballot = Ballot()
    ballot.record(held, proposal(held, own_a))
    assert decide(held, proposal(held, own_a, issued_at=NOW + 1, expires_at=NOW + 1 + TTL), own_a,
                  ballot=ballot) is CosignReason.AGREE, "the same successor retried is signed again"
    assert decide(held, proposal(held, own_b), own_b, ballot=ballot) is CosignReason.VOTED_OTHER, \
        "never a second, different successor of one table"


def test_a_rotated_key_lets_the_same_routes_be_signed_again(topology: NationalTopology, held: RoutingTable) -> None:
    same = proposal(held, dict(held.services))
    assert decide(held, same, dict(held.services), under_signed=True) is CosignReason.AGREE
