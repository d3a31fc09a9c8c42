"""An agency's own web app behind real gateways: real instances under supervisord, real links,
real probers and controllers. What a citizen sends arrives byte for byte; what may have been
applied is never sent twice; a crashed, hung, partitioned or lying instance is routed around
within the service's RTO; an oversized or slow request costs only its own service."""

from __future__ import annotations

import base64
import json
import shutil
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.client import HTTPConnection, HTTPMessage
from pathlib import Path
from typing import Any

import pytest
import yaml

from paydar.chaos.actions import crash_component, hang_component, impersonate_instance, partition_region, undo_fault
from paydar.infra.local.appjail import APP_UID_BASE, JAIL_APP_DIR
from paydar.infra.local.realizer import Realization
from paydar.model.ids import node_id
from tests.helpers import ROOT, SERVICE, document, http, wait_until
from tests.integration.conftest import running

APP = "h1"
RTO = 20.0
TIMEOUT = 2.0
CONCURRENCY = 4
ECHO = ROOT / "tests" / "apps" / "echo.py"


def _topology(path: Path, state: Path) -> Path:
    """The example's regions with one registry service and the echo app, copied beside the file
    (an instance runs from the topology file's directory)."""
    shutil.copyfile(ECHO, path.parent / ECHO.name)
    path.parent.chmod(0o755)  # the app runs as its own uid, from this directory
    (path.parent / ECHO.name).chmod(0o644)
    data = yaml.safe_load((ROOT / "national.yaml").read_text())
    regions = [r["name"] for r in data["regions"]]
    registry = next(s for s in data["services"] if s["id"] == SERVICE)
    app = {k: v for k, v in registry.items() if k not in ("sync_replicas", "id", "name")} | {
        "id": APP, "name": "Echo", "rto": f"{RTO:g}s", "regions": regions, "workload": "http",
        "http": {"instances": {r: {"command": ["python3", ECHO.name, "--port", "{port}", "--region", "{region}",
                                               "--state", str(state)]} for r in regions},
                 "health_path": "/healthz", "canary": {"path": "/canary", "body_contains": "ok"},
                 "limits": {"max_body_bytes": 65536, "timeout": f"{TIMEOUT:g}s", "max_concurrency": CONCURRENCY}}}
    data["services"] = [registry, app]
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Realization]:
    folder = tmp_path_factory.mktemp("http")
    with running(_topology(folder / "http.yaml", folder / "state"), folder / "state") as realization:
        yield realization


def configuration(system: Realization) -> dict[str, Any]:
    return {"paydar_state_dir": str(system.layout.root)}


