"""The probe engine: what a node's or gateway's answer means, however hostile, and real probes
over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import web

from paydar.model.routing import RouteMode
from paydar.probes.engine import ProbeEngine, Target, gateway_observation, node_observation
from paydar.probes.models import TargetKind
from paydar.workload.contract import InstanceRole, InstanceState, StandbyProgress


def state(**changes: Any) -> bytes:
    base = InstanceState(component="node.1101.tehran", service="1101", region="tehran", role=InstanceRole.PRIMARY,
                         epoch=3, mode=RouteMode.READ_WRITE, primary="tehran", table_version=7, log_position=40,
                         chain_head="a" * 64, acked_position=38, ack_replicas=1,
                         standbys={"isfahan": StandbyProgress(matched=35, reachable=True)})
    return json.dumps(base.model_dump(mode="json") | changes).encode()


def test_a_healthy_primary_is_ready_with_its_positions_and_standby_lag() -> None:
    seen = node_observation("node.1101.tehran", 200, state(), 1.5)
    assert (seen.ready, seen.role, seen.epoch, seen.position, seen.acked, seen.table_version) == (
        True, "primary", 3, 40, 38, 7)
    assert seen.lag == {"isfahan": 5}


def test_a_node_reporting_itself_compromised_is_not_ready_and_says_why() -> None:
    seen = node_observation("node.1101.tehran", 200, state(compromised="chain broken at 12"), 1.0)
    assert (seen.ready, seen.compromised, seen.error) == (False, True, "compromised: chain broken at 12")


@pytest.mark.parametrize("raw", [
    b"not json", b"[]", b"{}", json.dumps({"epoch": 1}).encode(),
    state(epoch=2**80), state(log_position=-5), state(role="emperor"), state(chain_head="x" * 10_000),
    state(standbys={f"r{i}": {"matched": 1, "reachable": True} for i in range(65)}),
    state(unexpected="field"), b'{"epoch": NaN}', b"[" * 100_000,
])
def test_any_hostile_node_answer_means_not_ready_and_never_raises(raw: bytes) -> None:
    seen = node_observation("node.1101.tehran", 200, raw, 1.0)
    assert not seen.ready
    assert seen.error == "status 200 with an unusable state document"


def test_a_gateway_is_ready_on_200_and_its_claimed_table_version_is_bounded() -> None:
    assert gateway_observation("gateway.tehran", 200, b'{"table_version": 9}', 1.0).table_version == 9
    assert gateway_observation("gateway.tehran", 503, b"{}", 1.0).ready is False
    assert gateway_observation("gateway.tehran", 200, b'{"table_version": 1e400}', 1.0).table_version is None
    assert gateway_observation("gateway.tehran", 200, b"garbage", 1.0).table_version is None


def test_real_probes_over_http_observe_ready_hanging_and_absent_targets() -> None:
    async def scenario() -> list[tuple[bool, str | None]]:
        async def node_state(_: web.Request) -> web.Response:
            return web.Response(body=state(), content_type="application/json")

        async def hang(_: web.Request) -> web.Response:
            await asyncio.sleep(1)  # longer than the probe timeout
            return web.Response()

        app = web.Application()
        app.router.add_get("/state", node_state)
        app.router.add_get("/readyz", hang)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        engine = ProbeEngine(timeout=0.3, max_concurrency=4)
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        try:
            seen = await engine.probe_all([Target("node.1101.tehran", TargetKind.NODE, base),
                                           Target("gateway.tehran", TargetKind.GATEWAY, base),
                                           Target("node.1101.isfahan", TargetKind.NODE, "http://127.0.0.1:1")])
        finally:
            await engine.close()
            await runner.cleanup()
        return [(o.ready, o.error) for o in seen]

    assert asyncio.run(scenario()) == [(True, None), (False, "timeout"), (False, "connection refused")]
