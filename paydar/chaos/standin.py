"""A stand-in on a supervised program's port: the program is stopped, and a handler this process
supplies answers in its place, from a thread, until the stand-in is closed. The lying prober and
the impostor app instance are both stand-ins."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from paydar.infra.local.realizer import Realization

__all__ = ["StandIn"]


class StandIn:
    """Stops ``program`` and serves ``handler`` on ``port`` (127.0.0.1) between enter and exit."""

    def __init__(self, system: Realization, program: str, port: int, handler: type[BaseHTTPRequestHandler]) -> None:
        system.supervisor.rpc().supervisor.stopProcess(program, True)
        self.server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def serve(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(10)
