"""Run one failover controller: ``python -m failover --config PATH``."""

from __future__ import annotations

import argparse
import asyncio
import logging

from failover.app import build_app
from failover.config import ControllerConfig
from failover.controller import Controller
from failover.metrics import ControllerMetrics
from infra.component import load_foundation
from infra.web import run_until_signalled, serve, setup_logging

log = logging.getLogger("failover")


async def _main(config: ControllerConfig) -> None:
    controller = Controller(config=config, foundation=load_foundation(config), metrics=ControllerMetrics.create())
    runner = None

    async def start() -> None:
        nonlocal runner
        await controller.start()
        runner = await serve(build_app(controller), config.host, config.port)
        log.info("controller serving port=%d table_version=%d", config.port, controller.table.version)

    async def stop() -> None:
        if runner:
            await runner.cleanup()
        await controller.stop()

    await run_until_signalled(start, stop)


def main() -> None:
    parser = argparse.ArgumentParser(description="Paydar failover controller: quorum decisions, signed tables")
    parser.add_argument("--config", required=True, help="component config JSON written by `paydar up`")
    args = parser.parse_args()
    config = ControllerConfig.load(args.config)
    setup_logging(config.component, config.log_level)
    asyncio.run(_main(config))


if __name__ == "__main__":
    main()
