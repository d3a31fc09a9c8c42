"""`paydar bench matrix`: the full N-1 matrix as a benchmark: wall time and figures per fault.

It runs exactly `paydar drill --matrix` (a fresh system in a temporary state directory, Locust
load, every cell) and condenses the report: the wall time against the 15-minute target, and per
fault the cells that held, the median and worst time until citizens were served again, the lowest
availability through the unaffected regions during a fault, and writes lost or corrupted reads;
and per service its verdict against its own RTO with its worst write and read recovery.
The whole report stays in the state directory for the per-cell figures.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console

from paydar.drill.report import recovery
from paydar.drill.run import DrillOptions, run_drill

__all__ = ["bench_matrix"]


def bench_matrix(*, config: Path, users: int, dwell: float, only: tuple[str, ...], console: Console
                 ) -> dict[str, float | int | str]:
    """Figures of one full (or ``only``-narrowed) matrix run."""
    state_dir = Path(tempfile.mkdtemp(prefix="paydar-bench-matrix-"))
    started = time.monotonic()
    report = run_drill(config=config, state_dir=state_dir / "state", keep=False, console=console,
                       options=DrillOptions(matrix=True, only=only, users=users, dwell=dwell))
    figures: dict[str, float | int | str] = {
        "verdict": "PASSED" if report.passed else f"FAILED: {report.failure}",
        "wall_seconds": round(time.monotonic() - started, 1),
        "experiments_seconds": report.experiments_seconds,
        "cells": len(report.experiments),
        "cells_held": sum(1 for e in report.experiments if e["held"]),
        "cells_aborted": sum(1 for e in report.experiments if e.get("aborted")),
        "acknowledged_writes": report.writes_acknowledged,
        "lost": report.lost,
        "corrupted": report.corrupted,
        "report": str(state_dir / "state" / "report.html"),
    }
    for fault in dict.fromkeys(e["name"].split(":", 1)[1] for e in report.experiments):
        cells = [e for e in report.experiments if e["name"].endswith(f":{fault}")]
        recovered = [e["recovery_seconds"] for e in cells if e["recovery_seconds"] is not None]
        served = [e["availability_during_fault"] for e in cells if e["availability_during_fault"] is not None]
        figures[f"{fault}: held"] = f"{sum(1 for e in cells if e['held'])}/{len(cells)}"
        if recovered:
            figures[f"{fault}: served again p50/max s"] = f"{statistics.median(recovered):.2f} / {max(recovered):.2f}"
        if served:
            figures[f"{fault}: lowest availability elsewhere"] = f"{min(served):.1%}"
        figures[f"{fault}: lost / corrupted"] = (f"{sum(e['lost'] or 0 for e in cells)} / "
                                                 f"{sum(e['corrupted'] or 0 for e in cells)}")
    for v in report.services:
        figures[f"service {v['service']} (tier {v['tier']}, rto {v['rto']:g}s)"] = (
            f"{v['outcome']}: writes back after {recovery(v['worst_writes'])} ({v['worst_writes_cell'] or '-'}), "
            f"reads after {recovery(v['worst_reads'])}")
    return figures
