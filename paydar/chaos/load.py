"""Steady citizen load for the drill: Locust, headless, as a subprocess against every gateway.

A subprocess because Locust monkey-patches the standard library with gevent, which must not
reach the drill's own asyncio code. The citizens (:mod:`chaos.locustfile`) log every
write-then-read; :class:`CitizenLoad` reads that log back as availability :class:`Sample`
objects and as an :class:`~paydar.chaos.invariants.AckLedger` of every write Locust saw acknowledged.
Locust's own statistics (requests, failures, latency percentiles per region) land in
``<state>/chaos/locust_stats.csv``; the summary is parsed from it.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paydar.chaos.invariants import AckLedger
from paydar.infra.local.processes import terminate
from paydar.infra.local.realizer import Realization
from paydar.model.errors import PaydarError
from paydar.model.topology import WorkloadKind

__all__ = ["CitizenLoad", "LoadFailed", "Sample"]

log = logging.getLogger(__name__)
LOCUSTFILE = Path(__file__).with_name("locustfile.py")
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0


class LoadFailed(PaydarError):
    """Locust did not start, or died while the drill ran."""


@dataclass(frozen=True)
class Sample:
    """One citizen interaction: when, through which region's gateway, of which service, whether it
    was served (written and read back), whether the write was acknowledged, and whether the
    service served a read (None: nothing acknowledged to read yet)."""

    at: float
    region: str
    served: bool
    service: str = ""
    acknowledged: bool = False
    read: bool | None = None
    doc_id: str = ""


class CitizenLoad:
    """``users`` Locust citizens spread over every gateway of ``system``; ``start()``, then ``stop()``."""

    def __init__(self, system: Realization, users: int) -> None:
        if users < 1:
            raise ValueError("the load needs at least one user")
        self.system = system
        self.users = users
        folder = system.layout.root / "chaos"
        folder.mkdir(exist_ok=True)
        self.log_path = folder / f"load-{time.strftime('%Y%m%d-%H%M%S')}.jsonl"
        self.stats_prefix = folder / "locust"
        self.output = folder / "locust.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> CitizenLoad:
        """Start Locust and wait (bounded) until its first citizen interaction is logged."""
        env = {**os.environ,
               "PAYDAR_GATEWAYS": json.dumps({r: self.system.plan.gateway(r).url
                                              for r in self.system.topology.region_names}),
               # A database is exercised through its app's canary: citizens never reach it directly.
               "PAYDAR_SERVICES": json.dumps([s.id for s in self.system.topology.services
                                              if s.workload is not WorkloadKind.POSTGRES]),
               "PAYDAR_CANARIES": json.dumps({sid: http.canary.model_dump(mode="json")
                                              for sid, http in self.system.topology.http_services.items()}),
               "PAYDAR_LEDGERS": json.dumps({sid: http.ledger.model_dump(mode="json")
                                             for sid, http in self.system.topology.http_services.items()
                                             if http.ledger is not None}),
               "PAYDAR_LOAD_LOG": str(self.log_path)}
        command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--users", str(self.users),
                   "--spawn-rate", str(self.users), "--csv", str(self.stats_prefix), "--only-summary",
                   "--exit-code-on-error", "0", "--stop-timeout", "5", "--loglevel", "WARNING"]
        with self.output.open("ab") as out:
            self._process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while not (self.log_path.exists() and self.log_path.stat().st_size > 0):
            if self._process.poll() is not None or time.monotonic() >= deadline:
                self.stop()
                raise LoadFailed(f"Locust did not start within {START_TIMEOUT:.0f}s; see {self.output}")
            time.sleep(0.1)
        log.info("citizen load started users=%d pid=%d", self.users, self._process.pid)
        return self

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        """Stop Locust (SIGTERM: it finishes its statistics), killing it by PID after a bound."""
        process, self._process = self._process, None
        if process is not None:
            terminate(process, STOP_TIMEOUT)

    def _lines(self) -> list[dict[str, Any]]:
        if not self.log_path.exists():
            return []
        lines = []
        for raw in self.log_path.read_text().splitlines():
            try:
                lines.append(json.loads(raw))
            except ValueError:
                continue  # the last line of a killed Locust may be cut short
        return lines

    def samples(self) -> list[Sample]:
        return [Sample(e["at"], e["region"], bool(e["served"]), e["service"], bool(e["acknowledged"]), e.get("read"),
                       e["doc_id"])
                for e in self._lines()]

    def ledger(self) -> AckLedger:
        """Every write Locust attempted, with whether it was acknowledged."""
        ledger = AckLedger()
        for entry in self._lines():
            if not entry["doc_id"]:
                continue  # an http service's canary: its state is its app's own (a ledger record has an id)
            ledger.record(entry["service"], entry["doc_id"], entry["document"], bool(entry["acknowledged"]))
        return ledger

    def summary(self) -> dict[str, Any]:
        """Per region, from Locust's statistics: requests, failures, p50 and p99 in ms."""
        path = Path(f"{self.stats_prefix}_stats.csv")
        if not path.exists():
            return {}
        rows: dict[str, Any] = {"users": self.users}
        with path.open() as stats:
            for row in csv.DictReader(stats):
                if row["Name"] and row["Name"] != "Aggregated":
                    rows[row["Name"]] = {"requests": int(row["Request Count"]), "failures": int(row["Failure Count"]),
                                         "p50_ms": _number(row.get("50%")), "p99_ms": _number(row.get("99%"))}
        return rows


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "", "N/A") else None
    except ValueError:
        return None
