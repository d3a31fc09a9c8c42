"""Both halves of replication over a stand-in node: the standby's admission rule, the reply it
signs, and the primary's refusal of every reply that does not prove itself."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, cast

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from paydar.model.errors import IdentityError, SignatureError
from paydar.model.routing import SignedTable
from paydar.model.signing import Signature, Signer, verify
from paydar.node.chain import GENESIS_HASH, Entry, entry_hash
from paydar.node.errors import LogMismatch
from paydar.node.models import ReplicationBatch, ReplicationReply, ReplyStatus, SignedBatch, SignedReply
from paydar.node.replication import Admission, Replicator, admit, answer_batch

SERVICE = "s1"
SIGNERS = {f"node.{SERVICE}.{r}": Signer(Ed25519PrivateKey.generate()) for r in ("a", "b", "c")}
PUBLIC = {cid: s._key.public_key() for cid, s in SIGNERS.items()}


def entries(n: int) -> list[Entry]:
    found, prev = [], GENESIS_HASH
    for position in range(1, n + 1):
        digest = entry_hash(SERVICE, position, 1, f"d{position}", "{}", prev, position)
        found.append(Entry(position=position, epoch=1, doc_id=f"d{position}", body="{}", prev_hash=prev,
                           hash=digest, written_ms=position))
        prev = digest
    return found


def batch(*, sender: str = "a", epoch: int = 1, held: int = 2) -> ReplicationBatch:
    return ReplicationBatch(service=SERVICE, sender=f"node.{SERVICE}.{sender}", epoch=epoch, table_version=3,
                            acked_position=0, head_position=held, prev_position=0, prev_hash=GENESIS_HASH,
                            entries=entries(held))


@dataclass
class StandIn:
    """A node as replication sees it: its identity, its route and a log in memory."""

    component: str = f"node.{SERVICE}.b"
    service: str = SERVICE
    replication_timeout: float = 1.0
    compromised: str | None = None
    epoch: int = 1
    table_version: int = 3
    primary_region: str | None = "a"
    is_primary: bool = False
    log: list[Entry] = field(default_factory=list)
    mismatch: bool = False

    @property
    def table(self) -> SignedTable:
        raise AssertionError("no table is sent in these cases")

    def key_of(self, component: str) -> tuple[str, Ed25519PublicKey]:
        if component not in SIGNERS:
            raise IdentityError(f"no key for {component}")
        return SIGNERS[component].key_id, PUBLIC[component]

    def sign(self, payload: Any) -> Signature:
        return SIGNERS[self.component].sign(payload)

    def may_replicate(self) -> bool:
        return self.is_primary

    async def head_position(self) -> int:
        return len(self.log)

    async def build_batch(self, start: int, *, include_table: bool, max_bytes: int) -> ReplicationBatch:
        raise AssertionError("not shipped here")

    async def offer_table(self, signed: SignedTable, *, source: str) -> frozenset[str]:
        raise AssertionError("no table offered here")

    async def apply_entries(self, sent: ReplicationBatch) -> int:
        if self.mismatch:
            raise LogMismatch(len(self.log))
        self.log = [*self.log[:sent.prev_position], *sent.entries]
        return len(self.log)

    async def held_at(self, position: int) -> tuple[int, str, str]:
        head = self.log[-1].hash if self.log else GENESIS_HASH
        at = self.log[position - 1].hash if 0 < position <= len(self.log) else GENESIS_HASH if position == 0 else ""
        return len(self.log), head, at


def signed(sent: ReplicationBatch, by: str = "a") -> SignedBatch:
    return SignedBatch(batch=sent, signature=SIGNERS[f"node.{SERVICE}.{by}"].sign(sent.model_dump(mode="json")))


@pytest.mark.parametrize(("sent", "epoch", "primary", "is_primary", "expected"), [
    (batch(epoch=1), 2, "a", False, Admission(ReplyStatus.STALE_EPOCH, "epoch 1 < 2")),
    (batch(epoch=3), 2, "a", False, Admission(ReplyStatus.NEED_TABLE, "epoch 3 unknown here")),
    (batch(sender="c"), 1, "a", False, Admission(ReplyStatus.NOT_PRIMARY, "c is not primary in v3")),
    (batch(), 1, "a", True, Admission(ReplyStatus.NOT_PRIMARY, "a is not primary in v3")),
    (batch(), 1, "a", False, Admission(ReplyStatus.OK)),
])
def test_the_standby_admits_only_its_primary_in_its_epoch(sent: ReplicationBatch, epoch: int, primary: str,
                                                          is_primary: bool, expected: Admission) -> None:
    assert admit(sent, epoch=epoch, table_version=3, primary_region=primary, is_primary=is_primary) == expected


def test_the_standby_applies_and_signs_a_reply_bound_to_the_batch() -> None:
    node = StandIn()
    sent = signed(batch())
    answer = asyncio.run(answer_batch(node, sent))
    verify(answer.reply.model_dump(mode="json"), answer.signature, PUBLIC[node.component])
    assert (answer.reply.status, answer.reply.matched, answer.reply.batch_signature) == (
        ReplyStatus.OK, 2, sent.signature.sig)
    assert answer.reply.matched_hash == sent.batch.entries[-1].hash


def test_the_standby_says_mismatch_and_matches_nothing_when_the_link_differs() -> None:
    answer = asyncio.run(answer_batch(StandIn(mismatch=True), signed(batch())))
    assert (answer.reply.status, answer.reply.matched, answer.reply.detail) == (
        ReplyStatus.MISMATCH, 0, "previous entry differs")


@pytest.mark.parametrize(("sent", "message"), [
    (signed(batch(), by="c"), "is signed by another key"),
    (SignedBatch(batch=batch().model_copy(update={"sender": "node.s1.z"}),
                 signature=SIGNERS["node.s1.a"].sign({})), "holds no trusted node key"),
    (SignedBatch(batch=batch().model_copy(update={"service": "s2"}), signature=SIGNERS["node.s1.a"].sign({})),
     "is not for this node's service"),
])
def test_the_standby_refuses_a_batch_no_trusted_node_of_its_service_signed(sent: SignedBatch, message: str) -> None:
    node = StandIn()
    with pytest.raises(SignatureError, match=message):
        asyncio.run(answer_batch(node, sent))
    assert node.log == [], "a refused batch changes nothing"


def _reply(sent: SignedBatch, *, by: str = "b", **changes: Any) -> SignedReply:
    fields: dict[str, Any] = {"status": ReplyStatus.OK, "standby": f"node.{SERVICE}.b",
                              "batch_signature": sent.signature.sig, "matched": 2,
                              "matched_hash": sent.batch.entries[-1].hash, "position": 2,
                              "head_hash": sent.batch.entries[-1].hash, "epoch": 1, "table_version": 3} | changes
    reply = ReplicationReply.model_validate(fields)
    return SignedReply(reply=reply, signature=SIGNERS[f"node.{SERVICE}.{by}"].sign(reply.model_dump(mode="json")))


def _opened(reply: SignedReply, sent: SignedBatch) -> ReplicationReply:
    async def opened() -> ReplicationReply:
        replicator = Replicator(node=StandIn(component=f"node.{SERVICE}.a", is_primary=True), region="b",
                                url="http://127.0.0.1:1", session=cast("aiohttp.ClientSession", None),
                                on_progress=lambda: asyncio.sleep(0))
        return await replicator._open(reply, sent.batch, sent.signature.sig)

    return asyncio.run(opened())


def test_the_primary_counts_a_reply_that_proves_itself() -> None:
    sent = signed(batch())
    assert _opened(_reply(sent), sent).matched == 2


@pytest.mark.parametrize(("changes", "message"), [
    ({"by": "c"}, "reply is not signed by node.s1.b"),
    ({"standby": "node.s1.c", "by": "c"}, "reply is not signed by node.s1.b"),
    ({"batch_signature": "another"}, "it answers another batch"),
    ({"matched": 5}, "matched 5 outside what was sent"),
    ({"matched_hash": "f" * 64}, "chain hash at 2 differs from what was sent"),
])
def test_the_primary_refuses_a_reply_that_does_not_prove_itself(changes: dict[str, Any], message: str) -> None:
    sent = signed(batch())
    with pytest.raises(ValueError, match=message):
        _opened(_reply(sent, **changes), sent)
