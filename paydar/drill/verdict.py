"""Each service judged against its own declared targets: RTO for writes and reads, RPO for loss.

Pure: from the citizens' samples (every Locust interaction: when, through which gateway, of
which service, whether its write was acknowledged and whether it served a read) and each
experiment's fault window, it measures per cell and per service how long writes and reads took
to work again, and compares the worst with the service's ``rto``. Acknowledged writes the final
sweep could not read back are compared with its ``rpo``. A missed target fails the drill with
its cause in words; a limit the service states openly (``accepts:``) passes, with that
statement in the report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from paydar.chaos.faults import replicas_taken
from paydar.chaos.load import Sample
from paydar.model.resilience import cause
from paydar.model.topology import Limit, NationalTopology, Service

__all__ = ["Outcome", "Recovery", "ServiceVerdict", "judge", "outage"]


class Outcome(StrEnum):
    """A service's verdict over the whole drill."""

    MET = "met"
    ACCEPTED = "accepted"
    """Met, except where a limit the topology states openly applied (the statement is reported)."""
    MISSED = "missed"
    UNMEASURED = "unmeasured"
    """No citizen request of the service reached it during any cell: nothing to judge it by."""


@dataclass(frozen=True)
class Recovery:
    """One service in one cell: seconds from the attack until its writes were acknowledged again
    and its reads served again (0: never interrupted; None: not before the cell ended)."""

    cell: str
    writes: float | None
    reads: float | None
    accepted: bool = False
    """The cell took a replica the service's writes need, and the service accepts read-only then."""
    measured: bool = True
    """False when no citizen request of the service reached it during the cell."""


@dataclass
class ServiceVerdict:
    """One service over the whole drill."""

    service: str
    name: str
    tier: int
    tier_name: str
    ecosystem: str
    agency: str
    rto: float
    rpo: float
    worst_writes: float | None = 0.0
    worst_writes_cell: str = ""
    worst_reads: float | None = 0.0
    worst_reads_cell: str = ""
    lost: int = 0
    accepted: list[str] = field(default_factory=list)
    """The statements of accepted limits, one per cell where one applied."""
    causes: list[str] = field(default_factory=list)
    """Why each missed target was missed, in words."""
    unmeasured: list[str] = field(default_factory=list)
    """Cells in which no citizen request of the service reached it (raise ``--users``)."""
    cells: int = 0
    """Cells with a fault window."""

    @property
    def outcome(self) -> Outcome:
        if self.causes:
            return Outcome.MISSED
        if self.cells and len(self.unmeasured) == self.cells:
            return Outcome.UNMEASURED
        return Outcome.ACCEPTED if self.accepted else Outcome.MET

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"outcome": self.outcome.value}


def outage(points: Sequence[tuple[float, bool]], start: float, until: float = float("inf")) -> float | None:
    """Seconds from ``start`` until the first success after the last failure sent before ``until``
    (the next cell's attack); the success may come later: citizens stuck on a hung component
    send few requests, and the first that works may be sent after the next attack began.
    0.0 with no failure, None when nothing succeeded after it."""
    failures = [at for at, ok in points if not ok and at < until]
    if not failures:
        return 0.0
    last = max(failures)
    recovered = min((at for at, ok in points if ok and at > last), default=None)
    return None if recovered is None else round(max(recovered - start, 0.0), 2)


def _worse(a: float | None, b: float | None) -> bool:
    """Whether recovery ``a`` is worse than ``b`` (None, never recovered, is the worst)."""
    return b is not None and (a is None or a > b)


def _taken(topology: NationalTopology, experiment: Mapping[str, Any]) -> dict[str, str]:
    return replicas_taken(topology, experiment.get("fault"))


def _recoveries(topology: NationalTopology, windowed: Sequence[Mapping[str, Any]],
                samples: Sequence[Sample]) -> dict[str, list[Recovery]]:
    """Per service, its recovery in every experiment with a fault window that a citizen request
    of it reached (through a region the fault left its own window). A database's citizens are
    its apps': their requests are how it is measured."""
    found: dict[str, list[Recovery]] = {s.id: [] for s in topology.services}
    reached = _reached_through(topology)
    for n, experiment in enumerate(windowed):
        start = float(experiment["window"][0])
        until = float(windowed[n + 1]["window"][0]) if n + 1 < len(windowed) else float("inf")
        lost = _taken(topology, experiment)
        after = [p for p in samples if start <= p.at and p.region != experiment.get("affected_region")]
        for service in topology.services:
            mine = sorted((p for p in after if p.service in reached[service.id]), key=lambda p: p.at)
            if not any(p.at < until for p in mine):
                found[service.id].append(Recovery(str(experiment["name"]), None, None, measured=False))
                continue
            writes = outage([(p.at, p.acknowledged) for p in mine], start, until)
            reads = outage([(p.at, bool(p.read)) for p in mine if p.read is not None], start, until)
            accepted = service.id in lost and Limit.READ_ONLY_AFTER_REGION_LOSS in service.accepts \
                and not service.writes_survive_region_loss
            found[service.id].append(Recovery(str(experiment["name"]), writes, reads, accepted))
    return found


