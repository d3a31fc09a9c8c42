"""How attacks reach the system: link changes, a table offered to everyone, the routes in force,
and the lying probers and app instances this process holds. Shared by ``paydar.chaos.actions``
and ``paydar.chaos.compromise``."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from paydar.chaos.impostor import Impostor
from paydar.chaos.liar import ScriptedProber
from paydar.infra.local.linkadmin import LinkAdmin
from paydar.infra.local.realizer import Realization
from paydar.ops.failover import current_table

__all__ = ["IMPOSTORS", "LIARS", "change_links", "offer_everywhere", "routes_in_force"]

LIARS: dict[str, ScriptedProber] = {}
"""Lying probers this process runs (Chaos Toolkit runs every activity of an experiment in one process)."""
IMPOSTORS: dict[str, Impostor] = {}
"""Lying app instances this process runs, by state directory, like :data:`LIARS`."""


def change_links(system: Realization, pairs: list[tuple[str, str]], change: str, **details: Any) -> dict[str, Any]:
    """Apply ``change`` (cut, drop, tamper, heal, or delay with ``delay_ms``) to each directed link."""
    for source, target in pairs:
        link = system.plan.link(source, target)
        admin = LinkAdmin(link.admin_url, system.link_token(link.id))
        if change == "delay":
            admin.set(delay_ms=details["delay_ms"])
        else:
            getattr(admin, change)()  # cut, drop, tamper or heal
    return {"links": [list(pair) for pair in pairs], **details}


def routes_in_force(system: Realization) -> dict[str, Any]:
    """Every service's route in the newest verified table: what an attack must leave unchanged."""
    return {sid: route.model_dump(mode="json") for sid, route in current_table(system).table.services.items()}


async def offer_everywhere(system: Realization, body: bytes) -> dict[str, int]:
    """Offer a table to every node, gateway and controller (not to agency apps, which obey none);
    the HTTP status each answered."""
    targets = [c for c in system.plan.components if c.kind.value in ("node", "gateway", "controller") and not c.app]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        async def one(url: str) -> int:
            try:
                async with session.post(url + "/v1/routing-table", data=body,
                                        headers={"Content-Type": "application/json"}) as response:
                    return response.status
            except (aiohttp.ClientError, TimeoutError):
                return 0

        statuses = await asyncio.gather(*(one(c.url) for c in targets))
    return {c.id: status for c, status in zip(targets, statuses, strict=True)}
