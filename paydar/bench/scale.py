"""Scale benchmarks: the probe engine and the controller path at national catalog size.

:func:`bench_probes` measures how many probes per second the real
:class:`paydar.probes.engine.ProbeEngine` sustains, and at what CPU cost, against
``services x regions`` node targets. The targets are answered by a hand-written HTTP/1.1
keep-alive responder (a raw :class:`asyncio.Protocol` that answers every request with one
fixed ``/state`` document) running in a separate process. A real node or any web framework
would spend far more CPU per request than the prober does; on a small machine the two
processes compete for cores, so the target server must cost as little CPU as possible for
the figure to measure the prober and not the server. Its CPU is reported separately.

:func:`bench_controller` times what one failover controller does with a national-size
catalog during a region outage: parse and verify every prober's signed round, judge,
plan the next routes, and sign and check the new routing table.

Both return a dict of figures and print nothing; ``python -m paydar.bench.scale probes|controller``
prints it as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from paydar.failover.controller import votes_of
from paydar.failover.decide import Snapshot, decide, proposal_of
from paydar.failover.judge import Judge
from paydar.failover.planner import Overrides
from paydar.model.identity import Role, TrustedKey, TrustRoot
from paydar.model.ids import controller_id, node_id
from paydar.model.routing import RouteMode, TableGuard, initial_table, sign_table
from paydar.model.signing import Signer, public_key_to_b64
from paydar.model.topology import NationalTopology, parse_topology
from paydar.probes.engine import ProbeEngine, Target
from paydar.probes.models import (
    ObservationRound,
    SignedObservations,
    TargetKind,
    TargetObservation,
)
from paydar.workload.contract import InstanceRole, InstanceState

__all__ = ["bench_controller", "bench_probes", "serve"]

TICKS = os.sysconf("SC_CLK_TCK")
HOST = "127.0.0.1"
PROBE_TIMEOUT = 2.0
READY_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0

STATE_BODY = InstanceState(component="node.s0.r0", service="s0", region="r0", role=InstanceRole.STANDBY, epoch=1,
                       mode=RouteMode.READ_WRITE, primary="r1", table_version=1, log_position=10,
                       chain_head="ab" * 32, acked_position=10, ack_replicas=1).model_dump_json().encode()
"""What every synthetic node answers: a real node's ``/state`` document, so probes parse it as they would."""
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(STATE_BODY)).encode() + b"\r\n\r\n" + STATE_BODY)
END_OF_HEAD = b"\r\n\r\n"
MAX_PENDING_BYTES = 64 * 1024


# -- the target server (runs in its own process) ----------------------------------------------


class _StateResponder(asyncio.Protocol):
    """Answers every request head on the connection with the fixed node state (keep-alive).

    Requests carry no body (the prober only sends GETs), so a request ends at the blank line
    after its head; pipelined requests are answered in one write.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.pending = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        buffer = self.pending + data if self.pending else data
        requests = buffer.count(END_OF_HEAD)
        if requests:
            self.transport.write(RESPONSE * requests)
            buffer = buffer[buffer.rfind(END_OF_HEAD) + len(END_OF_HEAD):]
        if len(buffer) > MAX_PENDING_BYTES:  # not a request this responder understands
            self.transport.close()
            buffer = b""
        self.pending = buffer


async def _serve(ports: Sequence[int]) -> None:
    loop = asyncio.get_running_loop()
    servers = [await loop.create_server(_StateResponder, HOST, port, backlog=1024, reuse_address=True)
               for port in ports]
    # Stop when the parent goes away: it holds our stdin open, and EOF means it is gone.
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        await reader.read()
    finally:
        for server in servers:
            server.close()


def serve(ports: Sequence[int]) -> None:
    """Run the fixed-answer HTTP responder on ``ports`` (127.0.0.1) until stdin closes."""
    asyncio.run(_serve(ports))


def _free_ports(count: int) -> list[int]:
    """``count`` distinct free ports on 127.0.0.1, picked by binding port 0."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((HOST, 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class _TargetServer:
    """The target server process and the file its stderr goes to (a file never blocks it)."""

    process: subprocess.Popen[bytes]
    log: IO[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid

    def stderr_tail(self) -> str:
        self.log.seek(0)
        return self.log.read()[-2000:].decode(errors="replace").strip()


def _start_server(ports: Sequence[int]) -> _TargetServer:
    """Start the target server as ``python -m paydar.bench.scale --serve PORT...``."""
    root = Path(__file__).resolve().parents[2]
    log = tempfile.TemporaryFile()  # noqa: SIM115 - the _TargetServer owns it and closes it
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "paydar.bench.scale", "--serve", *map(str, ports)],
            cwd=root, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log)
    except BaseException:
        log.close()
        raise
    return _TargetServer(process, log)


