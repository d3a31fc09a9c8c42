"""An app instance that lies: healthy to its health check, broken to every citizen.

It takes the place of an agency app's instance (same port, after supervisord stops the real
one), answers 200 on the service's health path and 500 on everything else. A check that only
asks the health path keeps sending citizens to it; Paydar's probers also run the service's
canary against every instance, so the majority judges it by the canary and the controllers
route around it. Served with the standard library's threading HTTP server, in the process of
its caller (a test, or the drill's experiment), which stops it on rollback.
"""

from __future__ import annotations

import urllib.parse
from http.server import BaseHTTPRequestHandler

from paydar.chaos.standin import StandIn
from paydar.infra.local.plan import PlannedComponent
from paydar.infra.local.realizer import Realization
from paydar.model.errors import PaydarError

__all__ = ["Impostor"]


class Impostor:
    """Stops the real instance ``component`` and serves its port: health 200, anything else 500."""

    def __init__(self, system: Realization, component: PlannedComponent) -> None:
        if not component.app or not component.supervised or component.service is None:
            raise PaydarError(f"{component.id} is not an app instance paydar up supervises; only those can be "
                              "replaced by an impostor")
        http = system.topology.service(component.service).http
        assert http is not None
        self.component = component
        self.system = system
        self.served = 0
        health = urllib.parse.urlsplit(http.health_path).path
        self._stand_in = StandIn(system, component.id, component.port, self._handler(health))

    def __enter__(self) -> Impostor:
        self._stand_in.serve()
        return self

    def __exit__(self, *_: object) -> None:
        self._stand_in.close()
        self.system.supervisor.rpc().supervisor.startProcess(self.component.id, True)

    def _handler(self, health: str) -> type[BaseHTTPRequestHandler]:
        impostor = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                healthy = urllib.parse.urlsplit(self.path).path == health
                body = b'{"status": "ok"}' if healthy else b'{"error": "impostor"}'
                impostor.served += 1
                self.send_response(200 if healthy else 500)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _answer

            def log_message(self, *_: object) -> None:
                pass

        return Handler
