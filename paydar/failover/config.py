"""Configuration of one failover controller process."""

from __future__ import annotations

from paydar.server.component import ComponentConfig

__all__ = ["ControllerConfig"]


class ControllerConfig(ComponentConfig):
    """Addresses as seen from this controller's region (other regions through the link proxies).

    ``probers`` and ``peers`` map component ids (``prober.<region>``, ``controller.<region>``)
    to URLs; ``nodes[service][region]`` and ``gateways[region]`` are where tables go.
    """

    probers: dict[str, str]
    peers: dict[str, str]
    nodes: dict[str, dict[str, str]]
    gateways: dict[str, str]