def _wait_listening(server: _TargetServer, ports: Sequence[int], timeout: float) -> None:
    """Poll a TCP connect to every port until all accept; bounded by ``timeout``."""
    process = server.process
    deadline = time.monotonic() + timeout
    waiting = list(ports)
    while waiting:
        if process.poll() is not None:
            raise RuntimeError(f"target server exited with status {process.returncode} before listening: "
                               f"{server.stderr_tail()}")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"target server not listening on {len(waiting)} port(s) after {timeout:.0f}s")
        try:
            with socket.create_connection((HOST, waiting[0]), timeout=min(0.5, remaining)):
                waiting.pop(0)
        except OSError:
            # Not listening yet: block on the process for a moment instead of spinning.
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=min(0.05, max(0.0, deadline - time.monotonic())))


def _stop_server(server: _TargetServer) -> None:
    """Stop the server by its PID and reap it; escalate to SIGKILL if it lingers."""
    process = server.process
    try:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT)
    finally:
        if process.stdin is not None:
            process.stdin.close()
        server.log.close()


def _cpu_seconds(pid: int) -> float:
    """utime + stime of one process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


# -- the probe benchmark -------------------------------------------------------------------


def _probe_targets(services: int, regions: int, ports: Sequence[int]) -> list[Target]:
    targets: list[Target] = []
    for i in range(services):
        for j in range(regions):
            port = ports[len(targets) % len(ports)]
            targets.append(Target(id=f"node.{i}.r{j}", kind=TargetKind.NODE,
                                  url=f"http://{HOST}:{port}/n/{i}/r{j}"))
    return targets


async def _probe_for(targets: list[Target], seconds: float, max_concurrency: int, chunk: int,
                     server_pid: int) -> dict[str, float]:
    engine = ProbeEngine(timeout=PROBE_TIMEOUT, max_concurrency=max_concurrency)
    # A chunk waits at most its share of timeouts behind the semaphore, plus slack.
    chunk_timeout = PROBE_TIMEOUT * math.ceil(chunk / max_concurrency) + 10.0
    try:
        # Warm-up (not counted): open the keep-alive pool and settle imports and caches.
        await asyncio.wait_for(engine.probe_all(targets[:chunk]), timeout=chunk_timeout)
        probes = failures = 0
        cpu_started, server_started = time.process_time(), _cpu_seconds(server_pid)
        started = time.perf_counter()
        deadline = started + seconds
        offset = 0
        while time.perf_counter() < deadline:
            batch = targets[offset:offset + chunk]
            offset = (offset + chunk) % len(targets)
            observations = await asyncio.wait_for(engine.probe_all(batch), timeout=chunk_timeout)
            probes += len(observations)
            failures += sum(1 for o in observations if not o.ready)  # not answered, or not 200
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        server_cpu = _cpu_seconds(server_pid) - server_started
    finally:
        await engine.close()
    return {
        "targets": len(targets), "max_concurrency": max_concurrency, "chunk": len(targets[:chunk]),
        "probes": probes, "failures": failures, "rounds": round(probes / len(targets), 2),
        "wall_seconds": round(wall, 3), "probes_per_second": round(probes / wall, 1),
        "prober_cpu_seconds": round(cpu, 3), "prober_cpu_cores": round(cpu / wall, 3),
        "probes_per_cpu_second": round(probes / cpu, 1) if cpu > 0 else math.inf,
        "server_cpu_cores": round(server_cpu / wall, 3),
    }


def bench_probes(services: int = 6000, regions: int = 5, seconds: float = 10.0, ports: int = 20,
                 *, max_concurrency: int = 256, chunk: int | None = None) -> dict[str, float]:
    """Sustained probes per second and CPU of the real probe engine against a synthetic catalog.

    ``services x regions`` node targets spread over ``ports`` listening ports of a minimal
    HTTP server in a separate process. The engine (timeout 2 s, ``max_concurrency``) probes
    them in chunks of ``chunk`` (default 8 x concurrency, which bounds memory) round after
    round for ``seconds`` after one uncounted warm-up chunk.
    ``prober_cpu_cores`` is this process's CPU seconds per wall second;
    ``probes_per_cpu_second`` is the rate one fully used core would sustain;
    ``server_cpu_cores`` is what the target server spent meanwhile.
    """
    if services < 1 or regions < 1 or ports < 1 or seconds <= 0 or max_concurrency < 1:
        raise ValueError("services, regions, ports, max_concurrency and seconds must be positive")
    chunk = chunk or 8 * max_concurrency
    listening = _free_ports(ports)
    targets = _probe_targets(services, regions, listening)
    server = _start_server(listening)
    try:
        _wait_listening(server, listening, READY_TIMEOUT)
        figures = asyncio.run(_probe_for(targets, seconds, max_concurrency, chunk, server.pid))
    finally:
        _stop_server(server)
    figures["ports"] = ports
    return figures


# -- the controller benchmark --------------------------------------------------------------


def _synthetic_topology(services: int, regions: int) -> NationalTopology:
    names = [f"r{j}" for j in range(regions)]
    return parse_topology({
        "name": f"bench {services}x{regions}",
        "regions": [{"name": n} for n in names],
        "vault": {"sites": [{"name": "vault-site"}]},
        "control": {"threshold": regions // 2 + 1},
        "services": [{
            "id": f"s{i}", "name": f"Service {i}", "agency": "bench", "ecosystem": "identity", "tier": 1,
            "rto": "30s", "rpo": "0s", "regions": [names[(i + k) % regions] for k in range(regions)],
            "sync_replicas": 1,
        } for i in range(services)],
    }, source="<bench>")


def _observations(topology: NationalTopology, outage: str | None) -> tuple[TargetObservation, ...]:
    """What a prober sees of every node while region ``outage`` (if any) is unreachable."""
    seen = []
    for spec in topology.services:
        for region in spec.regions:
            target = node_id(spec.id, region)
            if region == outage:
                seen.append(TargetObservation(target=target, alive=False, ready=False, latency_ms=400.0,
                                              error="timeout"))
                continue
            primary = region == spec.home
            seen.append(TargetObservation(
                target=target, alive=True, ready=True, latency_ms=1.5,
                role="primary" if primary else "standby", epoch=1, position=10, acked=10, head="ab" * 32,
                table_version=1, lag={r: 0 for r in spec.regions[1:]} if primary else {}))
    return tuple(seen)


class _Probers:
    """Synthetic probers: their keys, and their signed rounds in wire form."""

    def __init__(self, topology: NationalTopology, count: int) -> None:
        names = topology.region_names
        self.regions = {f"prober.{names[j % len(names)]}.{j}": names[j % len(names)] for j in range(count)}
        private = {p: Ed25519PrivateKey.generate() for p in self.regions}
        self.signers = {p: Signer(k) for p, k in private.items()}
        self.trust = TrustRoot(roles={Role.PROBER: {
            s.key_id: TrustedKey(component=p, public_key=public_key_to_b64(private[p].public_key()))
            for p, s in self.signers.items()}})

    def wire(self, number: int, seen: tuple[TargetObservation, ...], at: float) -> dict[str, bytes]:
        """Round ``number`` of every prober, signed as a prober signs it, as JSON bytes."""
        rounds = {}
        for prober, region in self.regions.items():
            body = ObservationRound.of(list(seen), prober=prober, region=region, round=number, started_at=at,
                                       finished_at=at + 0.1)
            rounds[prober] = SignedObservations.seal(body, self.signers[prober]).model_dump_json().encode()
        return rounds

    def receive(self, received: dict[str, bytes]) -> dict[str, dict[str, bool]]:
        """The controller's side: parse, check prober and key, verify, turn into votes."""
        votes = {}
        for prober, raw in received.items():
            votes[prober] = votes_of(SignedObservations.model_validate_json(raw).open(prober, self.trust))
        return votes


