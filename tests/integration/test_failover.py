"""Automatic failover against a real local national system: probers, controllers, faults.

Each test starts its own system (one service, three regions), injects one fault while
concurrent clients write through the gateways of the unaffected regions, and checks the
history: every acknowledged write is readable, with its acknowledged content, afterwards.
"""

from __future__ import annotations

import os
import signal

import pytest

from paydar.chaos.liar import ScriptedProber
from paydar.infra.local.realizer import Realization
from paydar.model.routing import RoutingTable, initial_table, sign_table
from tests.helpers import (
    FAILOVER_TIMEOUT,
    SERVICE,
    assert_history_holds,
    document,
    http,
    link_admin,
    route,
    state,
    wait_failover_from,
    wait_until,
    writers,
)
from tests.integration.conftest import SystemFactory

pytestmark = pytest.mark.integration


def controller_rounds(system: Realization, region: str) -> int:
    return int(state(system, f"controller.{region}")["judgement_rounds"])


def test_region_crash_fails_over_and_keeps_every_acknowledged_write(start_system: SystemFactory) -> None:
    system = start_system()
    survivors = ("isfahan", "mashhad")
    with writers(system, survivors) as workload:
        wait_until(lambda: workload.acknowledged >= 20, 20, "writes before the fault")
        rpc = system.supervisor.rpc().supervisor
        for component in [c.id for c in system.plan.components if c.region == "tehran"]:
            rpc.stopProcess(component, True)
        new = wait_failover_from(system, "tehran", "isfahan")
        before = workload.acknowledged
        wait_until(lambda: workload.acknowledged > before + 20, 20, "writes after the failover")
    assert new["epoch"] == 3 and new["mode"] == "read-write"
    assert_history_holds(system, workload, survivors)


def test_partitioned_primary_is_fenced_and_rejoins_without_divergence(start_system: SystemFactory) -> None:
    system = start_system()
    cuts = [("tehran", "isfahan"), ("tehran", "mashhad"), ("isfahan", "tehran"), ("mashhad", "tehran")]
    survivors = ("isfahan", "mashhad")
    with writers(system, survivors) as workload:
        wait_until(lambda: workload.acknowledged >= 20, 20, "writes before the partition")
        for source, target in cuts:
            link_admin(system, source, target).cut()
        new = wait_failover_from(system, "tehran", "isfahan")
        # The isolated old primary, still in the old epoch, cannot get any write acknowledged.
        status, body, _ = http("PUT", system.plan.node(SERVICE, "tehran").url + "/v1/documents/isolated",
                               document(7, "isolated"))
        assert status in (503, 409) and body.get("acknowledged") is not True, body
        before = workload.acknowledged
        wait_until(lambda: workload.acknowledged > before + 20, 20, "writes after the failover")
        for source, target in cuts:
            link_admin(system, source, target).heal()
        old = wait_until(lambda: (s := state(system, f"node.{SERVICE}.tehran"))["role"] == "standby"
                         and s["epoch"] == new["epoch"] and s, FAILOVER_TIMEOUT, "tehran to rejoin as a standby")
    heads = wait_until(lambda: len(h := {state(system, f"node.{SERVICE}.{r}")["chain_head"]
                                         for r in system.topology.region_names}) == 1 and h, 20,
                       "every replica to converge on one chain head")
    assert len(heads) == 1 and old["role"] == "standby"
    assert http("GET", system.plan.gateway("isfahan").url + f"/v1/services/{SERVICE}/documents/isolated")[0] == 404
    assert_history_holds(system, workload, system.topology.region_names)


def test_hung_primary_is_detected_and_fenced_when_it_resumes(start_system: SystemFactory) -> None:
    system = start_system()
    pid = system.supervisor.rpc().supervisor.getProcessInfo(f"node.{SERVICE}.tehran")["pid"]
    survivors = ("isfahan", "mashhad")
    with writers(system, survivors) as workload:
        wait_until(lambda: workload.acknowledged >= 20, 20, "writes before the hang")
        os.kill(pid, signal.SIGSTOP)
        try:
            new = wait_failover_from(system, "tehran", "isfahan")
            before = workload.acknowledged
            wait_until(lambda: workload.acknowledged > before + 20, 20, "writes after the failover")
        finally:
            os.kill(pid, signal.SIGCONT)
        resumed = wait_until(lambda: (s := state(system, f"node.{SERVICE}.tehran"))["epoch"] == new["epoch"] and s,
                             FAILOVER_TIMEOUT, "the resumed node to learn the new epoch")
    assert resumed["role"] == "standby"
    status, body, _ = http("PUT", system.plan.node(SERVICE, "tehran").url + "/v1/documents/after-hang", document(8))
    assert status == 409 and "standby" in body["error"]
    assert_history_holds(system, workload, survivors)


