"""Each component's metrics live in a registry of their own: two components in one process never
collide, and what a component counts is what its exposition says."""

from __future__ import annotations

from prometheus_client import generate_latest

from paydar.failover.metrics import ControllerMetrics
from paydar.gateway.metrics import GatewayMetrics
from paydar.node.metrics import NodeMetrics
from paydar.probes.metrics import ProberMetrics
from paydar.workload.contract import InstanceRole


def exposition(metrics: NodeMetrics | GatewayMetrics | ControllerMetrics | ProberMetrics) -> str:
    return generate_latest(metrics.registry).decode()


def test_two_nodes_in_one_process_count_apart() -> None:
    tehran, isfahan = NodeMetrics.create("1101", "tehran"), NodeMetrics.create("1101", "isfahan")
    assert tehran.registry is not isfahan.registry
    tehran.writes.labels(service="1101", region="tehran", outcome="acknowledged").inc(3)
    tehran.role.state(InstanceRole.PRIMARY.value)
    text = exposition(tehran)
    assert 'paydar_node_writes_total{outcome="acknowledged",region="tehran",service="1101"} 3.0' in text
    assert 'paydar_node_role{paydar_node_role="primary",region="tehran",service="1101"} 1.0' in text
    assert 'outcome="acknowledged"' not in exposition(isfahan)


def test_gateway_controller_and_prober_metrics_are_fresh_per_instance() -> None:
    first, second = GatewayMetrics.create("tehran"), GatewayMetrics.create("tehran")
    first.forged.labels(region="tehran", target_region="isfahan").inc()
    assert 'paydar_gateway_unproven_answers_total{region="tehran",target_region="isfahan"} 1.0' in exposition(first)
    assert "target_region=" not in exposition(second)

    controller = ControllerMetrics.create()
    controller.proposals.labels(outcome="no-quorum").inc(2)
    assert 'paydar_controller_proposals_total{outcome="no-quorum"} 2.0' in exposition(controller)
    assert "no-quorum" not in exposition(ControllerMetrics.create())

    prober = ProberMetrics.create()
    prober.rounds.labels(vantage="tehran").inc()
    assert 'paydar_probe_rounds_total{vantage="tehran"} 1.0' in exposition(prober)
    assert 'vantage="tehran"' not in exposition(ProberMetrics.create())
