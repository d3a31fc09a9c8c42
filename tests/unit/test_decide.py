"""The controller's pure core: one snapshot in, one verdict with its reason out."""

from __future__ import annotations

from pathlib import Path

import pytest

from paydar.failover.decide import Snapshot, Verdict, decide, proposal_of
from paydar.failover.planner import Overrides
from paydar.model.routing import RoutingTable, initial_table
from paydar.model.topology import NationalTopology, load_topology

ROOT = Path(__file__).resolve().parents[2]
NOW = 1_800_000_000.0


@pytest.fixture()
def topology() -> NationalTopology:
    return load_topology(ROOT / "national.yaml")


@pytest.fixture()
def held(topology: NationalTopology) -> RoutingTable:
    return initial_table(topology, NOW)


def test_a_healthy_view_leaves_the_held_table_in_force(topology: NationalTopology, held: RoutingTable) -> None:
    decision = decide(Snapshot(held=held, down=frozenset(), overrides=Overrides()), topology)
    assert decision.verdict is Verdict.STEADY
    assert decision.reason == "the held table already routes what this controller's view calls for"
    assert (decision.routes, decision.changes) == (held.services, ())


def test_a_primary_judged_down_is_fenced_and_the_reason_names_it(topology: NationalTopology,
                                                                 held: RoutingTable) -> None:
    service = topology.services[0]
    primary = held.services[service.id].primary
    decision = decide(Snapshot(held=held, down=frozenset({f"node.{service.id}.{primary}"}), overrides=Overrides()),
                      topology)
    assert decision.verdict is Verdict.PROPOSE
    assert [(c.service, c.kind) for c in decision.changes] == [(service.id, "fence")]
    assert decision.reason == str(decision.changes[0])
    assert not decision.routes[service.id].writable, "fenced first: read-only in the next epoch"
    assert decision.routes[service.id].epoch == held.services[service.id].epoch + 1


def test_an_under_signed_table_is_re_signed_unless_the_own_key_is_the_untrusted_one(
        topology: NationalTopology, held: RoutingTable) -> None:
    under = Snapshot(held=held, down=frozenset(), overrides=Overrides(), valid_signers=1, under_signed=True)
    decision = decide(under, topology)
    assert decision.verdict is Verdict.RESIGN
    assert decision.reason == "re-sign table: only 1 of its signatures verify under the current trust root"
    assert decision.routes == held.services
    rotated_self = Snapshot(held=held, down=frozenset(), overrides=Overrides(), valid_signers=1, under_signed=True,
                            own_key_trusted=False)
    assert decide(rotated_self, topology).verdict is Verdict.STEADY


def test_the_proposal_is_the_next_version_chained_to_the_held_table(topology: NationalTopology,
                                                                   held: RoutingTable) -> None:
    service = topology.services[0]
    down = frozenset({f"node.{service.id}.{held.services[service.id].primary}"})
    decision = decide(Snapshot(held=held, down=down, overrides=Overrides()), topology)
    proposal = proposal_of(held, decision, proposer="controller.x", now=NOW + 5, ttl=60)
    assert (proposal.version, proposal.previous, proposal.services) == (held.version + 1, held.digest(),
                                                                        decision.routes)
    assert (proposal.issued_at, proposal.expires_at) == (NOW + 5, NOW + 65)
    assert proposal.reason == f"controller.x: {decision.reason}"