def _reached_through(topology: NationalTopology) -> dict[str, set[str]]:
    """Per service, the services whose citizen requests reach it: itself, and for a database its apps."""
    return {s.id: {s.id} | {a for a, http in topology.http_services.items() if http.database == s.id}
            for s in topology.services}


def _judge_one(topology: NationalTopology, service: Service, recoveries: list[Recovery],
               experiments: Mapping[str, Mapping[str, Any]], lost: Sequence[float | None],
               starts: Sequence[float]) -> ServiceVerdict:
    tiers = topology.vocabulary.tiers or {}
    verdict = ServiceVerdict(service.id, service.name, service.tier, tiers.get(service.tier, ""), service.ecosystem,
                             service.agency, service.rto, service.rpo, lost=len(lost), cells=len(recoveries))
    for r in recoveries:
        if not r.measured:
            verdict.unmeasured.append(r.cell)
            continue
        if r.accepted and r.writes != 0.0:
            # Read-only as declared: stated whenever it happened, however short the drill held the fault.
            region = _taken(topology, experiments[r.cell])[service.id]
            verdict.accepted.append(f"{r.cell}: read-only as accepted ({cause(service, region)})")
        elif _worse(r.writes, verdict.worst_writes):
            verdict.worst_writes, verdict.worst_writes_cell = r.writes, r.cell
        if _worse(r.reads, verdict.worst_reads):
            verdict.worst_reads, verdict.worst_reads_cell = r.reads, r.cell
    for what, worst, cell in (("writes", verdict.worst_writes, verdict.worst_writes_cell),
                              ("reads", verdict.worst_reads, verdict.worst_reads_cell)):
        if cell and (worst is None or worst > service.rto):
            verdict.causes.append(_missed(topology, service, what, worst, experiments[cell]))
    if lost and not _within_rpo(service, lost, starts):
        verdict.causes.append(f"{service.id} lost {len(lost)} acknowledged write(s), beyond its rpo of "
                              f"{service.rpo:g}s")
    return verdict


def _missed(topology: NationalTopology, service: Service, what: str, worst: float | None,
            experiment: Mapping[str, Any]) -> str:
    """The cause of a missed RTO, in words: the arithmetic when the fault took a replica writes need."""
    region = _taken(topology, experiment).get(service.id)
    why = cause(service, region) if region and what == "writes" else ""
    took = "did not recover before the cell ended" if worst is None else f"took {worst:.1f}s"
    return (why + f" ({experiment['name']}: {what} {took}, rto {service.rto:g}s)" if why else
            f"{service.id} {what} {took} to recover after {experiment['name']}, beyond its rto of {service.rto:g}s")


def _within_rpo(service: Service, lost: Sequence[float | None], starts: Sequence[float]) -> bool:
    """Whether every lost write was sent at most ``rpo`` seconds before the fault that followed it
    (a write of unknown time, or any loss with rpo 0, is beyond it)."""
    known = [at for at in lost if at is not None]
    if service.rpo == 0 or len(known) < len(lost):
        return False
    return all(min((start for start in starts if start >= at), default=at) - at <= service.rpo for at in known)


def judge(topology: NationalTopology, experiments: Sequence[Mapping[str, Any]], samples: Sequence[Sample],
          lost: Mapping[str, Sequence[float | None]]) -> list[ServiceVerdict]:
    """Every service's verdict, tiers first (tier 1 at the top), then in catalog order.

    ``lost`` maps a service to when each of its acknowledged writes that the final sweep could
    not read back was sent (None where unknown: a probe's write rather than a citizen's).
    """
    windowed = sorted((e for e in experiments if e.get("window")), key=lambda e: e["window"][0])
    recoveries = _recoveries(topology, windowed, samples)
    by_name = {str(e["name"]): e for e in experiments}
    starts = [float(e["window"][0]) for e in windowed]
    order = {s.id: n for n, s in enumerate(topology.services)}
    reached = _reached_through(topology)
    verdicts = [_judge_one(topology, s, recoveries[s.id], by_name,
                           [at for sid in sorted(reached[s.id]) for at in lost.get(sid, ())], starts)
                for s in topology.services]
    return sorted(verdicts, key=lambda v: (v.tier, order[v.service]))
