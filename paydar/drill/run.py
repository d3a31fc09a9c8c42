"""`paydar drill`: up, steady Locust load, the attack catalog (or the N-1 matrix), a final sweep, the report, down.

The drill acts on the system only from outside, through the Chaos Toolkit experiments of
``chaos/`` and their public interfaces, and judges it by what citizens see: every experiment's
steady state, then every write acknowledged during the whole drill (Locust's and the probes')
read back through every gateway. It fails when any of that broke.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from paydar.chaos.catalog import Experiment, experiments, load_catalog, run_experiments
from paydar.chaos.invariants import AckLedger, ViolationKind, check_acknowledged
from paydar.chaos.load import CitizenLoad, LoadFailed, Sample
from paydar.chaos.matrix import cells
from paydar.chaos.matrix import experiment as cell_experiment
from paydar.chaos.safeguard import DEFAULT_FLOOR, DEFAULT_MAX_WAIT, DEFAULT_SECONDS
from paydar.chaos.target import load_ledger
from paydar.chaos.workload import read_back
from paydar.drill.provenance import provenance
from paydar.drill.report import recovery, render_html, why_broken
from paydar.drill.tables import TableHistory
from paydar.drill.verdict import Outcome, judge
from paydar.infra.local.realizer import (
    Realization,
    UpFailed,
    down,
    load_realization,
    up,
)
from paydar.model.errors import BadInput, PaydarError, TopologyError
from paydar.model.files import write_json_atomic
from paydar.ops.evidence import write_bundle

__all__ = ["EVIDENCE", "DrillOptions", "DrillReport", "run_drill"]

EVIDENCE = "evidence.tar.gz"


@dataclass(frozen=True)
class DrillOptions:
    """What to run: the catalog (default) or the matrix narrowed by ``only``, under ``users`` Locust
    citizens; a cell is aborted when availability through the unaffected regions stays below
    ``floor`` for longer than ``floor_seconds``."""

    matrix: bool = False
    only: tuple[str, ...] = ()
    users: int = 6
    dwell: float = 2.0
    floor: float = DEFAULT_FLOOR
    floor_seconds: float = DEFAULT_SECONDS
    max_wait: float = DEFAULT_MAX_WAIT


@dataclass
class DrillReport:
    """Figures of one drill; ``passed`` only when every invariant held."""

    state_dir: str
    mode: str = "catalog"
    weakenings: list[dict[str, str]] = field(default_factory=list)
    """Safety rules the topology gave up (``unsafe:``), with what each lets an attacker do."""
    up_seconds: float = 0.0
    experiments_seconds: float = 0.0
    writes_attempted: int = 0
    writes_acknowledged: int = 0
    reads_checked: int = 0
    lost: int = 0
    corrupted: int = 0
    load: dict[str, Any] = field(default_factory=dict)
    load_log: str = ""
    """This drill's log of every citizen interaction (Locust's)."""
    experiments: list[dict[str, Any]] = field(default_factory=list)
    services: list[dict[str, Any]] = field(default_factory=list)
    """Each service against its own RTO and RPO, tiers first (:func:`paydar.drill.verdict.judge`)."""
    meta: dict[str, Any] = field(default_factory=dict)
    """When, which Paydar (version, commit), which topology (its SHA-256) and which settings."""
    timeline: dict[str, list[list[float]]] = field(default_factory=dict)
    """Per region: [seconds since timeline_origin, share of citizen requests served in that second]."""
    timeline_origin: float = 0.0
    violations: list[str] = field(default_factory=list)
    error: str = ""
    error_kind: str = ""
    """``usage`` when what was asked for does not exist (no matrix cell matches), ``runtime`` when
    the system could not be brought up or attached, or Locust could not run; "" otherwise."""

    @property
    def passed(self) -> bool:
        return (not self.error and not self.violations and self.writes_acknowledged > 0
                and all(e["held"] for e in self.experiments) and not self.missed)

    @property
    def missed(self) -> list[str]:
        """Why each service that missed its RTO or RPO missed it, in words."""
        return [c for v in self.services if v["outcome"] == Outcome.MISSED for c in v["causes"]]

    @property
    def failure(self) -> str:
        """Why the drill failed, in one line ("" when it passed)."""
        if self.passed:
            return ""
        broke = [e["name"] for e in self.experiments if not e["held"]]
        return self.error or "; ".join(self.violations[:5] + self.missed[:5]) or (
            f"experiments broke: {', '.join(broke)}" if broke else "no write was acknowledged")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"passed": self.passed, "verdict_reason": self.failure}

    def render(self, console: Console) -> None:
        table = Table(title=f"paydar drill ({self.mode})", show_header=False)
        table.add_column("figure")
        table.add_column("value")
        for key in ("state_dir", "up_seconds", "experiments_seconds", "writes_attempted", "writes_acknowledged",
                    "reads_checked", "lost", "corrupted"):
            value = getattr(self, key)
            table.add_row(key.replace("_", " "), f"{value:.2f}" if isinstance(value, float) else str(value))
        for key in ("paydar_commit", "topology_sha256"):
            table.add_row(key.replace("_", " "), str(self.meta.get(key, "")))
        for region, figures in sorted((k, v) for k, v in self.load.items() if isinstance(v, dict)):
            table.add_row(f"locust {region}", f"{figures['requests']} requests, {figures['failures']} failed, "
                                              f"p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms")
        for weakening in self.weakenings:
            table.add_row("[yellow]weakened[/]", f"{weakening['name']}: {weakening['risk']}")
        for e in self.experiments:
            table.add_row(f"experiment {e['name']}", _outcome(e))
        for v in self.services:
            table.add_row(f"service {v['service']} (tier {v['tier']})", _service_outcome(v))
        unmeasured = sum(1 for v in self.services if v["outcome"] == Outcome.UNMEASURED)
        verdict = (f"[bold green]PASSED[/]: every acknowledged write readable through every gateway; "
                   f"{len(self.experiments)} experiments held"
                   + (f"; {unmeasured} service(s) unmeasured" if unmeasured else "") if self.passed
                   else f"[bold red]FAILED[/]: {self.failure}")
        table.add_row("verdict", verdict)
        console.print(table)


def _outcome(e: dict[str, Any]) -> str:
    figures = []
    if e.get("detection_seconds") is not None:
        figures.append(f"detected after {e['detection_seconds']:.2f}s")
    if e.get("recovery_seconds") is not None:
        figures.append(f"served again after {e['recovery_seconds']:.2f}s")
    if e.get("availability_during_fault") is not None:
        figures.append(f"{e['availability_during_fault']:.1%} served elsewhere during the fault")
    if e["held"]:
        return f"[green]held[/] in {e['seconds']:.1f}s" + (f": {', '.join(figures)}" if figures else "")
    if e.get("aborted"):
        return f"[red]ABORTED[/] by the safeguard after {e['seconds']:.1f}s: {e['aborted']}"
    return f"[red]BROKE[/] in {e['seconds']:.1f}s: {why_broken(e)}"


def _service_outcome(v: dict[str, Any]) -> str:
    figures = (f"writes back after {recovery(v['worst_writes'])}, reads after {recovery(v['worst_reads'])} "
               f"(rto {v['rto']:g}s)")
    if v["outcome"] == Outcome.MISSED:
        return f"[red]MISSED[/]: {'; '.join(v['causes'])}"
    if v["outcome"] == Outcome.ACCEPTED:
        return f"[cyan]accepted[/]: {figures}; {'; '.join(v['accepted'])}"
    if v["outcome"] == Outcome.UNMEASURED:
        return "[yellow]unmeasured[/]: no citizen request of it reached it during any cell (raise --users)"
    if v["unmeasured"]:
        figures += f"; unmeasured in {len(v['unmeasured'])} cell(s) (raise --users)"
    return f"[green]met[/]: {figures}"


def run_drill(*, config: Path, state_dir: Path | None, keep: bool, console: Console, attach: bool = False,
              options: DrillOptions = DrillOptions()) -> DrillReport:
    """Run the drill end to end; a system it started is torn down unless ``keep``.

    With ``attach`` it drills the system already running from ``state_dir`` and leaves it running.
    """
    if attach and state_dir is None:
        raise BadInput("--attach needs the --state-dir of the running system")
    state_dir = state_dir or Path(".paydar/drills") / time.strftime("%Y%m%d-%H%M%S")
    report = DrillReport(state_dir=str(state_dir), mode="matrix" if options.matrix else "catalog",
                         meta={"started": datetime.now(UTC).isoformat(timespec="seconds"),
                               "settings": asdict(options) | {"config": str(config), "attach": attach},
                               **provenance()})
    started = time.monotonic()
    try:
        if attach:
            realization = load_realization(state_dir)
        else:
            with console.status("bringing the national system up"):
                realization = up(config, state_dir)
    except (UpFailed, PaydarError) as exc:
        report.error = f"{'attach' if attach else 'up'} failed: {exc}"
        report.error_kind = "usage" if isinstance(exc, BadInput | TopologyError) else "runtime"
        return report
    report.up_seconds = 0.0 if attach else time.monotonic() - started
    report.meta["topology_sha256"] = hashlib.sha256(realization.layout.topology.read_bytes()).hexdigest()
    report.meta["topology"] = realization.topology.name
    report.weakenings = [{"name": w.value, "risk": w.risk, "caught_by": w.caught_by}
                         for w in realization.topology.unsafe]
    try:
        with TableHistory(realization):
            _exercise(realization, report, options, console)
    finally:
        write_json_atomic(state_dir / "report.json", report.as_dict())
        (state_dir / "report.html").write_text(render_html(report.as_dict()))
        operator = realization.operator()
        bundle = write_bundle(state_dir / EVIDENCE, _evidence(state_dir, report), operator, report.meta)
        console.print(f"evidence: {bundle}, signed by operator key {operator.key_id} (public key "
                      f"{operator.public_key_b64}); check it with `paydar evidence verify {bundle} --state-dir "
                      f"{state_dir}`, or with --public-key from a copy of that key kept elsewhere",
                      markup=False, highlight=False)
        if not keep and not attach:
            with console.status("tearing down"):
                down(state_dir)
    return report


def _evidence(state_dir: Path, report: DrillReport) -> dict[str, Path]:
    """What the evidence bundle holds, of this drill only (an attached system keeps earlier drills'
    files beside them): the report, its journals, the routing-table history, the citizens'
    interactions and Locust's statistics."""
    chaos = state_dir / "chaos"
    found = [state_dir / "report.json", state_dir / "report.html", *(Path(e["journal"]) for e in report.experiments),
             chaos / TableHistory.FILE, *([Path(report.load_log)] if report.load_log else []),
             *sorted(chaos.glob("locust_*.csv"))]
    return {str(path.resolve().relative_to(state_dir.resolve())): path for path in found if path.is_file()}


