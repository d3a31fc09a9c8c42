"""Configuration of one regional gateway."""

from __future__ import annotations

from paydar.server.component import ComponentConfig

__all__ = ["GatewayConfig"]


class GatewayConfig(ComponentConfig):
    """``nodes[service][region]`` and ``gateways[region]`` are URLs as seen from this region.

    Anything in another region is reached through that link's proxy.
    """

    nodes: dict[str, dict[str, str]]
    gateways: dict[str, str]
