"""Run one failover controller: ``python -m failover --config PATH``."""

from __future__ import annotations

from aiohttp import web

from paydar.failover.app import build_app
from paydar.failover.config import ControllerConfig
from paydar.failover.controller import Controller
from paydar.failover.metrics import ControllerMetrics
from paydar.server.component import load_foundation
from paydar.server.web import run_component


def build(config: ControllerConfig) -> tuple[Controller, web.Application]:
    controller = Controller(config=config, foundation=load_foundation(config), metrics=ControllerMetrics.create())
    return controller, build_app(controller)


def main() -> None:
    run_component("Paydar failover controller: quorum decisions, signed tables", ControllerConfig, build)


if __name__ == "__main__":
    main()
