"""Prometheus metrics of the regional node, declared in one place on one registry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

from paydar.workload.contract import InstanceRole

_Metric = TypeVar("_Metric", bound=MetricWrapperBase)

__all__ = ["NodeMetrics"]


@dataclass
class NodeMetrics:
    """Every metric a node exports; labels are bounded (service, region, outcome, peer)."""

    registry: CollectorRegistry
    role: Enum
    epoch: Gauge
    log_position: Gauge
    acked_position: Gauge
    writes: Counter
    write_seconds: Histogram
    replication_lag: Gauge
    shed: Counter
    integrity_ok: Gauge
    tables_refused: Counter
    backup_last_success: Gauge
    backup_age: Gauge
    backup_size: Gauge
    backup_position: Gauge
    backups: Counter
    backup_seconds: Histogram

    @classmethod
    def create(cls, service: str, region: str, registry: CollectorRegistry | None = None) -> NodeMetrics:
        reg = registry or CollectorRegistry()
        labels = {"service": service, "region": region}
        names = list(labels)

        def bind(metric: _Metric) -> _Metric:
            return metric.labels(**labels)

        return cls(
            registry=reg,
            role=bind(Enum("paydar_node_role", "Role of this node", names, registry=reg,
                           states=[r.value for r in InstanceRole])),
            epoch=bind(Gauge("paydar_node_epoch", "Epoch this node obeys", names, registry=reg)),
            log_position=bind(Gauge("paydar_node_log_position", "Last log position", names, registry=reg)),
            acked_position=bind(Gauge("paydar_node_acked_position", "Highest acknowledged position known",
                                      names, registry=reg)),
            writes=Counter("paydar_node_writes", "Writes by outcome", [*names, "outcome"], registry=reg),
            write_seconds=bind(Histogram("paydar_node_write_duration_seconds",
                                         "Time to acknowledge a write", names, registry=reg)),
            replication_lag=Gauge("paydar_node_replication_lag_entries", "Entries a standby is behind",
                                  [*names, "peer"], registry=reg),
            shed=bind(Counter("paydar_node_requests_shed", "Requests shed with 503", names, registry=reg)),
            integrity_ok=bind(Gauge("paydar_node_integrity_ok", "1 when stored data verifies", names,
                                    registry=reg)),
            tables_refused=Counter("paydar_node_tables_refused", "Routing tables refused by reason",
                                   [*names, "reason"], registry=reg),
            backup_last_success=bind(Gauge("paydar_backup_last_success_timestamp_seconds",
                                           "Unix time of the last backup the vault confirmed", names, registry=reg)),
            backup_age=bind(Gauge("paydar_backup_age_seconds",
                                  "Seconds since the last confirmed backup (-1: none yet)", names, registry=reg)),
            backup_size=bind(Gauge("paydar_backup_size_bytes", "Size of the last confirmed backup", names,
                                   registry=reg)),
            backup_position=bind(Gauge("paydar_backup_log_position", "Log position of the last confirmed backup",
                                       names, registry=reg)),
            backups=Counter("paydar_backups", "Backups by outcome", [*names, "outcome"], registry=reg),
            backup_seconds=bind(Histogram("paydar_backup_duration_seconds", "Snapshot, verify and upload time",
                                          names, registry=reg, buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 300))),
        )
