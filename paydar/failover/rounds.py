"""Strict checks of a prober's signed round against the plan, before a controller uses it.

A prober's key proves who sent a round, not that the round is sane. A compromised prober
signs whatever it likes: targets and services that do not exist (which made every
controller's tick raise), or a timestamp in the future (which kept every later honest round
of that prober out). A round is used only when everything it names is in the plan and its
timestamps are within the clock skew, so a prober's input can cost at most its own vote.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum

from pydantic import ValidationError

from paydar.model.errors import PaydarError, SignatureError
from paydar.model.identity import TrustRoot
from paydar.model.ids import ComponentId
from paydar.probes.models import ObservationRound, SignedObservations

__all__ = ["ROUND_SKEW_SECONDS", "RoundAdmission", "RoundPlan", "RoundRefused", "RoundVerdict", "admit_round",
           "check_round"]

ROUND_SKEW_SECONDS = 5.0
"""How far in the future a round's timestamps may be (clocks of two hosts differ a little)."""


class RoundRefused(ValueError):
    """A signed round is not usable; the message names what is wrong."""


@dataclass(frozen=True)
class RoundPlan:
    """What a round may name: the targets probed, and each service's regions."""

    targets: Collection[str]
    services: Mapping[str, Collection[str]]


def check_round(body: ObservationRound, *, prober: str, region: str, plan: RoundPlan, now: float) -> None:
    """Raise :class:`RoundRefused` unless ``body`` names only what ``plan`` holds, comes from
    ``prober`` in ``region``, and is not stamped in the future."""
    if body.prober != prober or body.region != region:
        raise RoundRefused(f"round names prober {body.prober!r} in {body.region!r}, not {prober} in {region}")
    if not body.started_at <= body.finished_at <= now + ROUND_SKEW_SECONDS:
        raise RoundRefused(f"round timestamps are impossible (started {body.started_at - now:+.1f}s, finished "
                           f"{body.finished_at - now:+.1f}s from now; at most {ROUND_SKEW_SECONDS:.0f}s ahead)")
    named = set(body.ready) | {o.target for o in body.failing}
    named |= {t for holders in body.tables.values() for t in holders}
    named |= {c.gateway for c in body.canaries}
    unknown = sorted(named.difference(plan.targets))
    if unknown:
        raise RoundRefused(f"round names unknown targets: {', '.join(unknown[:5])}")
    for service in [*(c.service for c in body.integrity), *(c.service for c in body.canaries)]:
        if service not in plan.services:
            raise RoundRefused(f"round names unknown service {service[:40]!r}")
    for check in body.integrity:
        regions = set(check.hashes) | set(check.diverged)
        if not regions <= set(plan.services[check.service]):
            raise RoundRefused(f"integrity check of service {check.service} names regions it has no replica in")


class RoundVerdict(StrEnum):
    """What a controller makes of one answer from a prober (the refusals are metric labels)."""

    ACCEPTED = "accepted"
    NOT_NEW = "not-new"
    MALFORMED = "malformed"
    INVALID = "invalid"
    BAD_SIGNATURE = "bad-signature"
    STALE = "stale"


@dataclass(frozen=True)
class RoundAdmission:
    """The verdict on one prober answer, the round when accepted, and why when refused."""

    verdict: RoundVerdict
    body: ObservationRound | None = None
    detail: str = ""


def admit_round(raw: bytes, *, prober: str, trust: TrustRoot, plan: RoundPlan, held: ObservationRound | None,
                now: float, max_age: float) -> RoundAdmission:
    """Whether ``raw``, fetched from ``prober``, is a new round this controller may judge with.

    It must be signed by the prober's trusted key, parse, pass :func:`check_round`, be newer
    by the clock than the round held from that prober (a restarted prober counts from 1 again;
    a replay must not count twice), and not be older than ``max_age``.
    """
    try:
        body = SignedObservations.model_validate_json(raw).open(prober, trust)
        check_round(body, prober=prober, region=str(ComponentId.parse(prober).region), plan=plan, now=now)
    except ValidationError as exc:
        return RoundAdmission(RoundVerdict.MALFORMED, detail=str(exc)[:200])
    except RoundRefused as exc:
        return RoundAdmission(RoundVerdict.INVALID, detail=str(exc))
    except (SignatureError, PaydarError) as exc:
        return RoundAdmission(RoundVerdict.BAD_SIGNATURE, detail=str(exc))
    if held is not None and body.finished_at <= held.finished_at:
        return RoundAdmission(RoundVerdict.NOT_NEW, detail=f"finished at {body.finished_at}, not after the held round")
    if now - body.finished_at > max_age:
        return RoundAdmission(RoundVerdict.STALE, detail=f"finished {now - body.finished_at:.1f}s ago")
    return RoundAdmission(RoundVerdict.ACCEPTED, body=body)
