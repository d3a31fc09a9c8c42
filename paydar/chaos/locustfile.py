"""Locust citizens for `paydar drill`: each writes a fresh document through its region's gateway,
then reads it back, and logs the outcome.

Run by :mod:`paydar.chaos.load` as ``locust -f chaos/locustfile.py --headless``, never imported by
Paydar itself: Locust patches the standard library with gevent, so it lives in its own process.
Configuration comes from the environment:

- ``PAYDAR_GATEWAYS``: JSON object, region -> gateway URL; users are spread evenly over them;
- ``PAYDAR_SERVICES``: JSON list of service ids, written round-robin;
- ``PAYDAR_CANARIES``: JSON object, http service id -> its canary (method, path, body,
  expect_status, body_contains): a citizen of such a service sends its canary request through
  the gateway instead of a document, and is served when the answer passes (logged with an
  empty document id: there is nothing of Paydar's to read back);
- ``PAYDAR_LEDGERS``: JSON object, http service id -> its ledger (``write`` and ``read``
  requests, ``{id}`` standing for a fresh record id): a citizen of such a service writes a
  record and reads it back instead of sending the canary, logged with the record's id, so the
  drill checks that no record the app acknowledged is lost;
- ``PAYDAR_LOAD_LOG``: JSON-lines file, one line per citizen interaction: time, region, service,
  document id and content, whether the write was acknowledged, whether the read-back
  returned exactly what was written ("served"), and whether the service served a read at
  all ("read": the new document, or after a refused write one acknowledged earlier, so a
  read-only service is seen serving reads; null when there is nothing to read yet). The
  drill turns it into the availability timeline and each service's write and read recovery,
  and checks every acknowledged write in it at the end.
"""

from __future__ import annotations

import itertools
import json
import os
import time
import uuid
from typing import Any

from locust import HttpUser, between, task

GATEWAYS: dict[str, str] = json.loads(os.environ.get("PAYDAR_GATEWAYS", "{}"))
SERVICES: list[str] = json.loads(os.environ.get("PAYDAR_SERVICES", "[]"))
CANARIES: dict[str, dict[str, Any]] = json.loads(os.environ.get("PAYDAR_CANARIES", "{}"))
LEDGERS: dict[str, dict[str, dict[str, Any]]] = json.loads(os.environ.get("PAYDAR_LEDGERS", "{}"))
REQUEST_TIMEOUT = 5.0
_RUN = uuid.uuid4().hex[:8]
_SERIAL = itertools.count()
_REGIONS = itertools.cycle(sorted(GATEWAYS))
_ACKNOWLEDGED: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
"""Per (region, service): the newest document acknowledged through that gateway, to read while writes are refused."""
_LOG = open(os.environ.get("PAYDAR_LOAD_LOG", os.devnull), "a", buffering=1)  # noqa: SIM115 - lives as long as Locust


class Citizen(HttpUser):
    """A citizen of one region, writing then reading back documents of every service."""

    wait_time = between(0.2, 0.6)
    host = "http://127.0.0.1"

    def on_start(self) -> None:
        self.region = next(_REGIONS)
        self.gateway = GATEWAYS[self.region]

    @task
    def write_then_read(self) -> None:
        n = next(_SERIAL)
        service = SERVICES[n % len(SERVICES)]
        if service in LEDGERS:
            self._record(service, LEDGERS[service], f"load-{_RUN}-{self.region}-{n}")
            return
        if service in CANARIES:
            self._app(service, CANARIES[service])
            return
        doc_id = f"load-{_RUN}-{self.region}-{n}"
        document = {"citizen_id": f"{(n * 104729) % 10**10:010d}", "kind": "national-id-card",
                    "data": {"load": _RUN, "serial": n}}
        url = f"{self.gateway}/v1/services/{service}/documents/{doc_id}"
        at = time.time()
        with self.client.put(url, json=document, name=f"PUT {self.region}", timeout=REQUEST_TIMEOUT,
                             catch_response=True) as reply:
            acknowledged = reply.ok and _json(reply).get("acknowledged") is True
            if not acknowledged:
                reply.failure(f"not acknowledged: HTTP {reply.status_code}")
        if acknowledged:
            _ACKNOWLEDGED[(self.region, service)] = (doc_id, document)
        earlier = _ACKNOWLEDGED.get((self.region, service))
        read = None if earlier is None else self._read(service, *earlier)
        served = acknowledged and bool(read)
        _LOG.write(json.dumps({"at": at, "region": self.region, "service": service, "doc_id": doc_id,
                               "document": document, "acknowledged": acknowledged, "served": served,
                               "read": read}) + "\n")

    def _app(self, service: str, canary: dict[str, Any]) -> None:
        at = time.time()
        body = canary["body"].encode() if canary.get("body") is not None else None
        with self.client.request(canary["method"], f"{self.gateway}/v1/services/{service}{canary['path']}",
                                 data=body, name=f"{canary['method']} {self.region} app", timeout=REQUEST_TIMEOUT,
                                 catch_response=True) as reply:
            wanted = canary.get("body_contains")
            served = reply.status_code == canary["expect_status"] and (not wanted or wanted in reply.text)
            if not served:
                reply.failure(f"canary failed: HTTP {reply.status_code}")
        _LOG.write(json.dumps({"at": at, "region": self.region, "service": service, "doc_id": "", "document": None,
                               "acknowledged": served, "served": served, "read": served}) + "\n")

    def _record(self, service: str, ledger: dict[str, dict[str, Any]], record: str) -> None:
        at = time.time()
        acknowledged = self._ask(service, ledger["write"], record, "write")
        if acknowledged:
            _ACKNOWLEDGED[(self.region, service)] = (record, {"ledger": record})
        earlier = _ACKNOWLEDGED.get((self.region, service))
        read = None if earlier is None else self._ask(service, ledger["read"], earlier[0], "read")
        _LOG.write(json.dumps({"at": at, "region": self.region, "service": service, "doc_id": record,
                               "document": {"ledger": record}, "acknowledged": acknowledged,
                               "served": acknowledged and bool(read), "read": read}) + "\n")

    def _ask(self, service: str, request: dict[str, Any], record: str, what: str) -> bool:
        """One ledger request for ``record``; whether its answer passes."""
        def filled(text: str | None) -> str | None:
            return text.replace("{id}", record) if text is not None else None

        body = filled(request.get("body"))
        with self.client.request(request["method"], f"{self.gateway}/v1/services/{service}{filled(request['path'])}",
                                 data=body.encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"} if body is not None else None,
                                 name=f"{request['method']} {self.region} app {what}", timeout=REQUEST_TIMEOUT,
                                 catch_response=True) as reply:
            wanted = filled(request.get("body_contains"))
            passed = reply.status_code == request["expect_status"] and (not wanted or wanted in reply.text)
            if not passed:
                reply.failure(f"ledger {what} failed: HTTP {reply.status_code}")
        return bool(passed)

    def _read(self, service: str, doc_id: str, document: dict[str, Any]) -> bool:
        url = f"{self.gateway}/v1/services/{service}/documents/{doc_id}"
        with self.client.get(url, name=f"GET {self.region}", timeout=REQUEST_TIMEOUT, catch_response=True) as reply:
            served = bool(reply.ok and _json(reply).get("data") == document["data"])
            if not served:
                reply.failure(f"not served as written: HTTP {reply.status_code}")
        return served


def _json(reply: Any) -> dict[str, Any]:
    try:
        body = reply.json()
    except (ValueError, RecursionError):  # a hostile gateway may nest its JSON beyond any parser's depth
        return {}
    return body if isinstance(body, dict) else {}
