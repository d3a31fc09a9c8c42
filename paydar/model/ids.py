"""Component ids, formatted and parsed in one place.

``node.<service>.<region>``, ``gateway.<region>``, ``prober.<region>``,
``controller.<region>`` and ``link.<source>.<target>`` (a link carries traffic from one
region into another). Service ids and region names never contain a dot (the topology's
patterns), so every id parses unambiguously.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["ComponentId", "Kind", "controller_id", "gateway_id", "link_id", "node_id", "prober_id"]


class Kind(StrEnum):
    """What a component id names (its first segment)."""

    NODE = "node"
    GATEWAY = "gateway"
    PROBER = "prober"
    CONTROLLER = "controller"
    LINK = "link"
    VAULT = "vault"


def node_id(service: str, region: str) -> str:
    """The id of the node of ``service`` in ``region``."""
    return f"node.{service}.{region}"


def gateway_id(region: str) -> str:
    """The id of ``region``'s gateway."""
    return f"gateway.{region}"


def prober_id(region: str) -> str:
    """The id of ``region``'s prober (vantage point)."""
    return f"prober.{region}"


def controller_id(region: str) -> str:
    """The id of ``region``'s failover controller."""
    return f"controller.{region}"


def link_id(source: str, target: str) -> str:
    """The id of the link carrying ``source``'s traffic into ``target``."""
    return f"link.{source}.{target}"


@dataclass(frozen=True)
class ComponentId:
    """A parsed component id: its kind, its region and, for a node, its service."""

    kind: Kind
    region: str | None = None
    service: str | None = None
    target: str | None = None
    """For a link: the region its traffic goes into (``region`` is where it comes from)."""

    @classmethod
    def parse(cls, text: str) -> ComponentId:
        """Parse ``text``; ``ValueError`` naming the expected forms if it is none of them."""
        kind, _, rest = text.partition(".")
        parts = rest.split(".") if rest else []
        try:
            parsed = Kind(kind)
        except ValueError:
            parsed = None
        if parsed is Kind.VAULT and not parts:
            return cls(Kind.VAULT)
        if parsed is Kind.NODE and len(parts) == 2 and all(parts):
            return cls(Kind.NODE, region=parts[1], service=parts[0])
        if parsed is Kind.LINK and len(parts) == 2 and all(parts):
            return cls(Kind.LINK, region=parts[0], target=parts[1])
        if parsed in (Kind.GATEWAY, Kind.PROBER, Kind.CONTROLLER) and len(parts) == 1 and parts[0]:
            return cls(parsed, region=parts[0])
        raise ValueError(f"{text[:80]!r} is not a component id: expected node.<service>.<region>, gateway.<region>, "
                         "prober.<region>, controller.<region>, link.<source>.<target> or vault")

    def __str__(self) -> str:
        if self.kind is Kind.NODE:
            return node_id(str(self.service), str(self.region))
        if self.kind is Kind.LINK:
            return link_id(str(self.region), str(self.target))
        if self.kind is Kind.VAULT:
            return "vault"
        return f"{self.kind.value}.{self.region}"
