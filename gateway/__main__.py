"""Run one regional gateway: ``python -m gateway --config PATH``."""

from __future__ import annotations

from aiohttp import web

from gateway.app import build_app
from gateway.config import GatewayConfig
from gateway.metrics import GatewayMetrics
from gateway.router import Router
from infra.component import load_foundation
from infra.web import run_component


def build(config: GatewayConfig) -> tuple[Router, web.Application]:
    router = Router(config=config, foundation=load_foundation(config), metrics=GatewayMetrics.create(config.region))
    return router, build_app(router)


def main() -> None:
    run_component("Paydar regional gateway (the single window)", GatewayConfig, build)


if __name__ == "__main__":
    main()
