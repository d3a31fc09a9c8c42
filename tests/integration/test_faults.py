"""Tests that break a private system: failover, fencing, corruption, overload, up/down."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from pathlib import Path

import aiohttp
import pytest

from paydar.bench.up import process_tree
from paydar.chaos.invariants import AckLedger, check_acknowledged
from paydar.chaos.workload import read_back, write_burst
from paydar.infra.local.layout import StateLayout
from paydar.infra.local.realizer import UpFailed, down, up
from paydar.infra.local.supervisor import Supervisor
from paydar.ops.failover import FailoverRefused, promote
from tests.helpers import document, http, link_admin, node_state, wait_until, write_topology
from tests.integration.conftest import SystemFactory

pytestmark = pytest.mark.integration


def test_manual_failover_keeps_every_acknowledged_write_and_fences(start_system: SystemFactory) -> None:
    system = start_system()
    ledger = AckLedger()
    asyncio.run(write_burst(system, ledger, 15, "before"))
    assert ledger.acknowledged_count == 45
    # mashhad falls behind: its link from the primary is cut, isfahan keeps confirming writes.
    link_admin(system, "tehran", "mashhad").cut()
    asyncio.run(write_burst(system, ledger, 5, "while-cut"))
    wait_until(lambda: node_state(system, "mashhad")["log_position"] < node_state(system, "tehran")["acked_position"],
               10, "mashhad to lag behind acknowledged writes")
    version = http("GET", system.plan.gateway("tehran").url + "/state")[1]["table_version"]
    with pytest.raises(FailoverRefused, match="candidate lacks acknowledged writes: it holds position"):
        promote(system, "1101", "mashhad")
    assert http("GET", system.plan.gateway("tehran").url + "/state")[1]["table_version"] == version, \
        "a refused promotion changes nothing"
    link_admin(system, "tehran", "mashhad").heal()

    result = promote(system, "1101", "isfahan")
    assert (result.old_primary, result.new_primary, result.epoch) == ("tehran", "isfahan", 3)
    assert node_state(system, "isfahan")["role"] == "primary"
    assert node_state(system, "tehran")["role"] == "standby"
    asyncio.run(write_burst(system, ledger, 10, "after"))
    for region in system.topology.region_names:
        assert check_acknowledged(ledger, asyncio.run(read_back(system, ledger, region))) == []
    wait_until(lambda: len({node_state(system, r)["chain_head"] for r in system.topology.region_names}) == 1,
               10, "every replica to reach the same chain head")

    # The deposed primary's key signing old-epoch replication is refused: fencing.
    from paydar.node.models import ReplicationBatch, SignedBatch

    batch = ReplicationBatch(service="1101", sender="node.1101.tehran", epoch=1, table_version=1, acked_position=0,
                             head_position=0, prev_position=0, prev_hash="0" * 64)
    signer = system.keystore().signer("node.1101.tehran")
    signed = SignedBatch(batch=batch, signature=signer.sign(batch.model_dump(mode="json")))
    code, reply, _ = http("POST", system.plan.node("1101", "mashhad").url + "/v1/replicate",
                          raw=signed.model_dump_json().encode())
    answer = reply["reply"]
    assert code == 200 and answer["status"] == "stale-epoch" and answer["epoch"] == 3
    assert answer["table"]["table"]["services"]["1101"]["primary"] == "isfahan"
    assert answer["standby"] == "node.1101.mashhad" and answer["batch_signature"] == signed.signature.sig, \
        "the reply is bound to the standby and to the batch it answers"


@pytest.mark.parametrize("mode", ["cut", "drop"])
def test_a_gateway_cut_off_from_the_primary_serves_through_another_region(start_system: SystemFactory,
                                                                         mode: str) -> None:
    # Found by the N-1 matrix: relaying through another region's gateway used the node's path.
    system = start_system()
    getattr(link_admin(system, "isfahan", "tehran"), mode)()  # tehran holds the primary of 1101
    for n in range(3):
        doc_id = f"relay-{mode}-{n}"
        status, body, _ = http("PUT", system.plan.gateway("isfahan").url + f"/v1/services/1101/documents/{doc_id}",
                               document(n, mode), timeout=10)
        assert (status, body.get("acknowledged")) == (200, True), body
        status, body, _ = http("GET", system.plan.gateway("isfahan").url + f"/v1/services/1101/documents/{doc_id}",
                               timeout=10)
        assert status == 200 and body["data"] == document(n, mode)["data"], body
    link_admin(system, "isfahan", "tehran").heal()


def test_no_acknowledgement_without_a_standby(start_system: SystemFactory) -> None:
    system = start_system()
    for target in ("isfahan", "mashhad"):
        link_admin(system, "tehran", target).cut()
    status, body, headers = http("PUT", system.plan.gateway("tehran").url + "/v1/services/1101/documents/lonely",
                                 document(1))
    assert status == 503 and "NOT acknowledged" in body["error"] and headers["Retry-After"]
    for target in ("isfahan", "mashhad"):
        link_admin(system, "tehran", target).heal()
    status, body, _ = http("PUT", system.plan.gateway("tehran").url + "/v1/services/1101/documents/lonely",
                           document(1))
    assert status == 200 and body["acknowledged"] is True


def test_corrupted_log_entry_is_detected_and_never_served(start_system: SystemFactory) -> None:
    system = start_system()
    gateway = system.plan.gateway("isfahan").url
    positions = {}
    for n in range(5):
        code, written, _ = http("PUT", f"{gateway}/v1/services/1101/documents/c{n}", document(n))
        assert code == 200
        positions[n] = written["position"]
    wait_until(lambda: node_state(system, "isfahan")["log_position"] >= positions[4], 10,
               "isfahan to hold all 5 entries")
    db = system.layout.data("node.1101.isfahan") / "registry.sqlite3"
    with sqlite3.connect(db) as conn:  # ransomware-style silent change of one stored record
        conn.execute("UPDATE log SET body = replace(body, '\"n\":2', '\"n\":666') WHERE doc_id = 'c2'")
    token = system.admin_token("node.1101.isfahan")
    node = system.plan.node("1101", "isfahan").url
    assert http("POST", node + "/v1/integrity")[0] == 401
    code, result, _ = http("POST", node + "/v1/integrity", headers={"Authorization": f"Bearer {token}"})
    assert code == 409 and result["first_bad_position"] == positions[2]
    code, ready, _ = http("GET", node + "/readyz")
    assert code == 503 and "compromised" in ready["error"]
    code, answer, _ = http("GET", node + "/v1/documents/c2")
    assert code == 503 and "failed verification" in answer["error"]
    # Citizens still get the true document from a healthy replica, through every gateway.
    for region in system.topology.region_names:
        code, got, _ = http("GET", f"{system.plan.gateway(region).url}/v1/services/1101/documents/c2")
        assert code == 200 and got["data"]["n"] == 2


def test_overload_is_shed_with_503_and_the_node_stays_up(start_system: SystemFactory) -> None:
    system = start_system(limits={"max_inflight_requests": 2, "max_queued_requests": 0})
    for target in ("isfahan", "mashhad"):
        link_admin(system, "tehran", target).set(delay_ms=400)
    node = system.plan.node("1101", "tehran").url
    serial = itertools.count()  # fresh document ids in every flood

    async def flood() -> list[tuple[int, str | None]]:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
            async def one(n: int) -> tuple[int, str | None]:
                async with session.put(f"{node}/v1/documents/flood-{n}", json=document(n)) as response:
                    return response.status, response.headers.get("Retry-After")
            return await asyncio.gather(*(one(next(serial)) for _ in range(30)))

    # The probers' canary writes take inflight slots too (every few seconds), so one flood can
    # find both slots busy and shed everything: flood again, a bounded number of times.
    results: list[tuple[int, str | None]] = []
    for _ in range(3):
        results = asyncio.run(flood())
        shed = [r for r in results if r[0] == 503]
        assert shed and all(retry == "1" for _, retry in shed), results
        if any(status == 200 for status, _ in results):
            break
    assert any(status == 200 for status, _ in results), results
    assert http("GET", node + "/livez")[0] == 200
    assert node_state(system, "tehran")["role"] == "primary"


def test_up_failure_names_component_shows_log_and_cleans_up(tmp_path: Path) -> None:
    state = tmp_path / "state"
    broken = state / "data" / "node.1101.mashhad" / "registry.sqlite3"
    broken.mkdir(parents=True)  # a directory where the database file must be: the node cannot start
    config = write_topology(tmp_path / "n.yaml", services=["1101"])
    with pytest.raises(UpFailed) as info:
        up(config, state)
    assert "node.1101.mashhad" in str(info.value)
    assert "unable to open database" in info.value.diagnostics["node.1101.mashhad"]
    assert Supervisor(StateLayout(state.resolve())).pid() is None, "a failed up leaves nothing running"


def test_down_stops_exactly_what_up_started(start_system: SystemFactory) -> None:
    system = start_system()
    supervisord = system.supervisor.pid()
    assert supervisord is not None
    pids = process_tree(supervisord)
    assert len(pids) >= 1 + 3 + 3 + 6 + 1
    ports = [c.port for c in system.plan.components]
    stopped, killed = down(system.layout.root)
    assert stopped == len(system.plan.components) and killed == []
    wait_until(lambda: not any(Path(f"/proc/{p}").exists() for p in pids), 10, "every started process to exit")
    import socket

    for port in ports:
        with socket.socket() as sock:  # free for a server (TIME_WAIT of closed connections aside)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
    assert down(system.layout.root) == (0, [])
