"""A small agency web app: eligibility for the household energy subsidy, computed from the request.

It stands for an agency's own service behind Paydar's gateways (``workload: http``) and knows
nothing of Paydar: it uses the Python standard library only, keeps no state beyond a count of
the applications it has received, and reads the region it runs in from its command line.

    GET  /healthz                              -> {"status": "ok"}
    GET  /eligibility?household=4&income=900   -> {"eligible": true, "monthly_amount": 1600000, ...}
    POST /applications  {"citizen_id": "...", "household": 4, "income": 900}
                                               -> 201 {"reference": "...", "eligible": true, ...}

Run: ``python app.py --port 8080 --region somewhere``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

INCOME_CEILING_PER_MEMBER = 400  # thousand rials a month, per household member
BASE_AMOUNT = 400_000  # rials a month, per household member
MAX_BODY = 4096
_REFERENCES = itertools.count(1)
_LOCK = threading.Lock()


def assess(household: int, income: int) -> dict[str, object]:
    """The subsidy rule: eligible below the per-member income ceiling; the amount grows with the household."""
    eligible = income < INCOME_CEILING_PER_MEMBER * household
    return {"eligible": eligible, "monthly_amount": BASE_AMOUNT * household if eligible else 0,
            "rule": f"income below {INCOME_CEILING_PER_MEMBER} per member"}


class Handler(BaseHTTPRequestHandler):
    region = "unknown"
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: without it, each answer waits ~40 ms

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/healthz":
            return self._send(200, {"status": "ok", "region": self.region})
        if url.path == "/eligibility":
            query = urllib.parse.parse_qs(url.query)
            try:
                household, income = int(query["household"][0]), int(query["income"][0])
            except (KeyError, ValueError):
                return self._send(400, {"error": "give household and income as whole numbers"})
            if not 1 <= household <= 30 or not 0 <= income <= 10**9:
                return self._send(400, {"error": "household is 1-30 people, income 0 or more"})
            return self._send(200, {**assess(household, income), "region": self.region})
        return self._send(404, {"error": f"no such page {url.path[:80]!r}"})

    def do_POST(self) -> None:
        if urllib.parse.urlsplit(self.path).path != "/applications":
            return self._send(404, {"error": "POST /applications"})
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return self._send(413, {"error": f"at most {MAX_BODY} bytes"})
        try:
            form = json.loads(self.rfile.read(length))
            household, income = int(form["household"]), int(form["income"])
            citizen = str(form["citizen_id"])[:20]
        except (ValueError, KeyError, TypeError):
            return self._send(400, {"error": "send JSON with citizen_id, household and income"})
        with _LOCK:
            number = next(_REFERENCES)
        reference = f"{self.region}-{number}"
        return self._send(201, {"reference": reference, "citizen_id": citizen, **assess(household, income),
                                "region": self.region})

    def _send(self, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--region", default="unknown")
    args = parser.parse_args()
    Handler.region = args.region
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