def test_one_lying_prober_can_neither_trigger_nor_block_a_failover(start_system: SystemFactory) -> None:
    system = start_system()
    version = route(system, "isfahan")["epoch"]
    says_tehran_down = ScriptedProber(system, "mashhad", lambda _, target: not target.endswith(".tehran"))
    with says_tehran_down as liar:
        start = controller_rounds(system, "isfahan")
        wait_until(lambda: liar.served >= 20 and controller_rounds(system, "isfahan") >= start + 20, 30,
                   "controllers to fold in 20 rounds of lies")
        assert route(system, "isfahan")["primary"] == "tehran" and route(system, "isfahan")["epoch"] == version
        assert f"node.{SERVICE}.tehran" not in state(system, "controller.isfahan")["down"]

    system.supervisor.rpc().supervisor.startProcess("prober.mashhad", True)
    says_all_up = ScriptedProber(system, "isfahan", lambda *_: True)
    with says_all_up, writers(system, ("isfahan", "mashhad")) as workload:
        wait_until(lambda: workload.acknowledged >= 10, 20, "writes before the crash")
        system.supervisor.rpc().supervisor.stopProcess(f"node.{SERVICE}.tehran", True)
        wait_failover_from(system, "tehran", "mashhad")
        before = workload.acknowledged
        wait_until(lambda: workload.acknowledged > before + 10, 20, "writes after the failover")
    assert_history_holds(system, workload, ("isfahan", "mashhad"))


def test_rogue_controller_table_is_refused_everywhere(start_system: SystemFactory) -> None:
    system = start_system()
    held = state(system, "gateway.tehran")["table_version"]
    base = initial_table(system.topology, 0)
    rogue = RoutingTable.model_validate(base.model_dump() | {"version": held + 100, "issued_at": 1e9,
                                                             "expires_at": 4e9, "reason": "everything to mashhad"})
    rogue = rogue.model_copy(update={"services": {SERVICE: base.services[SERVICE].model_copy(update={
        "primary": "mashhad", "standbys": ("tehran", "isfahan"), "epoch": 50})}})
    signed = sign_table(rogue, [system.keystore().signer("controller.mashhad")])
    targets = [c for c in system.plan.components if c.kind.value in ("node", "gateway", "controller")]
    for component in targets:
        status, body, _ = http("POST", component.url + "/v1/routing-table", raw=signed.model_dump_json().encode())
        assert status == 403 and body["reason"] == "under-signed", (component.id, body)
    assert route(system, "tehran")["primary"] == "tehran"
    assert state(system, f"node.{SERVICE}.mashhad")["role"] == "standby"


def test_without_controller_quorum_routing_stays_as_it_is(start_system: SystemFactory) -> None:
    system = start_system()
    rpc = system.supervisor.rpc().supervisor
    rpc.stopProcess("controller.tehran", True)
    rpc.stopProcess("controller.isfahan", True)
    held = route(system, "mashhad")
    rpc.stopProcess(f"node.{SERVICE}.tehran", True)
    start = controller_rounds(system, "mashhad")
    wait_until(lambda: f"node.{SERVICE}.tehran" in state(system, "controller.mashhad")["down"]
               and controller_rounds(system, "mashhad") >= start + 20, 30,
               "the lone controller to judge the primary down for 20 rounds")
    lone = state(system, "controller.mashhad")
    assert lone["quorum"] is False and lone["last_proposal"]["outcome"] == "no-quorum"
    assert route(system, "mashhad") == held, "routing changed without a quorum of controllers"
    # Fail static: what does not depend on the dead primary keeps being served.
    status, body, _ = http("GET", system.plan.gateway("mashhad").url + f"/v1/services/{SERVICE}/documents/none")
    assert status == 404 and "no document" in body["error"]


def test_flapping_target_causes_no_failover_storm(start_system: SystemFactory) -> None:
    system = start_system()
    held = route(system, "isfahan")
    flapping = f"node.{SERVICE}.tehran"

    def flap(round_: int, target: str) -> bool:  # down every other round: never two bad rounds in a row
        return target != flapping or round_ % 2 == 0

    with ScriptedProber(system, "tehran", flap) as a, ScriptedProber(system, "isfahan", flap) as b, \
            ScriptedProber(system, "mashhad", flap) as c:
        start = controller_rounds(system, "isfahan")
        wait_until(lambda: min(a.served, b.served, c.served) >= 30
                   and controller_rounds(system, "isfahan") >= start + 30, 30, "30 flapping rounds")
        assert flapping not in state(system, "controller.isfahan")["down"]
    assert route(system, "isfahan") == held