def _planned(realization: Realization, options: DrillOptions) -> list[Experiment]:
    if options.matrix:
        planned = [(cell.name, cell_experiment(cell, options.dwell)) for cell in cells(realization, options.only)]
        if not planned:
            raise BadInput(f"no cell of the N-1 matrix matches {' or '.join(options.only)}; "
                              "patterns match 'component:fault', e.g. 'node.<service>.*' or '*:crash'")
        return planned
    return load_catalog(experiments(), realization.topology)


def _exercise(realization: Realization, report: DrillReport, options: DrillOptions, console: Console) -> None:
    try:
        planned = _planned(realization, options)
        load = CitizenLoad(realization, options.users)
        console.print(f"citizen load: {options.users} Locust users across "
                      f"{len(realization.topology.regions)} gateways")
        load.start()
    except (PaydarError, LoadFailed) as exc:
        report.error, report.error_kind = str(exc), "usage" if isinstance(exc, BadInput) else "runtime"
        return
    began = time.monotonic()
    try:
        with _progress(console) as progress:
            task = progress.add_task("experiments", total=len(planned))

            def started(index: int, name: str) -> None:
                progress.update(task, completed=index, description=name)
                if not load.alive():
                    raise LoadFailed(f"Locust stopped during the drill; see {load.output}")

            done = run_experiments(realization, planned, started, {
                "paydar_floor": options.floor, "paydar_floor_seconds": options.floor_seconds,
                "paydar_max_wait": options.max_wait})
            progress.update(task, completed=len(planned), description="experiments done")
    except LoadFailed as exc:
        report.error, report.error_kind = str(exc), "runtime"
        done = []
    finally:
        load.stop()
    report.experiments_seconds = round(time.monotonic() - began, 2)
    report.load = load.summary()
    report.load_log = str(load.log_path)
    samples = load.samples()
    report.experiments = [result.as_dict() for result in done]
    _timeline(report, samples)
    for experiment in report.experiments:
        experiment["availability_during_fault"] = served_during(samples, experiment)
        experiment["blast_radius"] = blast_radius(samples, experiment)
    lost = _sweep(realization, report, load.ledger(), console)
    sent = {s.doc_id: s.at for s in samples}
    report.services = [v.as_dict() for v in judge(
        realization.topology, report.experiments, samples,
        {service: [sent.get(doc_id) for doc_id in docs] for service, docs in lost.items()})]


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=False)


