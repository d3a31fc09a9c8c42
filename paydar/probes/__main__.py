"""Run one prober: ``python -m probes --config PATH``."""

from __future__ import annotations

from aiohttp import web

from paydar.model.identity import TrustRoot, load_private_key
from paydar.model.signing import Signer
from paydar.model.topology import load_topology
from paydar.probes.app import build_app
from paydar.probes.config import ProberConfig
from paydar.probes.metrics import ProberMetrics
from paydar.probes.prober import Prober
from paydar.server.web import run_component


def build(config: ProberConfig) -> tuple[Prober, web.Application]:
    TrustRoot.load(config.trust_root).key_of(config.component)  # fail fast without an identity
    prober = Prober(config=config, topology=load_topology(config.topology),
                    signer=Signer(load_private_key(config.key)), metrics=ProberMetrics.create())
    return prober, build_app(prober)


def main() -> None:
    run_component("Paydar prober: one vantage point, signed observations", ProberConfig, build)


if __name__ == "__main__":
    main()
