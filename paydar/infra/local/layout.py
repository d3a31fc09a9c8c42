"""Where everything of one local realization lives: one state directory.

State, keys (0600 in a 0700 directory), secrets, configs, data and logs are all under it,
so `paydar down` and a wipe of the directory remove exactly what `paydar up` made.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["StateLayout"]


@dataclass(frozen=True)
class StateLayout:
    """Paths inside a state directory."""

    root: Path

    @property
    def realization(self) -> Path:
        return self.root / "realization.json"

    @property
    def topology(self) -> Path:
        return self.root / "national.yaml"

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def trust_root(self) -> Path:
        return self.root / "trust-root.json"

    @property
    def secrets(self) -> Path:
        return self.root / "secrets"

    def admin_token(self, component: str) -> Path:
        """One component's own admin credential: it opens that component's admin endpoints only."""
        return self.secrets / "admin" / f"{component}.token"

    def link_token(self, link: str) -> Path:
        """The admin credential of one link proxy (``link.<source>.<target>``), given to no other."""
        return self.secrets / "links" / f"{link}.token"

    @property
    def supervisor_password(self) -> Path:
        return self.secrets / "supervisor-password"

    @property
    def vault_admin(self) -> Path:
        return self.secrets / "vault-admin.json"

    def vault_region(self, region: str) -> Path:
        """The S3 identity of one region's nodes: their own backups, nothing else."""
        return self.secrets / f"vault-{region}.json"

    @property
    def restores(self) -> Path:
        """Where restores stage and verify downloads, and keep the data they replaced."""
        return self.root / "restores"

    @property
    def table(self) -> Path:
        return self.root / "tables" / "current.json"

    @property
    def supervisor_dir(self) -> Path:
        return self.root / "supervisor"

    @property
    def supervisor_conf(self) -> Path:
        return self.supervisor_dir / "supervisord.conf"

    @property
    def supervisor_pid(self) -> Path:
        return self.supervisor_dir / "supervisord.pid"

    @property
    def supervisor_socket(self) -> Path:
        return self.supervisor_dir / "supervisor.sock"

    @property
    def vault_dir(self) -> Path:
        return self.root / "vault"

    @property
    def vault_s3_config(self) -> Path:
        return self.secrets / "vault-s3.json"

    def config(self, component: str) -> Path:
        return self.root / "config" / f"{component}.json"

    def pg_secret(self, service: str, name: str) -> Path:
        """A password of a postgres service's roles: ``replicator-<region>`` (that region's agent
        only) or ``app`` (its app's instances only)."""
        return self.secrets / "pg" / service / f"{name}.password"

    def data(self, component: str) -> Path:
        return self.root / "data" / component

    def log(self, program: str) -> Path:
        return self.root / "logs" / f"{program}.log"

    def make_dirs(self) -> None:
        for path in (self.root, self.root / "config", self.root / "logs", self.table.parent):
            path.mkdir(parents=True, exist_ok=True)
        # Citizen data, backups staged for restore, the vault's files and every secret are for
        # their owner only: nothing in them is for other local users to read.
        for private in (self.secrets, self.secrets / "admin", self.secrets / "links", self.supervisor_dir,
                        self.root / "data", self.restores, self.vault_dir):
            private.mkdir(parents=True, exist_ok=True)
            private.chmod(0o700)
