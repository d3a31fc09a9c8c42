"""Configuration of one regional node process."""

from __future__ import annotations

from pathlib import Path

from paydar.server.component import ComponentConfig

__all__ = ["NodeConfig"]


class NodeConfig(ComponentConfig):
    """A node serves one service in one region; ``peers`` reach its replicas in other regions.

    Peer URLs go through the link proxies of the local realization, so cutting a link cuts
    replication like a real network fault would.
    """

    service: str
    peers: dict[str, str]
    vault_endpoint: str | None = None
    vault_identity: Path | None = None
    """This region's vault identity (its own backups only); without it the node takes no backups."""