def _certifying_controllers(topology: NationalTopology) -> tuple[list[Signer], TableGuard]:
    """One signing key per region's controller, and a guard that trusts exactly those keys."""
    keys = [Ed25519PrivateKey.generate() for _ in topology.region_names]
    controllers = [Signer(k) for k in keys]
    trust = TrustRoot(roles={Role.CONTROLLER: {
        s.key_id: TrustedKey(component=controller_id(region), public_key=public_key_to_b64(k.public_key()))
        for region, s, k in zip(topology.region_names, controllers, keys, strict=True)}})
    guard = TableGuard(trust=trust, threshold=topology.control.threshold,
                       known_services=[s.id for s in topology.services])
    return controllers, guard


def bench_controller(services: int = 6000, regions: int = 5, probers: int = 5) -> dict[str, float]:
    """Time one controller judging ``services x regions`` targets and producing a signed table.

    The judge first folds one round in which every node is ready (the steady state before the
    outage; its cost is ``healthy_round_seconds``, outside the total). Then every node of
    region ``r0`` is unreachable (a region outage). For ``down_after_rounds`` rounds each
    prober's signed round is parsed from its JSON wire form, its signature verified, turned
    into votes and folded into the judge (``judge_seconds``); then the next routes are planned
    (``plan_seconds``), and the version-2 table is built, signed by ``threshold`` controllers
    and checked by a :class:`~paydar.model.routing.TableGuard` holding version 1 (``sign_seconds``).
    Building and signing the probers' rounds is the probers' work and is not timed.
    ``total_cpu_seconds`` is this process's CPU time over the timed sections, a check on the
    wall-clock figures when the machine is busy.
    """
    if services < 1 or regions < 2 or probers < 1:
        raise ValueError("need at least one service, two regions and one prober")
    topology = _synthetic_topology(services, regions)
    control = topology.control
    outage = topology.region_names[0]
    vantage = _Probers(topology, probers)
    controllers, guard = _certifying_controllers(topology)
    now = time.time()
    held = initial_table(topology, now)
    guard.accept(sign_table(held, controllers[:control.threshold]))
    judge = Judge(vantage.regions, down_after=control.down_after_rounds, up_after=control.up_after_rounds)

    healthy = vantage.wire(1, _observations(topology, None), now)
    started = time.perf_counter()
    judge.judge_round(vantage.receive(healthy))
    healthy_seconds = time.perf_counter() - started
    if judge.down():
        raise RuntimeError(f"{len(judge.down())} targets judged down in a healthy round")

    seen = _observations(topology, outage)
    rounds = control.down_after_rounds
    wire = [vantage.wire(2 + n, seen, now + 1 + n) for n in range(rounds)]
    judge_seconds = cpu_seconds = 0.0
    for received in wire:
        started, cpu_started = time.perf_counter(), time.process_time()
        judge.judge_round(vantage.receive(received))
        judge_seconds += time.perf_counter() - started
        cpu_seconds += time.process_time() - cpu_started

    cap = control.failover_cap(len(topology.services))
    started, cpu_started = time.perf_counter(), time.process_time()
    decision = decide(Snapshot(held=held, down=judge.down(), overrides=Overrides()), topology)
    plan_seconds = time.perf_counter() - started
    changes = decision.changes

    started = time.perf_counter()
    proposal = proposal_of(held, decision, proposer="bench", now=now, ttl=control.table_ttl)
    signed_table = sign_table(proposal, controllers[:control.threshold])
    signers = guard.accept(signed_table)
    sign_seconds = time.perf_counter() - started
    cpu_seconds += time.process_time() - cpu_started

    fenced = sum(1 for c in changes if c.kind == "fence")
    expected = min(cap, sum(1 for s in topology.services if s.home == outage))
    if len(signers) != control.threshold or fenced != expected or len(judge.down()) != services:
        raise RuntimeError(f"unexpected outcome: {len(signers)} signers, {fenced} fenced (expected {expected}), "
                           f"{len(judge.down())} targets down")
    return {
        "services": services, "regions": regions, "targets": len(seen), "probers": probers,
        "rounds": rounds, "threshold": control.threshold,
        "wire_bytes_per_round": len(next(iter(wire[0].values()))),
        "healthy_round_seconds": round(healthy_seconds, 4),
        "judge_seconds": round(judge_seconds, 4), "plan_seconds": round(plan_seconds, 4),
        "sign_seconds": round(sign_seconds, 4),
        "total_seconds": round(judge_seconds + plan_seconds + sign_seconds, 4),
        "total_cpu_seconds": round(cpu_seconds, 4),
        "targets_down": len(judge.down()), "services_failed_over": fenced, "failover_cap": cap,
    }


