"""A controller's votes: for each (service, epoch) it signs one route, ever.

With a majority threshold this makes two different certified routes for the same service
and epoch impossible, even when controllers' views diverge or proposals race: no two
primaries can ever hold the same epoch. Votes survive restarts (a JSON file in the
controller's data directory).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from infra.files import write_json_atomic
from infra.routing import RoutingTable
from infra.signing import canonical_json

__all__ = ["Ballot"]

log = logging.getLogger(__name__)


class Ballot:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.votes: dict[str, str] = {}
        if path is not None and path.exists():
            try:
                self.votes = {str(k): str(v) for k, v in json.loads(path.read_text()).items()}
            except (OSError, ValueError, AttributeError) as exc:
                # Forgetting votes could let this controller sign a conflicting route: refuse to start.
                raise SystemExit(f"cannot read the controller's votes at {path}: {exc}; restore the file "
                                 "from backup (deleting it risks two primaries in one epoch)") from None

    def conflicts(self, held: RoutingTable, proposal: RoutingTable) -> dict[str, str]:
        """Services whose route in ``proposal`` (a successor of ``held``) would break a vote, and why."""
        found = {}
        for sid, route in proposal.services.items():
            old = held.services.get(sid)
            if old is None or route == old:
                continue
            if route.epoch <= old.epoch:
                found[sid] = f"route of service {sid} changes without raising its epoch {old.epoch}"
                continue
            prior = self.votes.get(f"{sid}@{route.epoch}")
            if prior is not None and prior != _digest(route.model_dump(mode="json")):
                found[sid] = f"already signed another route for service {sid} in epoch {route.epoch}"
        return found

    def refusal(self, held: RoutingTable, proposal: RoutingTable) -> str | None:
        """Why signing ``proposal`` would break a vote; None if it would not."""
        return next(iter(self.conflicts(held, proposal).values()), None)

    def highest_epoch(self, service: str) -> int:
        """The highest epoch this controller ever voted a route of ``service`` in (0: none)."""
        return max((int(key.rsplit("@", 1)[1]) for key in self.votes if key.rsplit("@", 1)[0] == service),
                   default=0)

    def record(self, held: RoutingTable, proposal: RoutingTable) -> None:
        for sid, route in proposal.services.items():
            if held.services.get(sid) != route:
                self.votes[f"{sid}@{route.epoch}"] = _digest(route.model_dump(mode="json"))
        if self.path is not None:
            write_json_atomic(self.path, self.votes)


def _digest(payload: object) -> str:
    return canonical_json(payload).decode()
