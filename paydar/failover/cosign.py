"""Whether a controller co-signs a peer's proposal: one pure decision with its reason.

A controller co-signs only what its own planner computes from its own view. A proposal from
a peer (honest or compromised) is signed when, and only when:

1. it carries a valid signature of some controller;
2. it is the next version after the table this controller holds, and names that table's
   digest as its predecessor;
3. its timestamps are sane (issued now, within the clock skew, with the topology's ttl);
4. it routes exactly the held table's services;
5. it changes at least one route (or re-signs an under-signed table after a key rotation);
6. every route it changes moves that service's epoch by exactly one, and is the route this
   controller's own planner computes (a proposal may carry fewer changes than the own view,
   never other ones): no epoch can be inflated, and no route is signed on a peer's say-so;
7. it keeps this controller's votes: one successor per table, one route per service and epoch.

Refusals are stable sentences (:class:`CosignReason`) that logs, the HTTP answer and the
tests share.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from paydar.failover.ballot import Ballot, changes_of
from paydar.model.routing import RoutingTable, ServiceRoute

__all__ = ["CosignDecision", "CosignReason", "decide_cosign"]


class CosignReason(StrEnum):
    AGREE = "my own view calls for exactly these changes"
    NOT_SIGNED = "the proposal carries no valid controller signature"
    NOT_NEXT = "the proposal does not follow the held table"
    WRONG_PREDECESSOR = "the proposal names another predecessor than the held table"
    TIMESTAMPS = "the proposal's timestamps are off"
    OTHER_SERVICES = "the proposal routes other services than the held table"
    NOTHING_CHANGES = "the proposal changes no route"
    EPOCH_JUMP = "the proposal moves an epoch by other than one"
    VIEW_DIFFERS = "my own view differs"
    VOTED_OTHER = "it would break one of my votes"


@dataclass(frozen=True)
class CosignDecision:
    reason: CosignReason
    detail: str = ""

    @property
    def sign(self) -> bool:
        return self.reason is CosignReason.AGREE

    def __str__(self) -> str:
        return f"{self.reason.value}: {self.detail}" if self.detail else self.reason.value


def decide_cosign(*, held: RoutingTable, proposal: RoutingTable, own_routes: Mapping[str, ServiceRoute],
                  signed_by_controller: bool, under_signed: bool, ballot: Ballot, now: float, ttl: float,
                  skew: float) -> CosignDecision:
    """Decide whether to co-sign ``proposal``; the detail carries the numbers or services."""
    if not signed_by_controller:
        return CosignDecision(CosignReason.NOT_SIGNED)
    if proposal.version != held.version + 1:
        return CosignDecision(CosignReason.NOT_NEXT, f"v{proposal.version} after held v{held.version}")
    if proposal.previous != held.digest():
        return CosignDecision(CosignReason.WRONG_PREDECESSOR, f"held v{held.version} is {held.digest()[:12]}, "
                                                              f"the proposal names {proposal.previous[:12] or 'none'}")
    if abs(proposal.issued_at - now) > skew or abs(proposal.expires_at - proposal.issued_at - ttl) > 1.0:
        return CosignDecision(CosignReason.TIMESTAMPS, f"issued {proposal.issued_at - now:+.0f}s from now, ttl "
                                                       f"{proposal.expires_at - proposal.issued_at:.0f}s "
                                                       f"(want {ttl:.0f}s)")
    if set(proposal.services) != set(held.services):
        return CosignDecision(CosignReason.OTHER_SERVICES)
    changes = changes_of(held, proposal)
    if not changes and not under_signed:
        return CosignDecision(CosignReason.NOTHING_CHANGES)
    jumps = sorted(sid for sid, route in changes.items() if route.epoch != held.services[sid].epoch + 1)
    if jumps:
        return CosignDecision(CosignReason.EPOCH_JUMP, ", ".join(
            f"{sid} {held.services[sid].epoch}->{changes[sid].epoch}" for sid in jumps[:10]))
    differ = sorted(sid for sid, route in changes.items() if own_routes.get(sid) != route)
    if differ:
        return CosignDecision(CosignReason.VIEW_DIFFERS, f"service(s) {', '.join(differ[:10])}")
    refusal = ballot.refusal(held, proposal)
    if refusal is not None:
        return CosignDecision(CosignReason.VOTED_OTHER, refusal)
    return CosignDecision(CosignReason.AGREE)
