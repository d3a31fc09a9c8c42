"""Run one PostgreSQL agent: ``python -m paydar.postgres --config PATH``."""

from __future__ import annotations

from aiohttp import web

from paydar.postgres.agent import PgAgent
from paydar.postgres.app import build_app
from paydar.postgres.config import AgentConfig
from paydar.server.component import load_foundation
from paydar.server.web import run_component


def build(config: AgentConfig) -> tuple[PgAgent, web.Application]:
    agent = PgAgent(foundation=load_foundation(config), config=config,
                    log_path=config.data_dir / "postgres.log")
    return agent, build_app(agent)


def main() -> None:
    run_component("Paydar PostgreSQL agent (one server of a workload: postgres service)", AgentConfig, build)


if __name__ == "__main__":
    main()
