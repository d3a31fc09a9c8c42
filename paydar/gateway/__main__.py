"""Run one regional gateway: ``python -m gateway --config PATH``."""

from __future__ import annotations

from aiohttp import web

from paydar.gateway.app import build_app
from paydar.gateway.config import GatewayConfig
from paydar.gateway.metrics import GatewayMetrics
from paydar.gateway.router import Router
from paydar.server.component import load_foundation
from paydar.server.web import run_component


def build(config: GatewayConfig) -> tuple[Router, web.Application]:
    router = Router(config=config, foundation=load_foundation(config), metrics=GatewayMetrics.create(config.region))
    return router, build_app(router)


def main() -> None:
    run_component("Paydar regional gateway (the single window)", GatewayConfig, build)


if __name__ == "__main__":
    main()
