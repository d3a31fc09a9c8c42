"""Prometheus metrics of a failover controller."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["ControllerMetrics"]


@dataclass
class ControllerMetrics:
    registry: CollectorRegistry
    table_version: Gauge
    targets_down: Gauge
    quorum: Gauge
    proposals: Counter
    observations_refused: Counter
    judgement_rounds: Counter
    shed: Counter
    equivocations: Counter

    @classmethod
    def create(cls) -> ControllerMetrics:
        r = CollectorRegistry()
        return cls(
            registry=r,
            table_version=Gauge("paydar_controller_table_version", "Version of the certified table held",
                                registry=r),
            targets_down=Gauge("paydar_controller_targets_down", "Nodes judged down by a majority of probers",
                               registry=r),
            quorum=Gauge("paydar_controller_quorum", "1 while enough controllers answer to certify a table",
                         registry=r),
            proposals=Counter("paydar_controller_proposals_total", "Table proposals made by this controller",
                              ["outcome"], registry=r),
            observations_refused=Counter("paydar_controller_observations_refused_total",
                                         "Prober rounds refused (bad signature, wrong prober, stale)",
                                         ["prober", "reason"], registry=r),
            judgement_rounds=Counter("paydar_controller_judgement_rounds_total", "Judgement rounds folded in",
                                     registry=r),
            shed=Counter("paydar_controller_shed_requests_total", "Requests shed with 503 (overload)", registry=r),
            equivocations=Counter("paydar_controller_equivocations_total",
                                  "Certified tables that contradict the held one (evidence kept)", registry=r),
        )
