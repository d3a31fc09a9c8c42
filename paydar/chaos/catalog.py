"""Running experiments in-process with Chaos Toolkit's own runner, one at a time.

`chaos run` does the same for one file; the drill runs the whole catalog (or the N-1
matrix, :mod:`paydar.chaos.matrix`) against one system, keeps every journal, and reads the figures
that matter out of them: whether it held, recovery and detection times, writes lost,
corrupted reads, the fault window and the region the fault took out.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from paydar.chaos.roles import attackable_apps
from paydar.chaos.target import begin_experiment, take_abort
from paydar.infra.local.realizer import Realization
from paydar.model.files import write_json_atomic
from paydar.model.topology import NationalTopology

__all__ = ["CATALOG_DIR", "ExperimentResult", "experiments", "load_catalog", "run_experiments"]

CATALOG_DIR = Path(__file__).with_name("experiments")
RECOVERY_PROBE = "seconds-until-citizens-served-again"
DETECTION_PROBE = "seconds-until-the-node-detects-it"
Experiment = tuple[str, dict[str, Any]]
"""A name (file stem or matrix cell) and the experiment as Chaos Toolkit reads it."""


@dataclass(frozen=True)
class ExperimentResult:
    """What one experiment's journal says, in the drill's terms."""

    name: str
    title: str
    status: str
    deviated: bool
    steady_before: bool
    steady_after: bool
    unmet: tuple[str, ...]
    """The steady-state probes whose tolerance was not met (before or after the attack)."""
    seconds: float
    recovery_seconds: float | None
    failed_activities: tuple[str, ...]
    journal: str
    window: tuple[float, float] | None = None
    """Unix times from the first attack to the end of the rollback (the fault window)."""
    affected_region: str | None = None
    """The region the attack took out, whose citizens are not promised service meanwhile."""
    fault_component: str | None = None
    """The component the attack hit (``node.<service>.<region>``, ``region.<name>``, a link...)."""
    fault: dict[str, Any] | None = None
    """Everything the attack recorded of the fault (kind, component, region, primaries then...)."""
    detection_seconds: float | None = None
    lost: int | None = None
    """Acknowledged writes lost, as the steady-state probe counted them after the attack."""
    corrupted: int | None = None
    aborted: str | None = None
    """Why the safeguard aborted the experiment (None: it was not aborted)."""

    @property
    def held(self) -> bool:
        return (self.status == "completed" and not self.deviated and self.steady_before and self.steady_after
                and not self.failed_activities and self.aborted is None)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "status": self.status, "deviated": self.deviated,
                "steady_state_before": self.steady_before, "steady_state_after": self.steady_after,
                "unmet": list(self.unmet),
                "held": self.held, "seconds": self.seconds, "recovery_seconds": self.recovery_seconds,
                "failed_activities": list(self.failed_activities), "journal": self.journal,
                "window": list(self.window) if self.window else None, "affected_region": self.affected_region,
                "fault_component": self.fault_component, "fault": self.fault,
                "detection_seconds": self.detection_seconds, "lost": self.lost, "corrupted": self.corrupted,
                "aborted": self.aborted}


def experiments(folder: Path = CATALOG_DIR) -> list[Path]:
    return sorted(folder.glob("*.json"))


NEEDS_APP = "needs-http-service"
"""The tag of an experiment that attacks an agency app's instance."""
NEEDS_POSTGRES = "needs-postgres-service"
"""The tag of an experiment that attacks an agency database's server."""


def load_catalog(paths: list[Path], topology: NationalTopology | None = None) -> list[Experiment]:
    """The experiments at ``paths``; given ``topology``, only those it has targets for (the app
    experiments need an http service whose instances ``paydar up`` runs, the database ones a
    postgres service)."""
    loaded = [(path.stem, json.loads(path.read_text())) for path in paths]
    if topology is None:
        return loaded
    missing = {tag for tag, present in ((NEEDS_APP, bool(attackable_apps(topology))),
                                        (NEEDS_POSTGRES, bool(topology.postgres_services))) if not present}
    return [(name, e) for name, e in loaded if not missing & set(e.get("tags", ()))]


