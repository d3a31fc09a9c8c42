"""Operator intents (drain, fence, promote, clear), signed by an operator key.

An intent moves routing, so it must come from an operator and from nobody else: it is signed
with a key of the trust root's ``operator`` role, which no component holds (the CLI signs on
the operator's machine). A controller admits an intent only with a valid operator signature,
issued within :data:`INTENT_MAX_AGE` of its clock, with a nonce it has not seen, and naming
a known region and service. A compromised component can replay an intent it saw, but only
once per controller and only while it is fresh, which is what the operator asked anyway.
The table that results still needs ``threshold`` controllers to sign it.
"""

from __future__ import annotations

import json
import logging
import secrets
from enum import StrEnum
from pathlib import Path

from pydantic import Field, ValidationError

from paydar.failover.planner import Overrides
from paydar.model.errors import PaydarError, SignatureError
from paydar.model.files import write_json_atomic
from paydar.model.identity import Role, TrustRoot
from paydar.model.routing import RoutingTable
from paydar.model.signing import Signature, Signer, verify_threshold
from paydar.model.topology import NationalTopology
from paydar.model.wire import WireModel

__all__ = ["INTENT_MAX_AGE", "Intent", "IntentAction", "IntentLog", "IntentRefused", "SignedIntent"]

log = logging.getLogger(__name__)
INTENT_MAX_AGE = 300.0
"""How far an intent's ``issued_at`` may be from a controller's clock, either way (seconds)."""
MAX_INTENTS = 1000


class IntentAction(StrEnum):
    DRAIN = "drain"
    FENCE = "fence"
    PROMOTE = "promote"
    CLEAR = "clear"


class Intent(WireModel):
    """An operator's instruction; ``service`` is required for fence and promote."""

    action: IntentAction
    region: str = Field(max_length=64)
    service: str | None = Field(default=None, max_length=64)
    issued_at: float = 0.0
    nonce: str = Field(default="", pattern=r"^(?:[0-9a-f]{32})?$")

    @classmethod
    def new(cls, action: IntentAction, region: str, service: str | None, now: float) -> Intent:
        """A fresh intent with a random nonce, ready to sign."""
        return cls(action=action, region=region, service=service, issued_at=now, nonce=secrets.token_hex(16))


class SignedIntent(WireModel):
    """An intent as it travels: signed by an operator key."""

    intent: Intent
    signature: Signature

    @classmethod
    def seal(cls, intent: Intent, signer: Signer) -> SignedIntent:
        return cls(intent=intent, signature=signer.sign(intent.model_dump(mode="json")))


class IntentRefused(PaydarError):
    """An intent is not admitted; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


class IntentLog:
    """The intents in force at one controller, and the nonces already used (kept on disk)."""

    def __init__(self, path: Path, topology: NationalTopology) -> None:
        self.path = path
        self.topology = topology
        self.intents: list[Intent] = []
        self.used: dict[str, float] = {}
        if path.exists():
            try:
                data = json.loads(path.read_text())
                if isinstance(data, list):  # the first format: intents only
                    data = {"intents": data, "used": {}}
                self.intents = [Intent.model_validate(i) for i in data["intents"]]
                self.used = {str(k): float(v) for k, v in data["used"].items()}
            except (OSError, ValueError, KeyError, TypeError, AttributeError, ValidationError) as exc:
                raise SystemExit(f"cannot read operator intents at {path}: {exc}; fix or remove the file") from None

    def admit(self, signed: SignedIntent, trust: TrustRoot, now: float) -> list[Intent]:
        """Verify and apply an operator's intent; return the intents in force."""
        intent = signed.intent
        try:
            verify_threshold(intent.model_dump(mode="json"), [signed.signature], trust.keys(Role.OPERATOR), 1,
                             Role.OPERATOR.value)
        except SignatureError as exc:
            raise IntentRefused(403, f"intent refused: not signed by an operator key ({exc}); sign it with "
                                     "`paydar failover ...`, which uses the operator key") from None
        if abs(intent.issued_at - now) > INTENT_MAX_AGE:
            raise IntentRefused(403, f"intent refused: issued {intent.issued_at - now:+.0f}s from this controller's "
                                     f"clock, beyond {INTENT_MAX_AGE:.0f}s; send a fresh one")
        self.used = {n: at for n, at in self.used.items() if abs(at - now) <= 2 * INTENT_MAX_AGE}
        if not intent.nonce or intent.nonce in self.used:
            raise IntentRefused(409, "intent refused: its nonce was already used (a replay); send a fresh one")
        self._check_names(intent)
        self.used[intent.nonce] = intent.issued_at
        self._apply(intent)
        log.info("operator intent admitted action=%s region=%s service=%s", intent.action, intent.region,
                 intent.service)
        return self.intents

    def _check_names(self, intent: Intent) -> None:
        if intent.region not in self.topology.region_names:
            raise IntentRefused(400, f"unknown region {intent.region!r}; regions: "
                                     f"{', '.join(self.topology.region_names)}")
        if intent.service is not None:
            try:
                spec = self.topology.service(intent.service)
            except KeyError as exc:
                raise IntentRefused(400, str(exc).strip('"')) from None
            if intent.region not in spec.regions:
                raise IntentRefused(400, f"service {intent.service} has no replica in {intent.region}; "
                                         f"its regions are {', '.join(spec.regions)}")
        elif intent.action in (IntentAction.FENCE, IntentAction.PROMOTE):
            raise IntentRefused(400, f"{intent.action} needs a service")

    def _apply(self, intent: Intent) -> None:
        def same(i: Intent) -> bool:
            if intent.action is IntentAction.CLEAR:
                return i.region == intent.region and intent.service in (None, i.service)
            return i.action is intent.action and i.service == intent.service and (
                i.region == intent.region or intent.action is IntentAction.PROMOTE)

        self.intents = [i for i in self.intents if not same(i)]
        if intent.action is not IntentAction.CLEAR:
            self.intents = ([*self.intents, intent])[-MAX_INTENTS:]
        self._save()

    def retire_done(self, table: RoutingTable) -> None:
        """Drop promotions the table in force has carried out."""
        done = [i for i in self.intents if i.action is IntentAction.PROMOTE and i.service
                and i.service in table.services and table.services[i.service].primary == i.region]
        if done:
            self.intents = [i for i in self.intents if i not in done]
            self._save()

    def overrides(self) -> Overrides:
        """The intents as the planner takes them."""
        return Overrides(
            drained=frozenset(i.region for i in self.intents if i.action is IntentAction.DRAIN),
            fenced=frozenset((i.service, i.region) for i in self.intents
                             if i.action is IntentAction.FENCE and i.service),
            moves={i.service: i.region for i in self.intents if i.action is IntentAction.PROMOTE and i.service})

    def _save(self) -> None:
        write_json_atomic(self.path, {"intents": [i.model_dump(mode="json") for i in self.intents],
                                      "used": self.used})
