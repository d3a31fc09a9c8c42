"""The acknowledged-writes checker must be able to fail: fed broken histories, it says so."""

from __future__ import annotations

import pytest

from paydar.chaos.invariants import AckLedger, ViolationKind, check_acknowledged

DOC = {"citizen_id": "0012345678", "kind": "diploma", "data": {"n": 1}}


def ledger() -> AckLedger:
    led = AckLedger()
    led.record("1101", "a", DOC, True)
    led.record("1101", "b", DOC, False)
    return led


def test_clean_history_passes() -> None:
    assert check_acknowledged(ledger(), {("1101", "a"): {**DOC, "position": 3}}) == []


def test_lost_acknowledged_write_is_reported() -> None:
    violations = check_acknowledged(ledger(), {("1101", "a"): None})
    assert [v.kind for v in violations] == [ViolationKind.LOST]
    assert str(violations[0]) == "acknowledged write lost: 1101/a (not found)"


def test_corrupted_content_is_reported() -> None:
    violations = check_acknowledged(ledger(), {("1101", "a"): {**DOC, "data": {"n": 2}}})
    assert [v.kind for v in violations] == [ViolationKind.CORRUPTED]


def test_unacknowledged_write_may_be_missing() -> None:
    assert ledger().acknowledged_count == 1


def test_ids_must_be_fresh() -> None:
    led = ledger()
    with pytest.raises(ValueError, match="acknowledged twice"):
        led.record("1101", "a", DOC, True)