def raw(system: Realization, region: str, method: str, path: str, body: bytes | None = None,
        headers: list[tuple[str, str]] | None = None, timeout: float = 10.0) -> tuple[int, bytes, HTTPMessage]:
    """One request exactly as given (http.client does not normalise the path or headers)."""
    port = system.plan.gateway(region).port
    connection = HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for key, value in headers or []:
            connection.putheader(key, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, response.read(), response.headers
    finally:
        connection.close()


def instance(system: Realization, region: str, method: str, path: str, body: Any = None) -> dict[str, Any]:
    """Ask one instance directly (the test's own view, not a citizen's)."""
    return http(method, system.plan.node(APP, region).url + path, body)[1]


def applied(system: Realization) -> dict[str, int]:
    return {r: int(instance(system, r, "GET", "/applied")["applied"]) for r in system.topology.region_names}


def route(system: Realization, via: str) -> dict[str, Any]:
    found: dict[str, Any] = http("GET", system.plan.gateway(via).url + "/v1/services")[1]["services"][APP]
    return found


def served_by(system: Realization, via: str) -> str | None:
    status, _, headers = raw(system, via, "GET", f"/v1/services/{APP}/canary", timeout=TIMEOUT + 3)
    return headers.get("X-Paydar-Served-By") if status == 200 else None


def settled(system: Realization) -> None:
    """Every instance back in every gateway's route (the previous test's fault undone)."""
    regions = set(system.topology.region_names)
    wait_until(lambda: all(set((r := route(system, g))["standbys"]) | {r["primary"]} == regions for g in regions),
               60, "every instance back in every gateway's route")


def test_an_instance_runs_as_its_own_uid_with_paydars_state_out_of_sight(system: Realization) -> None:
    seen = [instance(system, r, "GET", "/whoami") for r in system.topology.region_names]
    assert all(s["uid"] >= APP_UID_BASE and s["cwd"] == JAIL_APP_DIR and s["sees_state"] is False for s in seen), seen
    assert len({s["uid"] for s in seen}) == len(seen), "no two instances share a uid (or can signal each other)"
    assert system.supervisor.pid() is not None and (system.layout.root / "keys").is_dir()


def test_any_method_path_query_header_and_body_arrives_byte_for_byte(system: Realization) -> None:
    region = system.topology.region_names[0]
    body = bytes(range(256)) * 3
    path = "/a%2Fb/c%20d;p=1/%E2%9C%93?q=1&q=2&empty=&plus=a+b&enc=%26%3D#"
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        status, answer, headers = raw(system, region, method, f"/v1/services/{APP}{path}", body, headers=[
            ("X-Custom", "v1"), ("X-Custom", "v2"), ("Connection", "keep-alive, X-Secret"), ("X-Secret", "hop"),
            ("X-Forwarded-For", "6.6.6.6"), ("X-Paydar-Hop", "1"), ("Content-Type", "application/octet-stream")])
        assert status == 200, (method, answer)
        echoed = json.loads(answer)
        got = [(k.lower(), v) for k, v in echoed["headers"]]
        assert echoed["method"] == method and echoed["raw_path"] == path.removesuffix("#")
        assert base64.b64decode(echoed["body"]) == body
        assert [v for k, v in got if k == "x-custom"] == ["v1", "v2"]
        assert ("content-type", "application/octet-stream") in got
        assert not [k for k, _ in got if k in ("x-secret", "x-paydar-hop")], "hop-by-hop and Paydar headers dropped"
        assert [v for k, v in got if k == "x-forwarded-for"] == ["127.0.0.1"]
        assert headers.get_all("X-Paydar-Served-By") == [region], "the app's forged claim is replaced"
        assert headers["X-Echo"] == "1"
    status, answer, _ = raw(system, region, "GET", f"/v1/services/{APP}/")
    assert status == 200 and json.loads(answer)["raw_path"] == "/"


def test_a_post_that_may_have_been_applied_is_never_sent_twice(system: Realization) -> None:
    settled(system)
    first, second = system.topology.region_names[:2]
    try:
        # An idempotent PUT that timed out is sent on: applied where it stalled and where it was answered.
        instance(system, first, "POST", "/mode", {"stall": TIMEOUT + 2})
        before = applied(system)
        status, _, headers = raw(system, first, "PUT", f"/v1/services/{APP}/apply", b"{}")
        assert status == 201 and headers["X-Paydar-Served-By"] != first
        after = applied(system)
        assert after[first] == before[first] + 1 and sum(after.values()) == sum(before.values()) + 2
        # A POST that timed out may have been applied: the citizen is told, and it is never sent on.
        instance(system, second, "POST", "/mode", {"stall": TIMEOUT + 2})
        status, answer, _ = raw(system, second, "POST", f"/v1/services/{APP}/apply", b"{}")
        assert status == 504 and b"may have been applied" in answer and b"not sent again" in answer
        last = applied(system)
        assert {r: last[r] - after[r] for r in last} == {r: int(r == second) for r in last}, "applied once, only there"
    finally:
        for region in (first, second):
            instance(system, region, "POST", "/mode", {"stall": 0})


def test_a_request_never_connected_is_sent_elsewhere_whatever_its_method(system: Realization) -> None:
    settled(system)
    region = system.topology.region_names[1]
    rpc = system.supervisor.rpc().supervisor
    rpc.stopProcess(node_id(APP, region), True)
    try:
        status, answer, headers = raw(system, region, "POST", f"/v1/services/{APP}/apply", b"{}")
        assert status == 201, answer
        assert headers["X-Paydar-Served-By"] != region
    finally:
        rpc.startProcess(node_id(APP, region), True)


@pytest.mark.parametrize("fault", ["crash", "hang", "partition", "lying-instance"])
def test_a_broken_instance_is_routed_around_within_the_rto(system: Realization, fault: str) -> None:
    settled(system)
    target = route(system, system.topology.region_names[0])["primary"]
    others = [r for r in system.topology.region_names if r != target]
    attack = {"crash": lambda: crash_component(f"node.{APP}@primary", configuration(system)),
              "hang": lambda: hang_component(f"node.{APP}@primary", configuration(system)),
              "partition": lambda: partition_region(target, configuration=configuration(system)),
              "lying-instance": lambda: impersonate_instance(f"node.{APP}@primary", configuration(system))}
    started = time.monotonic()
    recorded = attack[fault]()
    try:
        assert recorded["component"].endswith(target) or recorded["region"] == target
        for via in others:
            def elsewhere(via: str = via) -> bool:
                return served_by(system, via) not in (None, target)

            wait_until(elsewhere, RTO, f"{via}'s citizens served by another instance after the {fault}")
        assert time.monotonic() - started <= RTO
        wait_until(lambda: target not in (r := route(system, others[0]))["standbys"] + [r["primary"]], RTO,
                   f"the {fault} instance out of the certified route")
        if fault == "lying-instance":
            assert http("GET", system.plan.node(APP, target).url + "/healthz")[0] == 200, "it still says healthy"
    finally:
        undo_fault(configuration(system))
    settled(system)


def test_oversized_and_slow_requests_cost_only_their_own_service(system: Realization) -> None:
    settled(system)
    region = system.topology.region_names[0]
    status, answer, _ = raw(system, region, "POST", f"/v1/services/{APP}/echo", b"x" * 70_000)
    assert status == 413 and b"65536 byte limit" in answer
    instance(system, region, "POST", "/mode", {"stall": TIMEOUT + 1})
    for other in system.topology.region_names[1:]:
        instance(system, other, "POST", "/mode", {"stall": TIMEOUT + 1})
    slow: list[int] = []
    threads = [threading.Thread(target=lambda: slow.append(raw(system, region, "POST", f"/v1/services/{APP}/apply",
                                                               b"{}")[0])) for _ in range(CONCURRENCY)]
    try:
        for thread in threads:
            thread.start()
        wait_until(lambda: _inflight(system, region) >= CONCURRENCY, 10, "the app's slots at this gateway all taken")
        status, answer, headers = raw(system, region, "GET", f"/v1/services/{APP}/canary")
        assert status == 503 and headers["Retry-After"] == "1" and b"its bound" in answer
        put = http("PUT", f"{system.plan.gateway(region).url}/v1/services/{SERVICE}/documents/http-bounds",
                   document(1), timeout=5)
        assert put[0] == 200 and put[1]["acknowledged"] is True, "the registry service is untouched"
    finally:
        for thread in threads:
            thread.join(TIMEOUT + 10)
        for r in system.topology.region_names:
            instance(system, r, "POST", "/mode", {"stall": 0})
    assert slow == [504] * CONCURRENCY


def _inflight(system: Realization, region: str) -> float:
    """The app's requests in flight at a gateway, from the gateway's own metrics."""
    with urllib.request.urlopen(system.plan.gateway(region).url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    prefix = f'paydar_gateway_app_inflight{{region="{region}",service="{APP}"}} '
    return next(float(line.removeprefix(prefix)) for line in text.splitlines() if line.startswith(prefix))
