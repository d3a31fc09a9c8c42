"""The table guard: threshold, rollback, expiry, unknown services, zero regions, epochs."""

from __future__ import annotations

from pathlib import Path

import pytest

from paydar.model.errors import TableRejected, TableRejection
from paydar.model.identity import KeyStore
from paydar.model.routing import RoutingTable, ServiceRoute, SignedTable, TableGuard, sign_table

REGIONS = ("tehran", "isfahan", "mashhad")
NOW = 1_000_000.0



def held(guard: TableGuard) -> RoutingTable:
    """The table the guard holds (a test that asks has made it hold one)."""
    assert guard.current is not None, "the guard holds no table"
    return guard.current.table


def under_signed(guard: TableGuard) -> bool:
    # Read through a call: mypy would otherwise carry an earlier assert's narrowing past retrust().
    return guard.under_signed

@pytest.fixture()
def keystore(tmp_path: Path) -> KeyStore:
    return KeyStore(tmp_path / "keys")


@pytest.fixture()
def guard(keystore: KeyStore) -> TableGuard:
    trust = keystore.build_trust_root([f"controller.{r}" for r in REGIONS])
    return TableGuard(trust=trust, threshold=2, known_services=["1101", "2204"], clock=lambda: NOW)


def table(version: int, epoch: int = 1, primary: str | None = "tehran", expires: float = NOW + 60,
          services: dict[str, ServiceRoute] | None = None) -> RoutingTable:
    route = ServiceRoute(primary=primary, standbys=("isfahan",), epoch=epoch)
    return RoutingTable(version=version, issued_at=NOW, expires_at=expires,
                        services=services if services is not None else {"1101": route})


def signed(keystore: KeyStore, t: RoutingTable, regions: tuple[str, ...] = REGIONS[:2]) -> SignedTable:
    return sign_table(t, [keystore.signer(f"controller.{r}") for r in regions])


def reason(guard: TableGuard, candidate: SignedTable) -> str:
    with pytest.raises(TableRejected) as info:
        guard.accept(candidate)
    return info.value.reason


def test_accepts_threshold_signed_newer_table(guard: TableGuard, keystore: KeyStore) -> None:
    assert len(guard.accept(signed(keystore, table(1)))) == 2
    assert guard.accept(signed(keystore, table(2), REGIONS[1:])) and held(guard).version == 2


def test_under_signed_and_unsigned_refused(guard: TableGuard, keystore: KeyStore) -> None:
    assert reason(guard, signed(keystore, table(1), REGIONS[:1])) == TableRejection.UNDER_SIGNED
    assert reason(guard, SignedTable(table=table(1))) == TableRejection.UNDER_SIGNED
    assert guard.current is None, "a refused table changes nothing"


def test_signature_over_another_table_refused(guard: TableGuard, keystore: KeyStore) -> None:
    good = signed(keystore, table(1))
    swapped = SignedTable(table=table(1, primary="isfahan"), signatures=good.signatures)
    assert reason(guard, swapped) == TableRejection.UNDER_SIGNED


def test_rollback_and_replay_refused(guard: TableGuard, keystore: KeyStore) -> None:
    guard.accept(signed(keystore, table(5)))
    assert reason(guard, signed(keystore, table(4))) == TableRejection.NOT_NEWER
    assert reason(guard, signed(keystore, table(5))) == TableRejection.NOT_NEWER
    assert held(guard).version == 5


def test_expired_refused(guard: TableGuard, keystore: KeyStore) -> None:
    with pytest.raises(TableRejected, match="expired 10s ago"):
        guard.accept(signed(keystore, table(1, expires=NOW - 10)))


def test_unknown_service_refused(guard: TableGuard, keystore: KeyStore) -> None:
    route = ServiceRoute(primary="tehran", standbys=("isfahan",), epoch=1)
    assert reason(guard, signed(keystore, table(1, services={"9999": route}))) == TableRejection.UNKNOWN_SERVICE


def test_zero_regions_refused(guard: TableGuard, keystore: KeyStore) -> None:
    empty = ServiceRoute(primary=None, standbys=(), epoch=1)
    assert reason(guard, signed(keystore, table(1, services={"1101": empty}))) == TableRejection.ZERO_REGIONS


def test_epoch_regression_refused(guard: TableGuard, keystore: KeyStore) -> None:
    guard.accept(signed(keystore, table(1, epoch=3)))
    assert reason(guard, signed(keystore, table(2, epoch=2))) == TableRejection.EPOCH_REGRESSION


