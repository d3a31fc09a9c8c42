"""A test agency app: it echoes what it received, byte for byte, counts what it applied, and can
be told to lie or stall, so the tests can prove what the gateways send and what they retry.
Standard library only: it runs jailed, on the system's Python, like any agency app.

    GET  /healthz            200 always (even when lying: that is the point)
    GET  /canary             200 "ok", or 500 when told to lie
    any  /apply              counts one application, then answers 201 (after ``stall`` seconds when stalling)
    GET  /applied            {"applied": n}
    POST /mode               {"lie": bool, "stall": seconds}: how it behaves from now on
    GET  /whoami             {"uid": ..., "cwd": ..., "sees_state": ...}: what the jail left it
    anything else            200 JSON: method, raw path, headers (as a list), body (base64), region

Run: ``python3 echo.py --port P --region R [--state S]``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STATE: dict[str, float | bool] = {"applied": 0, "lie": False, "stall": 0.0}
LOCK = threading.Lock()


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    region = "unknown"
    state_dir = ""

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: object, extra: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode() if not isinstance(body, bytes) else body
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        body = self._body()
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            return self._send(200, {"status": "ok"})
        if path == "/canary":
            return self._send(500, b"broken") if STATE["lie"] else self._send(200, b"ok")
        if path == "/apply":
            with LOCK:
                STATE["applied"] = int(STATE["applied"]) + 1
            if STATE["stall"]:
                time.sleep(float(STATE["stall"]))
            return self._send(201, {"applied": STATE["applied"]})
        if path == "/applied":
            return self._send(200, {"applied": STATE["applied"]})
        if path == "/mode" and self.command == "POST":
            wanted = json.loads(body or b"{}")
            STATE["lie"], STATE["stall"] = bool(wanted.get("lie", False)), float(wanted.get("stall", 0.0))
            return self._send(200, STATE)
        if path == "/whoami":
            return self._send(200, {"uid": os.getuid(), "cwd": os.getcwd(),
                                    "sees_state": bool(self.state_dir) and bool(os.path.exists(self.state_dir)
                                                                                 and os.listdir(self.state_dir))})
        return self._send(200, {"method": self.command, "raw_path": self.path,
                                "headers": [[k, v] for k, v in self.headers.items()],
                                "body": base64.b64encode(body).decode(), "region": self.region},
                          {"X-Echo": "1", "X-Paydar-Served-By": "forged"})

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _handle

    def log_message(self, *_: object) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--state", default="")
    args = parser.parse_args()
    Echo.region, Echo.state_dir = args.region, args.state
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Echo)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
