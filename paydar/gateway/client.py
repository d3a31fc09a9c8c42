"""A small async client of the gateways: what the drill, benchmarks and tests use as citizens."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp

__all__ = ["GatewayClient", "Reply"]


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]
    served_by: str | None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class GatewayClient:
    """Citizen requests against one gateway URL; errors become ``Reply(status=0)``."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url.rstrip("/")

    async def put(self, service: str, doc_id: str, document: dict[str, Any]) -> Reply:
        return await self._call("PUT", f"/v1/services/{service}/documents/{doc_id}", json.dumps(document))

    async def get(self, service: str, doc_id: str) -> Reply:
        return await self._call("GET", f"/v1/services/{service}/documents/{doc_id}", None)

    async def _call(self, method: str, path: str, body: str | None) -> Reply:
        try:
            async with self.session.request(method, self.url + path, data=body,
                                            headers={"Content-Type": "application/json"}) as response:
                raw = await response.read()
                try:
                    payload = json.loads(raw) if raw else {}
                except ValueError:
                    payload = {"error": raw[:200].decode(errors="replace")}
                return Reply(response.status, payload, response.headers.get("X-Paydar-Served-By"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Reply(0, {"error": f"{type(exc).__name__}: {exc}"}, None)
