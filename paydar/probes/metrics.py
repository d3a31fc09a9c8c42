"""Prometheus metrics of a prober (conventional names, seconds as the unit of time)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["ProberMetrics"]

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass
class ProberMetrics:
    registry: CollectorRegistry
    success: Gauge
    duration: Histogram
    rounds: Counter
    round_seconds: Gauge
    canary_success: Gauge
    canary_duration: Histogram
    replication_lag: Gauge
    integrity_ok: Gauge

    @classmethod
    def create(cls) -> ProberMetrics:
        r = CollectorRegistry()
        return cls(
            registry=r,
            success=Gauge("paydar_probe_success", "1 when the target answered ready in the last round",
                          ["vantage", "kind", "target"], registry=r),
            duration=Histogram("paydar_probe_duration_seconds", "Time to answer one probe",
                               ["vantage", "kind"], buckets=_BUCKETS, registry=r),
            rounds=Counter("paydar_probe_rounds_total", "Probe rounds completed", ["vantage"], registry=r),
            round_seconds=Gauge("paydar_probe_round_duration_seconds", "Duration of the last round",
                                ["vantage"], registry=r),
            canary_success=Gauge("paydar_canary_success", "1 when the last canary write+read succeeded",
                                 ["vantage", "gateway"], registry=r),
            canary_duration=Histogram("paydar_canary_duration_seconds", "Canary write then read through a gateway",
                                      ["vantage"], buckets=_BUCKETS, registry=r),
            replication_lag=Gauge("paydar_replication_lag_entries", "Primary head minus a standby's matched position",
                                  ["vantage", "service", "region", "peer"], registry=r),
            integrity_ok=Gauge("paydar_integrity_ok", "1 when every replica's chain hash agrees at equal positions",
                               ["vantage", "service"], registry=r),
        )
