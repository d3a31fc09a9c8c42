"""The pre-vote: a controller asks its peers before it votes, and signs nothing it did not check
again after asking. A compromised peer that slips a proposal in while the pre-vote is out gets
at most that one signature: never a second successor of the same table."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from paydar.failover.ballot import changes_of
from paydar.failover.config import ControllerConfig
from paydar.failover.controller import Controller
from paydar.failover.decide import decide
from paydar.failover.metrics import ControllerMetrics
from paydar.model.identity import KeyStore
from paydar.model.ids import controller_id, node_id, prober_id
from paydar.model.routing import RoutingTable, SignedTable, TableGuard, initial_table, sign_table
from paydar.model.signing import Signature
from paydar.model.topology import load_topology
from paydar.server.component import Foundation

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "http-service.yaml"


def test_a_proposal_signed_during_the_pre_vote_is_the_only_successor_signed(tmp_path: Path) -> None:
    topology = load_topology(EXAMPLE)
    regions = topology.region_names
    controllers, probers = [controller_id(r) for r in regions], [prober_id(r) for r in regions]
    keys = KeyStore(tmp_path / "keys")
    trust = keys.build_trust_root([*controllers, *probers])
    guard = TableGuard(trust=trust, threshold=topology.control.threshold,
                       known_services=[s.id for s in topology.services])
    guard.accept(sign_table(initial_table(topology, time.time()), [keys.signer(c) for c in controllers]))
    own, rogue = controllers[0], keys.signer(controllers[1])
    foundation = Foundation(topology=topology, trust=trust, signer=keys.signer(own), guard=guard, admin_token="x",
                            table_store=tmp_path / "table.json", trust_root_path=tmp_path / "trust.json")
    unreachable = "http://127.0.0.1:9"
    config = ControllerConfig(
        component=own, region=regions[0], port=1, data_dir=tmp_path, topology=EXAMPLE, trust_root=tmp_path / "t.json",
        key=tmp_path / "k", admin_token_file=tmp_path / "a", table=tmp_path / "table.json",
        probers=dict.fromkeys(probers, unreachable), peers=dict.fromkeys(controllers[1:], unreachable),
        nodes={s.id: dict.fromkeys(s.regions, unreachable) for s in topology.services}, gateways={})
    controller = Controller(config=config, foundation=foundation, metrics=ControllerMetrics.create())
    app, registry = next(iter(topology.http_services)), topology.registry_services[0]
    down = {node_id(app, topology.service(app).home): False, node_id(registry.id, registry.home): False}
    for _ in range(50):
        controller.judge.judge_round({p: dict(down) for p in probers})
    held = controller.table
    signed: list[RoutingTable] = []

    async def prevote(proposal: RoutingTable) -> tuple[int, list[str]]:
        # The compromised peer, on the pre-vote, proposes a part of the same changes, and gets it co-signed.
        part = proposal.model_copy(update={"services": {**held.services, app: proposal.services[app]}})
        await controller.consider(SignedTable(table=part, signatures=(rogue.sign(part.model_dump(mode="json")),)))
        signed.append(part)
        return 1, []

    async def collect(own_signature: Signature, offer: bytes) -> tuple[list[Signature],
                                                                       list[tuple[Signature | None, str]]]:
        signed.append(SignedTable.model_validate_json(offer).table)
        return [own_signature], []

    async def nothing(_: SignedTable) -> None:
        return None

    controller._prevote = prevote  # type: ignore[method-assign]
    controller._collect = collect  # type: ignore[method-assign,assignment]
    controller._certify = nothing  # type: ignore[method-assign,assignment]

    async def run() -> None:
        decision = decide(await controller.snapshot(), topology)
        wanted = held.model_copy(update={"services": decision.routes})
        assert set(changes_of(held, wanted)) == {app, registry.id}, "its own view calls for both changes"
        await controller._propose(decision)

    asyncio.run(run())
    assert len(signed) == 1, "only the proposal co-signed during the pre-vote was signed"
    assert controller.last_proposal is not None and controller.last_proposal.outcome == "waiting"
    assert "already signed another successor" in controller.last_proposal.detail
    assert set(controller.ballot.signed_successor(held) or {}) == {app}