def _timeline(report: DrillReport, samples: list[Sample]) -> None:
    report.timeline_origin = min((s.at for s in samples), default=0.0)
    buckets: dict[str, dict[int, list[bool]]] = {}
    for sample in samples:
        buckets.setdefault(sample.region, {}).setdefault(int(sample.at - report.timeline_origin), []).append(
            sample.served)
    report.timeline = {region: [[second, sum(seen) / len(seen)] for second, seen in sorted(per.items())]
                       for region, per in sorted(buckets.items())}


def _in_window(experiment: dict[str, Any]) -> Callable[[Sample], bool]:
    start, end = experiment["window"]
    return lambda s: start <= s.at <= end


def served_during(samples: list[Sample], experiment: dict[str, Any]) -> float | None:
    """Share of citizen requests served through the unaffected regions within the fault window."""
    if not experiment.get("window"):
        return None
    inside = _in_window(experiment)
    seen = [s.served for s in samples if inside(s) and s.region != experiment.get("affected_region")]
    return round(sum(seen) / len(seen), 4) if seen else None


def blast_radius(samples: list[Sample], experiment: dict[str, Any]) -> dict[str, list[str]] | None:
    """The regions (any, the affected one included) and services with an unserved request in the window."""
    if not experiment.get("window"):
        return None
    inside = _in_window(experiment)
    missed = [s for s in samples if inside(s) and not s.served]
    return {"regions": sorted({s.region for s in missed}), "services": sorted({s.service for s in missed})}


