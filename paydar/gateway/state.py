"""A gateway's ``GET /state``: the table it obeys. Produced by the gateway, read by
``paydar status``, the benchmarks and the tests; to every reader it is the gateway's word."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from paydar.model.routing import ServiceRoute
from paydar.model.wire import Counter, WireModel

__all__ = ["GatewayState"]


class GatewayState(WireModel):
    """The routing table a gateway holds and who signed it."""

    component: str = Field(max_length=200)
    region: str = Field(max_length=64)
    role: Literal["gateway"] = "gateway"
    table_version: Counter
    table_expires_at: float
    signers: list[str] = Field(max_length=64)
    services: dict[str, ServiceRoute]