def run_experiments(system: Realization, planned: list[Experiment],
                    started: Callable[[int, str], None] = lambda _n, _name: None,
                    configuration: dict[str, Any] | None = None) -> list[ExperimentResult]:
    """Run each experiment against ``system`` in turn; journals go to ``<state-dir>/chaos/journals/``.

    ``started(index, name)`` is called as each begins (the drill's progress display);
    ``configuration`` is added to every experiment's (the drill's safeguard settings)."""
    from chaoslib.experiment import run_experiment

    # The drill shows its own progress, and the journals keep everything Chaos Toolkit says.
    logging.getLogger("chaostoolkit").setLevel(logging.ERROR)
    journals = system.layout.root / "chaos" / "journals"
    journals.mkdir(parents=True, exist_ok=True)
    results = []
    for index, (name, planned_experiment) in enumerate(planned):
        experiment = {**planned_experiment, "configuration": {**planned_experiment.get("configuration", {}),
                                                              **(configuration or {}),
                                                              "paydar_state_dir": str(system.layout.root)}}
        started(index, name)
        begin_experiment(system)
        began = time.monotonic()
        # As `chaos run` does: the experiment's own runtime section picks its rollback strategy.
        strategy = experiment.get("runtime", {}).get("rollbacks", {}).get("strategy", "always")
        journal = run_experiment(experiment, settings={"runtime": {"rollbacks": {"strategy": strategy}}})
        target = journals / f"{name.replace(':', '--')}.json"
        write_json_atomic(target, json.loads(json.dumps(journal, default=str)))
        results.append(_result(name, journal, time.monotonic() - began, target, take_abort(system)))
    return results


def _output(journal: dict[str, Any], name: str) -> float | None:
    found = next((r.get("output") for r in journal.get("run", [])
                  if r["activity"]["name"] == name and r["status"] == "succeeded"), None)
    return float(found) if found is not None else None


def _counted(steady: dict[str, Any], func: str) -> int | None:
    """The largest count a steady-state probe (by function) reported, before or after."""
    counts = [int(probe["output"]) for phase in ("before", "after") for probe in (steady.get(phase) or {}).get(
              "probes", []) if probe["activity"].get("provider", {}).get("func") == func
              and isinstance(probe.get("output"), int)]
    return max(counts) if counts else None


def _result(name: str, journal: dict[str, Any], seconds: float, path: Path,
            aborted: str | None = None) -> ExperimentResult:
    runs = list(journal.get("run", [])) + list(journal.get("rollbacks", []))
    steady = journal.get("steady_states") or {}
    return ExperimentResult(
        name=name, title=journal["experiment"]["title"], status=str(journal["status"]),
        deviated=bool(journal["deviated"]), steady_before=bool((steady.get("before") or {}).get("steady_state_met")),
        steady_after=bool((steady.get("after") or {}).get("steady_state_met")), seconds=round(seconds, 2),
        unmet=tuple(probe["activity"]["name"] for phase in ("before", "after")
                    for probe in (steady.get(phase) or {}).get("probes", []) if probe.get("tolerance_met") is False),
        recovery_seconds=_output(journal, RECOVERY_PROBE), detection_seconds=_output(journal, DETECTION_PROBE),
        lost=_counted(steady, "acknowledged_writes_lost"), corrupted=_counted(steady, "corrupted_documents_served"),
        failed_activities=tuple(f"{r['activity']['name']}: {r.get('exception', [''])[-1].strip()}"
                                for r in runs if r["status"] != "succeeded"),
        journal=str(path), window=_window(journal), affected_region=_recorded(journal, "region"),
        fault_component=_recorded(journal, "component"), fault=_record(journal), aborted=aborted)


def _record(journal: dict[str, Any]) -> dict[str, Any] | None:
    """What the attack (the method's first action) recorded of the fault."""
    first = next((r for r in journal.get("run", []) if r["activity"].get("type") == "action"), None)
    output = first.get("output") if first else None
    return output if isinstance(output, dict) else None


def _recorded(journal: dict[str, Any], key: str) -> str | None:
    """One field the attack recorded of the fault: its region or component."""
    value = (_record(journal) or {}).get(key)
    return str(value) if value else None


def _window(journal: dict[str, Any]) -> tuple[float, float] | None:
    activities = list(journal.get("run", [])) + list(journal.get("rollbacks", []))
    try:
        return (datetime.fromisoformat(activities[0]["start"]).timestamp(),
                datetime.fromisoformat(activities[-1]["end"]).timestamp())
    except (IndexError, KeyError, ValueError):
        return None