def test_restore_accepts_expired_own_table(guard: TableGuard, keystore: KeyStore) -> None:
    guard.restore(signed(keystore, table(3, expires=NOW - 1)))
    assert held(guard).version == 3
    with pytest.raises(TableRejected):
        guard.restore(signed(keystore, table(4), REGIONS[:1]))


def test_malformed_json_is_named() -> None:
    with pytest.raises(TableRejected, match="malformed routing table: table"):
        TableGuard.parse(b'{"table": {"version": "x"}}')


def test_a_rotated_key_no_longer_counts_and_the_held_table_stays_in_force(guard: TableGuard,
                                                                          keystore: KeyStore) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from paydar.model.identity import trust_root_of

    guard.accept(signed(keystore, table(2)))
    old_tehran = keystore.signer("controller.tehran")
    keystore.replace("controller.tehran", Ed25519PrivateKey.generate())
    trust = trust_root_of({f"controller.{r}": keystore.load(f"controller.{r}").public_key() for r in REGIONS})
    isfahan = keystore.signer("controller.isfahan").key_id
    assert guard.retrust(trust) == frozenset({isfahan})
    assert under_signed(guard) and held(guard).version == 2  # fail static
    with_old_key = sign_table(table(3), [old_tehran, keystore.signer("controller.isfahan")])
    assert reason(guard, with_old_key) == TableRejection.UNDER_SIGNED
    guard.accept(signed(keystore, table(3)))  # the re-signed table, with the new key
    tehran = keystore.signer("controller.tehran").key_id
    assert not under_signed(guard) and guard.signers == frozenset({tehran, isfahan})


def test_two_routes_in_one_epoch_are_equivocation_with_evidence(guard: TableGuard, keystore: KeyStore) -> None:
    guard.accept(signed(keystore, table(1)))
    guard.accept(signed(keystore, table(2, epoch=2, primary="tehran")))
    rival = table(3, epoch=2, primary="isfahan")  # another primary in an epoch already routed
    assert reason(guard, signed(keystore, rival, REGIONS[1:])) == TableRejection.EQUIVOCATION
    assert held(guard).version == 2, "fail static: the held table stays in force"
    evidence = guard.evidence
    assert evidence is not None and evidence.offered.table == rival
    assert evidence.double_signers == {keystore.signer("controller.isfahan").key_id}, \
        "the controller that signed both tables is named"
    assert "gives service 1101 another route in epoch 2" in evidence.detail


def test_sibling_tables_that_route_differently_are_equivocation(guard: TableGuard, keystore: KeyStore) -> None:
    guard.accept(signed(keystore, table(1)))
    parent = held(guard)
    first = table(2, epoch=2, primary="isfahan").model_copy(update={"previous": parent.digest()})
    guard.accept(signed(keystore, first))
    sibling = table(2, epoch=2, primary=None).model_copy(update={"previous": parent.digest()})
    assert reason(guard, signed(keystore, sibling, REGIONS[1:])) == TableRejection.EQUIVOCATION
    same_routes = first.model_copy(update={"issued_at": NOW + 1})
    assert reason(guard, signed(keystore, same_routes)) == TableRejection.NOT_NEWER, \
        "the same routes signed twice (honest proposals racing) are no evidence"


def test_an_unbounded_signature_list_is_malformed_and_repeats_are_skipped(guard: TableGuard,
                                                                         keystore: KeyStore) -> None:
    good = signed(keystore, table(1))
    flood = good.model_dump(mode="json") | {"signatures": [good.signatures[0].model_dump()] * 65}
    import json
    with pytest.raises(TableRejected) as info:
        TableGuard.parse(json.dumps(flood))
    assert info.value.reason == TableRejection.MALFORMED and "at most 64" in str(info.value)
    forged = good.signatures[0].model_copy(update={"sig": good.signatures[1].sig})
    repeated = SignedTable(table=good.table, signatures=(forged,) * 60 + good.signatures)
    assert len(guard.accept(repeated)) == 2, "60 copies of one bad signature are tried once and hide nothing"


@pytest.mark.parametrize("raw", ['{"version": 1, "issued_at": NaN, "expires_at": 1e400, "services": {}}',
                                 '{"version": 99999999999999999999, "issued_at": 1, "expires_at": 2, "services": {}}'])
def test_non_finite_numbers_and_huge_counters_are_malformed(raw: str) -> None:
    with pytest.raises(TableRejected) as info:
        TableGuard.parse('{"table": ' + raw + ', "signatures": []}')
    assert info.value.reason == TableRejection.MALFORMED
