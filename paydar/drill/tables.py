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
from paydar.model.files import write_text_atomic
from paydar.ops.failover import current_table

__all__ = ["TableHistory"]

log = logging.getLogger(__name__)
INTERVAL = 0.5
MAX_TABLES = 10_000
STOP_TIMEOUT = 15.0


class TableHistory:
    """Records each new certified table version while in its ``with`` block; the file is written
    once, on leaving it, from what was recorded (a watcher still stuck on a slow gateway cannot
    change it afterwards)."""

    FILE = "tables.jsonl"

    def __init__(self, system: Realization) -> None:
        self.system = system
        self.path: Path = system.layout.root / "chaos" / self.FILE
        self.seen: list[dict[str, object]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="table-history", daemon=True)

    def __enter__(self) -> TableHistory:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(STOP_TIMEOUT)
        lines = list(self.seen)
        if len(lines) >= MAX_TABLES:
            lines.append({"truncated": f"only the first {MAX_TABLES} table versions were recorded"})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.path, "".join(json.dumps(line) + "\n" for line in lines))

    def _run(self) -> None:
        last = -1
        while not self._stop.is_set() and len(self.seen) < MAX_TABLES:
            try:
                signed = current_table(self.system)
            except (PaydarError, OSError, ValueError) as exc:
                log.warning("routing table not readable for the history: %s", exc)
            else:
                if signed.table.version != last:
                    last = signed.table.version
                    self.seen.append({"seen_at": time.time(), "table": signed.model_dump(mode="json")})
            self._stop.wait(INTERVAL)