# -- command line --------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    """``probes`` or ``controller`` prints the figures as JSON; ``--serve`` runs the target server."""
    parser = argparse.ArgumentParser(prog="python -m paydar.bench.scale", description=__doc__.split("\n")[0])
    parser.add_argument("--serve", nargs="+", type=int, metavar="PORT", help=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command")
    probes = commands.add_parser("probes", help="probe engine throughput and CPU")
    probes.add_argument("--services", type=int, default=6000)
    probes.add_argument("--regions", type=int, default=5)
    probes.add_argument("--seconds", type=float, default=10.0)
    probes.add_argument("--ports", type=int, default=20)
    probes.add_argument("--concurrency", type=int, default=256)
    probes.add_argument("--chunk", type=int, default=None)
    controller = commands.add_parser("controller", help="judge, plan and sign at catalog scale")
    controller.add_argument("--services", type=int, default=6000)
    controller.add_argument("--regions", type=int, default=5)
    controller.add_argument("--probers", type=int, default=5)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return
    if args.command == "probes":
        figures = bench_probes(args.services, args.regions, args.seconds, args.ports,
                               max_concurrency=args.concurrency, chunk=args.chunk)
    elif args.command == "controller":
        figures = bench_controller(args.services, args.regions, args.probers)
    else:
        parser.error("choose probes or controller")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
