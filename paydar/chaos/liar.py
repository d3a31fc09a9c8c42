"""A prober that lies: it holds the real prober's stolen key and serves whatever rounds it is told.

``poison`` rewrites each round before it is signed (anything a compromised prober could send:
unknown targets, future timestamps), so the controllers see validly signed garbage.

It takes the place of a real prober (same port, same key), so the controllers pull its
rounds exactly as they would a compromised prober's. Served with the standard library's
threading HTTP server so its caller (a test, or the lying-prober experiment) controls every
round.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler

from paydar.chaos.standin import StandIn
from paydar.infra.local.realizer import Realization
from paydar.model.ids import Kind, prober_id
from paydar.probes.models import ObservationRound, SignedObservations, TargetObservation

__all__ = ["Script", "ScriptedProber"]

Script = Callable[[int, str], bool]  # (round, target id) -> ready?
Poison = Callable[[ObservationRound], ObservationRound]  # rewrites a round before it is signed


class ScriptedProber:
    """Stops the real ``prober.<region>`` and serves scripted, validly signed rounds on its port."""

    def __init__(self, system: Realization, region: str, script: Script, poison: Poison | None = None) -> None:
        self.system = system
        self.poison = poison or (lambda body: body)
        self.component = prober_id(region)
        self.region = region
        self.script = script
        self.round = 10**6  # beyond anything the real prober served
        self.served = 0
        self.signer = system.keystore().signer(self.component)
        self.targets = [c.id for c in system.plan.components if c.kind in (Kind.NODE, Kind.GATEWAY)]
        self._lock = threading.Lock()
        self._stand_in = StandIn(system, self.component, system.plan.component(self.component).port,
                                 self._handler())

    def __enter__(self) -> ScriptedProber:
        self._stand_in.serve()
        return self

    def __exit__(self, *_: object) -> None:
        self._stand_in.close()

    def next_round(self) -> bytes:
        with self._lock:
            self.round += 1
            self.served += 1
            now = time.time()
            body = ObservationRound.of(
                [TargetObservation(target=t, alive=True, ready=self.script(self.round, t), latency_ms=1.0)
                 for t in self.targets],
                prober=self.component, region=self.region, round=self.round, started_at=now, finished_at=now)
            return SignedObservations.seal(self.poison(body), self.signer).model_dump_json().encode()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        prober = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = prober.next_round() if self.path == "/v1/observations" else b'{"status": "alive"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                pass

        return Handler
