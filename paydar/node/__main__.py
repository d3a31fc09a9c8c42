"""Run one regional node: ``python -m node --config PATH``."""

from __future__ import annotations

from aiohttp import web

from paydar.node.app import build_app
from paydar.node.config import NodeConfig
from paydar.node.metrics import NodeMetrics
from paydar.node.runtime import NodeRuntime
from paydar.server.component import load_foundation
from paydar.server.web import run_component


def build(config: NodeConfig) -> tuple[NodeRuntime, web.Application]:
    runtime = NodeRuntime(config=config, foundation=load_foundation(config),
                          metrics=NodeMetrics.create(config.service, config.region))
    return runtime, build_app(runtime)


def main() -> None:
    run_component("Paydar regional node (citizen document registry)", NodeConfig, build)


if __name__ == "__main__":
    main()
