"""The history of routing tables during a drill, for its evidence.

Gateways keep only the newest certified table, so the drill watches them: every half second
it asks for the newest certified table and writes each new version, signatures and all, to
``chaos/tables.jsonl`` with the time it was first seen. Bounded in entries and in wait.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from types import TracebackType

from paydar.infra.local.realizer import Realization
from paydar.model.errors import PaydarError
from paydar.ops.failover import current_table

__all__ = ["TableHistory"]

log = logging.getLogger(__name__)
INTERVAL = 0.5
MAX_TABLES = 10_000
STOP_TIMEOUT = 15.0


class TableHistory:
    """Records each new certified table version while in its ``with`` block."""

    def __init__(self, system: Realization) -> None:
        self.system = system
        self.path: Path = system.layout.root / "chaos" / "tables.jsonl"
        self.recorded = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="table-history", daemon=True)

    def __enter__(self) -> TableHistory:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(STOP_TIMEOUT)

    def _run(self) -> None:
        last = -1
        with self.path.open("a") as out:
            while not self._stop.is_set() and self.recorded < MAX_TABLES:
                try:
                    signed = current_table(self.system)
                except (PaydarError, OSError, ValueError) as exc:
                    log.warning("routing table not readable for the history: %s", exc)
                else:
                    if signed.table.version != last:
                        last = signed.table.version
                        out.write(json.dumps({"seen_at": time.time(), "table": signed.model_dump(mode="json")})
                                  + "\n")
                        out.flush()
                        self.recorded += 1
                self._stop.wait(INTERVAL)