def _sweep(realization: Realization, report: DrillReport, citizens: AckLedger,
           console: Console) -> dict[str, set[str]]:
    """Read every write acknowledged during the drill back through every gateway; per service,
    the ids of the acknowledged writes some gateway could not return."""
    ledger = load_ledger(realization, earlier=None)
    for (service, doc_id), (document, acknowledged) in citizens.writes.items():
        ledger.record(service, doc_id, document, acknowledged)
    report.writes_attempted = len(ledger.writes)
    report.writes_acknowledged = ledger.acknowledged_count
    regions = realization.topology.region_names

    async def through_every_gateway() -> list[dict[tuple[str, str], dict[str, Any] | None]]:
        return await asyncio.gather(*(read_back(realization, ledger, region) for region in regions))

    with console.status(f"reading {report.writes_acknowledged} acknowledged writes back through every gateway"):
        everywhere = asyncio.run(through_every_gateway())
    lost: dict[str, set[str]] = {}
    for region, reads in zip(regions, everywhere, strict=True):
        violations = check_acknowledged(ledger, reads)
        report.reads_checked += report.writes_acknowledged
        report.lost += sum(1 for v in violations if v.kind is ViolationKind.LOST)
        report.corrupted += sum(1 for v in violations if v.kind is ViolationKind.CORRUPTED)
        report.violations += [f"via {region}: {v}" for v in violations]
        for v in violations:
            if v.kind is ViolationKind.LOST:
                lost.setdefault(v.service, set()).add(v.doc_id)
    return lost
