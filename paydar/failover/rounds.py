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

from paydar.probes.models import ObservationRound

__all__ = ["ROUND_SKEW_SECONDS", "RoundPlan", "RoundRefused", "check_round"]

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
