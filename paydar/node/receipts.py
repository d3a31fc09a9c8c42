"""Signed receipts: the proof, inside every answer, that a document came from an authorised node.

Links and ports are not trusted: a link proxy can rewrite an answer, a process squatting a
crashed node's port can answer anything. So every document a node serves (and every write it
acknowledges) carries a :class:`Proof`: the whole log entry, and the node's signature over
the service, the entry's hash, position and epoch, which region and role served it, whether
it is possibly stale, whether the write was acknowledged, and the nonce the asking gateway
sent (so an old answer cannot be replayed as a fresh one). A gateway serves a document only
after :func:`check_proof` verified the signature with the key the trust root lists for the
node it asked, and the entry's hash against its content, so the proof holds over any transport.

(A compromised node signs whatever it likes with its own key; the probers' cross-replica
chain comparison is what catches a node that forges its own history.)
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from typing import Any

from pydantic import Field

from paydar.model.errors import IdentityError, SignatureError
from paydar.model.identity import TrustRoot
from paydar.model.signing import Signature, Signer, verify
from paydar.model.wire import WireModel
from paydar.node.chain import Entry

__all__ = ["NONCE_HEADER", "NONCE_PATTERN", "Proof", "check_proof", "nonce_of", "prove", "render"]

NONCE_HEADER = "X-Paydar-Nonce"
NONCE_PATTERN = r"^[0-9a-f]{0,64}$"


def nonce_of(headers: Mapping[str, str]) -> str | None:
    """The request's nonce when it is well-formed (None otherwise)."""
    value = headers.get(NONCE_HEADER, "")
    return value if re.fullmatch(NONCE_PATTERN, value) else None


class Proof(WireModel):
    """A served entry and its node's signed receipt."""

    entry: Entry
    node: str = Field(max_length=200)
    role: str = Field(max_length=32)
    stale: bool
    acknowledged: bool = False
    nonce: str = Field(default="", pattern=NONCE_PATTERN)
    signature: Signature


def _receipt(service: str, proof_fields: dict[str, object]) -> list[object]:
    entry = proof_fields["entry"]
    assert isinstance(entry, Entry)
    return ["paydar-receipt-v1", service, proof_fields["node"], entry.doc_id, entry.hash, entry.position,
            entry.epoch, proof_fields["role"], proof_fields["stale"], proof_fields["acknowledged"],
            proof_fields["nonce"]]


def prove(signer: Signer, *, service: str, node: str, entry: Entry, role: str, stale: bool,
          acknowledged: bool = False, nonce: str = "") -> Proof:
    """The node's proof for one entry it serves (or acknowledges), bound to the asker's ``nonce``."""
    fields: dict[str, object] = {"entry": entry, "node": node, "role": role, "stale": stale,
                                 "acknowledged": acknowledged, "nonce": nonce}
    return Proof(entry=entry, node=node, role=role, stale=stale, acknowledged=acknowledged, nonce=nonce,
                 signature=signer.sign(_receipt(service, fields)))


def render(proof: Proof, region: str) -> dict[str, Any]:
    """A served document as citizens see it, built from the proof alone (node and gateway alike)."""
    entry = proof.entry
    document = {"doc_id": entry.doc_id, **json.loads(entry.body), "position": entry.position, "epoch": entry.epoch,
                "hash": entry.hash, "stale": proof.stale, "served_by": {"region": region, "role": proof.role},
                "proof": proof.model_dump(mode="json")}
    return {"acknowledged": True, **document} if proof.acknowledged else document


def check_proof(proof: Proof, *, service: str, nodes: Collection[str], doc_id: str | None, nonce: str,
                trust: TrustRoot) -> Entry:
    """The proven entry; raise :class:`SignatureError` naming what does not hold.

    ``nodes`` are the nodes whose receipt is acceptable here: the one asked, or any replica of
    the service when the answer was relayed by another region's gateway.
    """
    node = proof.node
    if proof.nonce != nonce:
        raise SignatureError("receipt is not for this request (its nonce differs): a replayed answer")
    if node not in nodes:
        raise SignatureError(f"receipt names {node}, not a node asked for service {service}")
    if doc_id is not None and proof.entry.doc_id != doc_id:
        raise SignatureError(f"receipt is for document {proof.entry.doc_id!r}, not {doc_id!r}")
    if not proof.entry.intact(service):
        raise SignatureError(f"entry at position {proof.entry.position} does not match its hash")
    try:
        kid, key = trust.key_of(node)
    except IdentityError as exc:
        raise SignatureError(str(exc)) from None
    if proof.signature.key_id != kid:
        raise SignatureError(f"receipt signed by key {proof.signature.key_id}, not {node}'s")
    verify(_receipt(service, proof.model_dump() | {"entry": proof.entry}), proof.signature, key)
    return proof.entry
