"""The running national system a Chaos Toolkit activity acts on, and what experiments share.

Activities are separate calls, so what one leaves for the next lives under the state
directory's ``chaos/`` folder: the fault in force (which component, which region: probes
measure citizens through the *other* regions' gateways) and the ledger of every citizen
write the probes made (to check later that no acknowledged write was lost or corrupted).
The state directory comes from the experiment's configuration ``paydar_state_dir``, else
``PAYDAR_STATE_DIR``, else ``.paydar/state``, as for the `paydar` command.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from chaos.invariants import AckLedger
from failover.manual import current_table
from infra.files import write_json_atomic
from infra.local.realizer import Realization, load_realization

__all__ = ["Fault", "append_ledger", "clear_fault", "fault", "load_ledger", "primary_of", "realization",
           "record_fault"]

Configuration = Mapping[str, Any] | None
Fault = dict[str, Any]


def realization(configuration: Configuration) -> Realization:
    """The system the experiment targets."""
    state_dir = (configuration or {}).get("paydar_state_dir") or os.environ.get("PAYDAR_STATE_DIR") \
        or ".paydar/state"
    return load_realization(Path(state_dir))


def _folder(system: Realization) -> Path:
    folder = system.layout.root / "chaos"
    folder.mkdir(exist_ok=True)
    return folder


def record_fault(system: Realization, **details: Any) -> Fault:
    """Remember the fault now in force (``component``, ``region``, and whatever undoing it needs)."""
    write_json_atomic(_folder(system) / "fault.json", details)
    return details


def fault(system: Realization) -> Fault | None:
    path = _folder(system) / "fault.json"
    return json.loads(path.read_text()) if path.exists() else None


def clear_fault(system: Realization) -> Fault | None:
    """Forget the fault in force; return what it was."""
    held = fault(system)
    (_folder(system) / "fault.json").unlink(missing_ok=True)
    return held


def primary_of(system: Realization, service: str) -> str:
    """The region whose node is the service's primary in the newest table a gateway holds."""
    primary = current_table(system).table.route(service).primary
    if primary is None:
        raise RuntimeError(f"service {service} has no primary (read-only); wait for the controllers to promote one")
    return primary


def append_ledger(system: Realization, entries: list[tuple[str, str, dict[str, Any], bool]]) -> None:
    with (_folder(system) / "ledger.jsonl").open("a") as out:
        for service, doc_id, document, acknowledged in entries:
            out.write(json.dumps({"service": service, "doc_id": doc_id, "document": document,
                                  "acknowledged": acknowledged}) + "\n")


def load_ledger(system: Realization) -> AckLedger:
    ledger = AckLedger()
    path = _folder(system) / "ledger.jsonl"
    if path.exists():
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            ledger.record(entry["service"], entry["doc_id"], entry["document"], entry["acknowledged"])
    return ledger
