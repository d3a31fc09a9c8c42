"""Prometheus metrics of the gateway, declared in one place on one registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["GatewayMetrics"]


@dataclass
class GatewayMetrics:
    """Labels are bounded: service, method, outcome, target region, reason."""

    registry: CollectorRegistry
    requests: Counter
    upstream_seconds: Histogram
    table_version: Gauge
    tables_refused: Counter
    shed: Counter
    forged: Counter
    app_inflight: Gauge

    @classmethod
    def create(cls, region: str, registry: CollectorRegistry | None = None) -> GatewayMetrics:
        reg = registry or CollectorRegistry()
        return cls(
            registry=reg,
            requests=Counter("paydar_gateway_requests", "Citizen requests by outcome",
                             ["region", "service", "method", "outcome"], registry=reg),
            upstream_seconds=Histogram("paydar_gateway_upstream_duration_seconds", "Time of one upstream call",
                                       ["region", "target_region"], registry=reg),
            table_version=Gauge("paydar_gateway_table_version", "Version of the routing table obeyed",
                                ["region"], registry=reg).labels(region=region),
            tables_refused=Counter("paydar_gateway_tables_refused", "Routing tables refused by reason",
                                   ["region", "reason"], registry=reg),
            shed=Counter("paydar_gateway_requests_shed", "Requests shed with 503", ["region"],
                         registry=reg).labels(region=region),
            forged=Counter("paydar_gateway_unproven_answers", "Upstream answers dropped: their receipt did not verify",
                           ["region", "target_region"], registry=reg),
            app_inflight=Gauge("paydar_gateway_app_inflight", "Requests in flight to an http service's instances",
                               ["region", "service"], registry=reg),
        )
