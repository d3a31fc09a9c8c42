"""What a compromised sender can put in a message: rounds, intents, documents (pure checks)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from paydar.failover.intents import INTENT_MAX_AGE, Intent, IntentAction, IntentLog, IntentRefused, SignedIntent
from paydar.failover.rounds import RoundPlan, RoundRefused, RoundVerdict, admit_round, check_round
from paydar.model.identity import OPERATOR, KeyStore
from paydar.model.topology import NationalTopology, parse_topology
from paydar.node.models import DocumentIn
from paydar.probes.models import IntegrityObservation, ObservationRound, SignedObservations, TargetObservation

ROOT = Path(__file__).resolve().parents[2]
NOW = 5_000.0
PLAN = RoundPlan(targets={"node.1101.tehran", "node.1101.isfahan", "gateway.tehran"},
                 services={"1101": ("tehran", "isfahan")})


def round_of(**fields: object) -> ObservationRound:
    base: dict[str, object] = {"prober": "prober.tehran", "region": "tehran", "round": 1, "started_at": NOW - 1,
                               "finished_at": NOW, "ready": ("node.1101.tehran",)}
    return ObservationRound.model_validate(base | fields)


def test_an_honest_round_passes() -> None:
    check_round(round_of(tables={3: ("node.1101.tehran", "gateway.tehran")}), prober="prober.tehran",
                region="tehran", plan=PLAN, now=NOW)


@pytest.mark.parametrize(("fields", "why"), [
    ({"tables": {3: ("node.9999.tehran",)}}, "unknown targets: node.9999.tehran"),
    ({"tables": {3: ("node.",)}}, "unknown targets"),
    ({"failing": (TargetObservation(target="gateway.nowhere", alive=False, ready=False, latency_ms=1),)},
     "unknown targets: gateway.nowhere"),
    ({"finished_at": NOW + 10**9, "started_at": NOW}, "timestamps are impossible"),
    ({"started_at": NOW + 1}, "timestamps are impossible"),
    ({"integrity": (IntegrityObservation(service="nope", position=1, hashes={}),)}, "unknown service 'nope'"),
    ({"integrity": (IntegrityObservation(service="1101", position=1, hashes={"kish": "a"}),)}, "no replica in"),
    ({"prober": "prober.isfahan"}, "names prober 'prober.isfahan'"),
])
def test_a_poisoned_round_is_refused_with_the_reason(fields: dict[str, object], why: str) -> None:
    with pytest.raises(RoundRefused, match=why):
        check_round(round_of(**fields), prober="prober.tehran", region="tehran", plan=PLAN, now=NOW)


@pytest.fixture()
def topology() -> NationalTopology:
    return parse_topology(yaml.safe_load((ROOT / "national.yaml").read_text()))


@pytest.fixture()
def keys(tmp_path: Path) -> KeyStore:
    return KeyStore(tmp_path / "keys")


def test_intents_need_an_operator_key_a_fresh_time_and_a_new_nonce(topology: NationalTopology, keys: KeyStore,
                                                                   tmp_path: Path) -> None:
    trust = keys.build_trust_root([OPERATOR, "controller.tehran"])
    log = IntentLog(tmp_path / "intents.json", topology)
    intent = Intent.new(IntentAction.DRAIN, "tehran", None, NOW)
    by_controller = SignedIntent.seal(intent, keys.signer("controller.tehran"))
    with pytest.raises(IntentRefused, match="not signed by an operator key") as refused:
        log.admit(by_controller, trust, NOW)
    assert refused.value.status == 403 and log.intents == []
    genuine = SignedIntent.seal(intent, keys.signer(OPERATOR))
    assert [i.action for i in log.admit(genuine, trust, NOW)] == [IntentAction.DRAIN]
    with pytest.raises(IntentRefused, match="nonce was already used"):
        log.admit(genuine, trust, NOW + 1)
    stale = SignedIntent.seal(Intent.new(IntentAction.CLEAR, "tehran", None, NOW - INTENT_MAX_AGE - 1),
                              keys.signer(OPERATOR))
    with pytest.raises(IntentRefused, match="beyond 300s"):
        log.admit(stale, trust, NOW)
    assert IntentLog(tmp_path / "intents.json", topology).intents == log.intents, "kept on disk"
    assert IntentLog(tmp_path / "intents.json", topology).used == log.used, "used nonces survive a restart"


def test_an_intent_names_a_known_service_in_its_region(topology: NationalTopology, keys: KeyStore,
                                                       tmp_path: Path) -> None:
    trust = keys.build_trust_root([OPERATOR])
    log = IntentLog(tmp_path / "intents.json", topology)
    for intent, why in [(Intent.new(IntentAction.FENCE, "tehran", None, NOW), "fence needs a service"),
                        (Intent.new(IntentAction.FENCE, "kish", "1101", NOW), "unknown region 'kish'"),
                        (Intent.new(IntentAction.PROMOTE, "tehran", "9999", NOW), "unknown service '9999'")]:
        with pytest.raises(IntentRefused, match=why) as refused:
            log.admit(SignedIntent.seal(intent, keys.signer(OPERATOR)), trust, NOW)
        assert refused.value.status == 400


@pytest.mark.parametrize("data", [{"x": float("nan")}, {"x": [1, {"y": float("inf")}]}])
def test_a_document_with_non_finite_numbers_is_refused(data: dict[str, object]) -> None:
    with pytest.raises(ValidationError, match="finite"):
        DocumentIn.model_validate({"citizen_id": "0012345678", "kind": "diploma", "data": data})


@pytest.mark.parametrize(("sealed_by", "raw_fields", "held", "now", "verdict"), [
    ("prober.tehran", {}, None, NOW, RoundVerdict.ACCEPTED),
    ("prober.isfahan", {}, None, NOW, RoundVerdict.BAD_SIGNATURE),          # another prober's real key
    ("prober.tehran", {"ready": ("node.9999.nowhere",)}, None, NOW, RoundVerdict.INVALID),
    ("prober.tehran", {}, {}, NOW, RoundVerdict.NOT_NEW),                   # a replay of the held round
    ("prober.tehran", {"finished_at": NOW - 60, "started_at": NOW - 61}, None, NOW, RoundVerdict.STALE),
])
def test_a_controller_admits_only_new_rounds_signed_by_their_prober(
        tmp_path: Path, sealed_by: str, raw_fields: dict[str, object], held: dict[str, object] | None, now: float,
        verdict: RoundVerdict) -> None:
    keys = KeyStore(tmp_path / "keys")
    trust = keys.build_trust_root(["prober.tehran", "prober.isfahan"])
    raw = SignedObservations.seal(round_of(**raw_fields), keys.signer(sealed_by)).model_dump_json().encode()
    admission = admit_round(raw, prober="prober.tehran", trust=trust, plan=PLAN,
                            held=round_of(**held) if held is not None else None, now=now, max_age=10)
    assert admission.verdict is verdict, admission.detail
    assert (admission.body is not None) == (verdict is RoundVerdict.ACCEPTED)


@pytest.mark.parametrize("raw", [b"", b"{}", b"[1]", b'{"observations": "x", "signature": 1}', b"\xff" * 10])
def test_garbage_from_a_prober_is_malformed_and_changes_nothing(tmp_path: Path, raw: bytes) -> None:
    trust = KeyStore(tmp_path / "keys").build_trust_root(["prober.tehran"])
    admission = admit_round(raw, prober="prober.tehran", trust=trust, plan=PLAN, held=None, now=NOW, max_age=10)
    assert (admission.verdict, admission.body) == (RoundVerdict.MALFORMED, None)
