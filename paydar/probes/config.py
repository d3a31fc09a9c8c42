"""Configuration of one prober process."""

from __future__ import annotations

from paydar.server.component import ComponentConfig

__all__ = ["ProberConfig"]


class ProberConfig(ComponentConfig):
    """``nodes[service][region]`` and ``gateways[region]`` as seen from this prober's region.

    Targets in other regions are reached through the link proxies, like any cross-region
    traffic, so a cut link looks from here exactly like it would to a citizen.
    """

    nodes: dict[str, dict[str, str]]
    gateways: dict[str, str]
