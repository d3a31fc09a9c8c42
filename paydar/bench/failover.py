"""`paydar bench failover`: kill the primary region again and again; how long until writes flow?

Each kill freezes then SIGKILLs every process of the region that holds the measured
service's primary (node, gateway, prober, controller), and keeps supervisord from restarting
them (a region that is gone stays gone). Concurrent
clients write through the gateways of the other regions the whole time; the figure is the
time from the kill to the first acknowledged write of that service through a surviving
gateway. The region is restarted and rejoins as standby before the next kill. At the end
every acknowledged write is read back through every gateway: lost writes are counted.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from rich.console import Console

from paydar.bench.up import percentile
from paydar.chaos.invariants import ViolationKind, check_acknowledged
from paydar.chaos.workload import Workload, read_back
from paydar.failover.state import ControllerState
from paydar.gateway.state import GatewayState
from paydar.infra.local.realizer import Realization, down, up
from paydar.model.errors import BadInput, PaydarError
from paydar.model.ids import controller_id
from paydar.model.topology import Ledger, WorkloadKind
from paydar.workload.contract import InstanceRole, InstanceState

__all__ = ["bench_failover"]

STEP_TIMEOUT = 60.0


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=3) as response:
        answer: dict[str, Any] = json.loads(response.read())
    return answer


def _await(what: str, predicate: Any, timeout: float = STEP_TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(0.05)
    raise PaydarError(f"benchmark step timed out after {timeout:.0f}s: {what}")


def _primary(realization: Realization, service: str, via: list[str]) -> str | None:
    for region in via:
        try:
            return GatewayState.model_validate(_get(realization.plan.gateway(region).url + "/state")).services[
                service].primary
        except OSError:
            continue
    return None


def _kill_region(realization: Realization, region: str) -> float:
    """Freeze, then kill, every process of ``region``; returns the moment they froze.

    Freezing first (SIGSTOP) makes the failure instantaneous, and lets supervisord be told to
    stop them before SIGKILL lands, so it records them as stopped instead of restarting them.
    """
    rpc = realization.supervisor.rpc().supervisor
    names = [c.id for c in realization.plan.components if c.region == region]
    pids = [pid for pid in (rpc.getProcessInfo(n)["pid"] for n in names) if pid]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    killed_at = time.monotonic()
    for name in names:
        rpc.stopProcess(name, False)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    for name in names:
        _await(f"{name} to stop", lambda n=name: rpc.getProcessInfo(n)["statename"] == "STOPPED")
    return killed_at


def _restart_region(realization: Realization, region: str, service: str) -> None:
    """Restart every process of ``region``; return once the system is whole and watched again.

    The next kill must hit a healthy system: the node must be a standby again and every
    controller must have judged every node up (a controller that just started has not, and
    would delay the next judgement by its start-up grace).
    """
    rpc = realization.supervisor.rpc().supervisor
    for component in [c for c in realization.plan.components if c.region == region]:
        rpc.startProcess(component.id, True)
    node = realization.plan.node(service, region).url
    _await(f"{region} to rejoin as standby",
           lambda: InstanceState.model_validate(_get(node + "/state")).role is InstanceRole.STANDBY)
    for judge in realization.topology.region_names:  # every controller: one still judging it down would
        _await_watched(realization, judge)           # fence it, were it promoted, and the kill be two faults


def _await_watched(realization: Realization, region: str) -> None:
    """Until ``controller.<region>`` has judged every node up (out of its start-up grace)."""
    controller = realization.plan.component(controller_id(region)).url

    def watched() -> bool:
        state = ControllerState.model_validate(_get(controller + "/state"))
        return (state.quorum and not state.down and len(state.probers) == len(realization.topology.regions)
                and state.judgement_rounds > realization.topology.control.up_after_rounds + 2)

    _await(f"controller.{region} to judge every node up", watched)


def _written_through(realization: Realization, service: str) -> tuple[str, dict[str, Ledger]]:
    """The service whose writes measure ``service``: itself, or for a database the app that keeps
    its state there, written through its ledger (citizens reach a database only through its app)."""
    topology = realization.topology
    if topology.service(service).workload is not WorkloadKind.POSTGRES:
        return service, {}
    for sid, http in topology.http_services.items():
        if http.database == service and http.ledger is not None:
            return sid, {sid: http.ledger}
    raise BadInput(f"service {service} is a database, measured through an app whose database it is; none declares "
                   "a ledger (http.ledger) to write records with")


def bench_failover(*, config: Path, kills: int, service: str | None, console: Console) -> dict[str, float | int]:
    """Bring a fresh system up, kill primary regions ``kills`` times, report the figures."""
    state_dir = Path(tempfile.mkdtemp(prefix="paydar-bench-"))
    kept = True
    try:
        with console.status("up"):
            realization = up(config, state_dir)
        try:
            figures = _run(realization, kills, service or realization.topology.services[0].id, console)
        finally:
            down(state_dir)
        kept = False
        return figures
    finally:
        if kept:  # a failed run's logs are what explains it
            console.print(f"the system's state and logs are kept in {state_dir}")
        else:
            shutil.rmtree(state_dir, ignore_errors=True)


def _run(realization: Realization, kills: int, service: str, console: Console) -> dict[str, float | int]:
    regions = list(realization.topology.service(service).regions)
    gateways = {r: realization.plan.gateway(r).url for r in realization.topology.region_names}
    for region in realization.topology.region_names:  # the first kill, like every later one, hits a watched system
        _await_watched(realization, region)
    # A database is written through its app: the figure is the app's first acknowledged commit.
    written, ledgers = _written_through(realization, service)
    workload = Workload(gateways, [written], clients=2, tag="bench", ledgers=ledgers).start()
    recoveries: list[float] = []
    try:
        for n in range(1, kills + 1):
            victim = _await("a primary", lambda: _primary(realization, service, regions))
            survivors = [r for r in regions if r != victim]
            acked = workload.acknowledged
            _await("writes before the kill", lambda acked=acked: workload.acknowledged >= acked + 10)
            killed_at = _kill_region(realization, victim)
            first = _await("the first acknowledged write after the kill",
                           lambda killed_at=killed_at: workload.acked_after(killed_at, written))
            recoveries.append(first - killed_at)
            new = _primary(realization, service, survivors)
            console.print(f"kill {n}/{kills}: {victim} down, {new} primary; first acknowledged write after "
                          f"{recoveries[-1]:.3f}s")
            _restart_region(realization, victim, service)
    finally:
        ledger = workload.stop()
    lost = corrupted = 0
    for region in realization.topology.region_names:
        violations = check_acknowledged(ledger, asyncio.run(read_back(realization, ledger, region)))
        lost = max(lost, sum(v.kind is ViolationKind.LOST for v in violations))
        corrupted = max(corrupted, sum(v.kind is ViolationKind.CORRUPTED for v in violations))
    control, probes = realization.topology.control, realization.topology.probes
    return {
        "kills": kills, "probe_interval_s": probes.interval, "probe_timeout_s": probes.timeout,
        "down_after_rounds": control.down_after_rounds,
        "recovery_p50_s": round(percentile(recoveries, 50), 3), "recovery_p99_s": round(percentile(recoveries, 99), 3),
        "recovery_max_s": round(max(recoveries), 3), "writes_acknowledged": ledger.acknowledged_count,
        "acknowledged_writes_lost": lost, "documents_corrupted": corrupted,
    }
