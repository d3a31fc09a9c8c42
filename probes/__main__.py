"""Run one prober: ``python -m probes --config PATH``."""

from __future__ import annotations

import argparse
import asyncio
import logging

from infra.identity import TrustRoot, load_private_key
from infra.signing import Signer
from infra.topology import load_topology
from infra.web import run_until_signalled, serve, setup_logging
from probes.app import build_app
from probes.config import ProberConfig
from probes.metrics import ProberMetrics
from probes.prober import Prober

log = logging.getLogger("probes")


async def _main(config: ProberConfig) -> None:
    TrustRoot.load(config.trust_root).key_of(config.component)  # fail fast without an identity
    prober = Prober(config=config, topology=load_topology(config.topology),
                    signer=Signer(load_private_key(config.key)), metrics=ProberMetrics.create())
    runner = None

    async def start() -> None:
        nonlocal runner
        await prober.start()
        runner = await serve(build_app(prober), config.host, config.port)
        log.info("prober serving port=%d targets=%d", config.port, len(prober.targets))

    async def stop() -> None:
        if runner:
            await runner.cleanup()
        await prober.stop()

    await run_until_signalled(start, stop)


def main() -> None:
    parser = argparse.ArgumentParser(description="Paydar prober: one vantage point, signed observations")
    parser.add_argument("--config", required=True, help="component config JSON written by `paydar up`")
    args = parser.parse_args()
    config = ProberConfig.load(args.config)
    setup_logging(config.component, config.log_level)
    asyncio.run(_main(config))


if __name__ == "__main__":
    main()
