"""Run one regional node: ``python -m node --config PATH``."""

from __future__ import annotations

import argparse
import asyncio
import logging

from infra.component import load_foundation
from infra.web import run_until_signalled, serve, setup_logging
from node.app import build_app
from node.config import NodeConfig
from node.metrics import NodeMetrics
from node.runtime import NodeRuntime

log = logging.getLogger("node")


async def _main(config: NodeConfig) -> None:
    foundation = load_foundation(config)
    runtime = NodeRuntime(config=config, foundation=foundation,
                          metrics=NodeMetrics.create(config.service, config.region))
    runner = None

    async def start() -> None:
        nonlocal runner
        await runtime.start()
        runner = await serve(build_app(runtime), config.host, config.port)
        log.info("node serving port=%d role=%s epoch=%d", config.port, runtime.role, runtime.epoch)

    async def stop() -> None:
        if runner:
            await runner.cleanup()
        await runtime.stop()
        log.info("node stopped")

    await run_until_signalled(start, stop)


def main() -> None:
    parser = argparse.ArgumentParser(description="Paydar regional node (citizen document registry)")
    parser.add_argument("--config", required=True, help="component config JSON written by `paydar up`")
    args = parser.parse_args()
    config = NodeConfig.model_validate_json(open(args.config, "rb").read())
    setup_logging(config.component, config.log_level)
    asyncio.run(_main(config))


if __name__ == "__main__":
    main()
