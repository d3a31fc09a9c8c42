"""Configuration of one PostgreSQL agent process (one per service and region)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from paydar.server.component import ComponentConfig
from paydar.workload.database import APP_ROLE

__all__ = ["AgentConfig"]


class AgentConfig(ComponentConfig):
    """An agent runs its region's server of one postgres service.

    ``db_ports`` reach every region's server from here: its own directly, the others' through
    the link proxies, so cutting a link cuts replication like a real network fault would. It
    holds its own region's replication password only, and every role's SCRAM verifier (which
    proves a login and cannot make one).
    """

    service: str
    uid: int = Field(ge=810_000)
    """The server's own uid (``paydar.infra.local.appjail``)."""
    state_dir: Path
    """The realization's state directory, hidden from the server."""
    db_port: int
    route_port: int
    read_port: int
    db_ports: dict[str, int]
    replicator_password_file: Path
    replicator_verifiers: dict[str, str]
    app_role: str = APP_ROLE
    app_verifier: str
    max_route_connections: int = Field(default=40, ge=1, le=10_000)
    """Per route: the two together stay below the server's connection slots, so a flood of
    connections through one region's routes never takes the slots the agent and standbys need."""
    vault_endpoint: str | None = None
    vault_identity: Path | None = None
    """This region's vault identity (its own region's backups only); without it no backups."""
    peers: dict[str, str] = Field(default_factory=dict)
    """The other regions' agents of the service (their URLs as reached from here): a restarted
    agent takes the newest certified table any of them holds before it acts on its own."""
