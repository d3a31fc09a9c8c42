"""Run one regional gateway: ``python -m gateway --config PATH``."""

from __future__ import annotations

import argparse
import asyncio
import logging

from gateway.app import build_app
from gateway.config import GatewayConfig
from gateway.metrics import GatewayMetrics
from gateway.router import Router
from infra.component import load_foundation
from infra.web import run_until_signalled, serve, setup_logging

log = logging.getLogger("gateway")


async def _main(config: GatewayConfig) -> None:
    router = Router(config=config, foundation=load_foundation(config), metrics=GatewayMetrics.create(config.region))
    runner = None

    async def start() -> None:
        nonlocal runner
        await router.start()
        runner = await serve(build_app(router), config.host, config.port)
        log.info("gateway serving port=%d table_version=%d", config.port, router.table.table.version)

    async def stop() -> None:
        if runner:
            await runner.cleanup()
        await router.stop()

    await run_until_signalled(start, stop)


def main() -> None:
    parser = argparse.ArgumentParser(description="Paydar regional gateway (the single window)")
    parser.add_argument("--config", required=True, help="component config JSON written by `paydar up`")
    args = parser.parse_args()
    config = GatewayConfig.model_validate_json(open(args.config, "rb").read())
    setup_logging(config.component, config.log_level)
    asyncio.run(_main(config))


if __name__ == "__main__":
    main()
