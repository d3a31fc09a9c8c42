"""The gateway's router serves only what a node proved: a stand-in upstream answers with real
receipts signed by real node keys, and with every forgery a link or a squatter could send."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from paydar.gateway.config import GatewayConfig
from paydar.gateway.metrics import GatewayMetrics
from paydar.gateway.router import Router, Upstream
from paydar.model.identity import KeyStore
from paydar.model.ids import gateway_id, node_id
from paydar.model.routing import TableGuard
from paydar.model.signing import canonical_json
from paydar.model.topology import load_topology
from paydar.node.chain import GENESIS_HASH, Entry, entry_hash
from paydar.node.receipts import prove
from paydar.server.component import Foundation

ROOT = Path(__file__).resolve().parents[2]
SERVICE, NONCE = "1101", "ab12"
DOCUMENT = {"citizen_id": "0012345678", "kind": "diploma", "data": {"grade": 19}}


@pytest.fixture()
def world(tmp_path: Path) -> tuple[Router, KeyStore]:
    topology = load_topology(ROOT / "national.yaml")
    keys = KeyStore(tmp_path / "keys")
    nodes = [node_id(SERVICE, r) for r in topology.service(SERVICE).regions]
    trust = keys.build_trust_root([*nodes, node_id("2204", "tehran"), gateway_id("tehran")])
    foundation = Foundation(topology=topology, trust=trust, signer=keys.signer(gateway_id("tehran")),
                            guard=TableGuard(trust=trust, threshold=topology.control.threshold,
                                             known_services=[s.id for s in topology.services]),
                            admin_token="x", table_store=tmp_path / "table.json", trust_root_path=tmp_path / "t.json")
    config = GatewayConfig(component=gateway_id("tehran"), region="tehran", port=1, data_dir=tmp_path,
                           topology=ROOT / "national.yaml", trust_root=tmp_path / "t.json", key=tmp_path / "k",
                           admin_token_file=tmp_path / "a", table=tmp_path / "table.json", nodes={}, gateways={})
    return Router(config=config, foundation=foundation, metrics=GatewayMetrics.create("tehran")), keys


def entry(body: dict[str, Any] = DOCUMENT, doc_id: str = "d1") -> Entry:
    text = canonical_json(body).decode()
    return Entry(position=1, epoch=1, doc_id=doc_id, body=text, prev_hash=GENESIS_HASH,
                 hash=entry_hash(SERVICE, 1, 1, doc_id, text, GENESIS_HASH, 5), written_ms=5)


def answer(keys: KeyStore, *, signer: str = node_id(SERVICE, "tehran"), node: str = node_id(SERVICE, "tehran"),
           nonce: str = NONCE, served: Entry | None = None, acknowledged: bool = False) -> Upstream:
    proof = prove(keys.signer(signer), service=SERVICE, node=node, entry=served or entry(), role="primary",
                  stale=False, acknowledged=acknowledged, nonce=nonce)
    return Upstream(200, json.dumps({"doc_id": "d1", "anything": "the node says", "proof": proof.model_dump(
        mode="json")}).encode(), "tehran")


def proven(router: Router, upstream: Upstream, method: str = "GET", body: bytes | None = None) -> Upstream | None:
    return router._proven(upstream, method, SERVICE, "/v1/documents/d1", "", body, {node_id(SERVICE, "tehran")},
                          NONCE)


def test_a_proven_document_is_served_rebuilt_from_its_receipt_alone(world: tuple[Router, KeyStore]) -> None:
    router, keys = world
    served = proven(router, answer(keys))
    assert served is not None and served.status == 200
    document = json.loads(served.body)
    assert document["data"] == {"grade": 19} and "anything" not in document, "nothing unproven is passed on"
    assert document["served_by"] == {"region": "tehran", "role": "primary"}


@pytest.mark.parametrize(("forgery", "why"), [
    ({"signer": node_id(SERVICE, "isfahan")}, "signed by another replica's real key, naming the one asked"),
    ({"signer": node_id("2204", "tehran"), "node": node_id("2204", "tehran")}, "another service's node"),
    ({"nonce": "cd34"}, "a replayed answer to an earlier request"),
    ({"served": entry(doc_id="d2")}, "a genuine receipt for another document"),
])
def test_an_answer_that_does_not_prove_itself_is_dropped_and_counted(world: tuple[Router, KeyStore],
                                                                     forgery: dict[str, Any], why: str) -> None:
    router, keys = world
    assert proven(router, answer(keys, **forgery)) is None, why
    assert router.metrics.registry.get_sample_value("paydar_gateway_unproven_answers_total",
                                                    {"region": "tehran", "target_region": "tehran"}) == 1


def test_an_acknowledgement_counts_only_for_the_document_that_was_sent(world: tuple[Router, KeyStore]) -> None:
    router, keys = world
    sent = json.dumps(DOCUMENT).encode()
    assert proven(router, answer(keys, acknowledged=True), "PUT", sent) is not None
    other = json.dumps(DOCUMENT | {"data": {"grade": 20}}).encode()
    assert proven(router, answer(keys, acknowledged=True), "PUT", other) is None, "acknowledged something else"
    assert proven(router, answer(keys), "PUT", sent) is None, "a read receipt is no acknowledgement"


def test_errors_pass_through_untouched_and_garbage_is_dropped(world: tuple[Router, KeyStore]) -> None:
    router, _ = world
    not_found = Upstream(404, b'{"error": "no such document"}', "tehran")
    assert proven(router, not_found) is not_found
    assert proven(router, Upstream(200, b"<html>", "tehran")) is None
    assert proven(router, Upstream(200, b'{"proof": {"entry": 1}}', "tehran")) is None
