"""What every long-running Paydar component is given at start, and how it loads it.

The local realizer (and, in production, the Pulumi program) writes one JSON config per
component; the component loads the topology model, the trust root, its own key and the
routing table it must obey from the paths named there.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict

from paydar.model.errors import PaydarError, TableRejected, TableRejection
from paydar.model.files import read_secret, write_json_atomic
from paydar.model.identity import TrustRoot, load_private_key
from paydar.model.routing import SignedTable, TableGuard
from paydar.model.signing import Signer
from paydar.model.topology import NationalTopology, load_topology

__all__ = ["ComponentConfig", "Foundation", "load_foundation"]

log = logging.getLogger(__name__)
MAX_EVIDENCE = 20


class ComponentConfig(BaseModel):
    """Fields common to every component's config file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    component: str
    region: str
    host: str = "127.0.0.1"
    port: int
    data_dir: Path
    topology: Path
    trust_root: Path
    key: Path
    admin_token_file: Path
    table: Path
    log_level: str = "INFO"

    @classmethod
    def load(cls, path: str | Path) -> Self:
        try:
            return cls.model_validate_json(Path(path).read_bytes())
        except OSError as exc:
            raise PaydarError(f"cannot read component config {path}: {exc.strerror}") from None


@dataclass
class Foundation:
    """The loaded model, identities and routing guard of one component."""

    topology: NationalTopology
    trust: TrustRoot
    signer: Signer
    guard: TableGuard
    admin_token: str
    table_store: Path
    trust_root_path: Path

    def reload_trust(self) -> frozenset[str]:
        """Load the trust root again (after ``paydar keys rotate``); returns the held table's
        signers that are still valid. A trust root that does not load leaves the old one in force."""
        try:
            trust = TrustRoot.load(self.trust_root_path)
        except (PaydarError, ValueError) as exc:
            log.error("trust root not reloaded file=%s reason=%s", self.trust_root_path, exc)
            return self.guard.signers
        self.trust = trust
        signers = self.guard.retrust(trust)
        log.info("trust root reloaded signers_still_valid=%d", len(signers))
        return signers

    def adopt(self, signed: SignedTable, *, source: str, on_refused: Callable[[str], None]) -> frozenset[str]:
        """Obey ``signed`` if the guard allows and keep it on disk; otherwise count the refusal
        (``on_refused(reason)``), keep any equivocation evidence, and raise ``TableRejected``.
        One place for every component, so refusals are logged and kept alike."""
        try:
            signers = self.guard.accept(signed)
        except TableRejected as exc:
            on_refused(exc.reason)
            self.keep_evidence(exc)
            if exc.reason != TableRejection.NOT_NEWER:
                log.warning("routing table refused source=%s reason=%s detail=%s", source, exc.reason, exc)
            raise
        self.persist_table()
        log.info("routing table adopted version=%d source=%s signers=%d reason=%s", signed.table.version, source,
                 len(signers), signed.table.reason)
        return signers

    def keep_evidence(self, exc: TableRejected) -> None:
        """Keep the guard's evidence of an equivocation on disk (bounded) and log it as an alert."""
        evidence = self.guard.evidence
        if exc.reason != TableRejection.EQUIVOCATION or evidence is None:
            return
        folder = self.table_store.parent / "evidence"
        folder.mkdir(mode=0o700, exist_ok=True)
        kept = sorted(folder.glob("equivocation-*.json"))
        for old in kept[: max(0, len(kept) - MAX_EVIDENCE + 1)]:
            old.unlink(missing_ok=True)
        path = folder / f"equivocation-{time.time_ns()}.json"
        write_json_atomic(path, evidence.record())
        log.error("ALERT table equivocation detected: %s; evidence=%s", exc, path)

    def persist_table(self) -> None:
        """Keep the table in force on disk so a restart obeys it (fail static)."""
        if self.guard.current is not None:
            write_json_atomic(self.table_store, self.guard.current.model_dump(mode="json"))


def load_foundation(config: ComponentConfig) -> Foundation:
    """Load topology, trust root, key, admin token and the newest valid table on disk."""
    topology = load_topology(config.topology)
    trust = TrustRoot.load(config.trust_root)
    guard = TableGuard(trust=trust, threshold=topology.control.threshold,
                       known_services=[s.id for s in topology.services])
    config.data_dir.mkdir(parents=True, exist_ok=True)
    table_store = config.data_dir / "table.json"
    for source in (config.table, table_store):
        if not source.exists():
            continue
        try:
            guard.restore(SignedTable.model_validate_json(source.read_bytes()))
        except (TableRejected, ValueError) as exc:
            log.warning("ignoring routing table file=%s reason=%s", source, exc)
    if guard.current is None:
        raise PaydarError(f"no valid routing table at {config.table}; run `paydar up` to create one")
    return Foundation(topology=topology, trust=trust, signer=Signer(load_private_key(config.key)),
                      guard=guard, admin_token=read_secret(config.admin_token_file),
                      table_store=table_store, trust_root_path=config.trust_root)

