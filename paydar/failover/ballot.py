"""A controller's votes: one route per (service, epoch), one successor per table, ever.

Two rules, both kept on disk so that a restart cannot forget them:

- **Route votes.** For each (service, epoch) the controller signs one route. With a majority
  threshold, two different certified routes for one service and epoch then need a controller
  that signs twice: no two primaries can hold one epoch unless a controller is compromised
  (and the data plane's majority acknowledgement covers that case).
- **Successor votes.** For each table (by digest) the controller signs at most one set of
  changes as its successor. Signing the same changes again with fresh timestamps is allowed
  (an honest proposal retried); different changes are not, so two certified successors of
  one table need a double signer, which every component detects as equivocation.

Votes below the table in force can never matter again and are pruned, so the file stays
as small as the catalog.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from paydar.model.files import write_json_atomic
from paydar.model.routing import RoutingTable, ServiceRoute
from paydar.model.signing import canonical_json

__all__ = ["Ballot", "changes_of"]

log = logging.getLogger(__name__)


def changes_of(held: RoutingTable, proposal: RoutingTable) -> dict[str, ServiceRoute]:
    """The routes ``proposal`` changes relative to ``held``."""
    return {sid: route for sid, route in proposal.services.items() if held.services.get(sid) != route}


def _digest(payload: object) -> str:
    return canonical_json(payload).decode()


class Ballot:
    """The votes of one controller, persisted at ``path`` (None: in memory, for tests)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.votes: dict[str, str] = {}
        """``service@epoch`` -> the canonical JSON of the one route signed for it."""
        self.successors: dict[str, dict[str, object]] = {}
        """predecessor digest -> {"version": its version, "changes": {service: route JSON}}."""
        if path is not None and path.exists():
            try:
                self._load(json.loads(path.read_text()))
            except (OSError, ValueError, AttributeError, TypeError) as exc:
                # Forgetting votes could let this controller sign a conflicting route: refuse to start.
                raise SystemExit(f"cannot read the controller's votes at {path}: {exc}; restore the file "
                                 "from backup (deleting it risks two primaries in one epoch)") from None

    def _load(self, data: dict[str, object]) -> None:
        if "votes" not in data:  # the first format held route votes only
            self.votes = {str(k): str(v) for k, v in data.items()}
            return
        votes, successors = data["votes"], data.get("successors", {})
        if not isinstance(votes, dict) or not isinstance(successors, dict):
            raise ValueError("votes and successors must be mappings")
        self.votes = {str(k): str(v) for k, v in votes.items()}
        self.successors = {str(k): dict(v) for k, v in successors.items()}

    # -- the rules -------------------------------------------------------------------------

    def conflicts(self, held: RoutingTable, proposal: RoutingTable) -> dict[str, str]:
        """Services whose route in ``proposal`` (a successor of ``held``) would break a route
        vote, and why."""
        found = {}
        for sid, route in changes_of(held, proposal).items():
            old = held.services.get(sid)
            if old is not None and route.epoch <= old.epoch:
                found[sid] = f"route of service {sid} changes without raising its epoch {old.epoch}"
                continue
            prior = self.votes.get(f"{sid}@{route.epoch}")
            if prior is not None and prior != _digest(route.model_dump(mode="json")):
                found[sid] = f"already signed another route for service {sid} in epoch {route.epoch}"
        return found

    def signed_successor(self, held: RoutingTable) -> dict[str, ServiceRoute] | None:
        """The changes this controller already signed as the successor of ``held`` (None: none)."""
        entry = self.successors.get(held.digest())
        if entry is None:
            return None
        changes = entry.get("changes", {})
        assert isinstance(changes, dict)
        return {sid: ServiceRoute.model_validate(route) for sid, route in changes.items()}

    def other_successor(self, held: RoutingTable, proposal: RoutingTable) -> bool:
        """Whether signing ``proposal`` would make a second, different successor of ``held``."""
        prior = self.signed_successor(held)
        return prior is not None and prior != changes_of(held, proposal)

    def refusal(self, held: RoutingTable, proposal: RoutingTable) -> str | None:
        """Why signing ``proposal`` would break a vote; None if it would not."""
        if self.other_successor(held, proposal):
            return f"already signed another successor of table v{held.version}"
        return next(iter(self.conflicts(held, proposal).values()), None)

    # -- keeping them ----------------------------------------------------------------------

    def record(self, held: RoutingTable, proposal: RoutingTable) -> None:
        """Remember signing ``proposal`` as the successor of ``held`` (durably, before signing)."""
        changes = changes_of(held, proposal)
        for sid, route in changes.items():
            self.votes[f"{sid}@{route.epoch}"] = _digest(route.model_dump(mode="json"))
        self.successors[held.digest()] = {
            "version": held.version, "changes": {sid: r.model_dump(mode="json") for sid, r in changes.items()}}
        self._save()

    def prune(self, held: RoutingTable) -> int:
        """Forget votes the table in force has made moot: route votes below each service's held
        epoch, successor votes of tables older than the held one. Returns how many went."""
        before = len(self.votes) + len(self.successors)
        self.votes = {key: route for key, route in self.votes.items()
                      if int(key.rsplit("@", 1)[1]) >= _held_epoch(held, key.rsplit("@", 1)[0])}
        self.successors = {digest: entry for digest, entry in self.successors.items()
                           if int(str(entry.get("version", 0))) >= held.version}
        gone = before - len(self.votes) - len(self.successors)
        if gone:
            self._save()
        return gone

    def _save(self) -> None:
        if self.path is not None:
            write_json_atomic(self.path, {"votes": self.votes, "successors": self.successors})


def _held_epoch(held: RoutingTable, service: str) -> int:
    route = held.services.get(service)
    return route.epoch if route is not None else 0
