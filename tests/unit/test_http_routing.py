"""An http service's routing, decided purely: which instances a gateway tries, what headers cross,
how the controllers reroute on the probers' majority, and how a canary answer is judged."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from paydar.failover.judge import Judge
from paydar.failover.planner import Overrides, plan
from paydar.gateway.proxy import SERVED_BY, candidates, forwarded_headers, relayed_headers
from paydar.infra.local.plan import build_plan
from paydar.infra.local.ports import PortAllocator
from paydar.model.errors import BadInput
from paydar.model.routing import RoutingTable, ServiceRoute, initial_table
from paydar.model.topology import Canary, InstanceMode, NationalTopology, parse_topology
from paydar.probes.engine import canary_failure

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = yaml.safe_load((ROOT / "examples" / "http-service.yaml").read_text())
TOPOLOGY: NationalTopology = parse_topology(EXAMPLE)
APP = next(iter(TOPOLOGY.http_services))
REGIONS = TOPOLOGY.service(APP).regions
PROBERS = tuple(f"prober.{r}" for r in TOPOLOGY.region_names)


def node(region: str) -> str:
    return f"node.{APP}.{region}"


def step(table: RoutingTable, routes: dict[str, ServiceRoute]) -> RoutingTable:
    return table.model_copy(update={"version": table.version + 1, "services": routes, "previous": table.digest()})


def test_active_active_tries_its_own_region_first_and_suspects_last() -> None:
    route = ServiceRoute(primary=REGIONS[0], standbys=REGIONS[1:], epoch=1)
    local = REGIONS[2]
    assert candidates(route, InstanceMode.ACTIVE_ACTIVE, local, lambda r: False) == [local, REGIONS[0], REGIONS[1]]
    assert candidates(route, InstanceMode.ACTIVE_ACTIVE, local, lambda r: r == local)[-1] == local
    assert candidates(route, InstanceMode.ACTIVE_PASSIVE, local, lambda r: False) == [REGIONS[0]], \
        "active-passive: only the table's active instance serves, wherever the citizen is"


def test_hop_by_hop_and_forwarding_headers_never_cross_as_sent() -> None:
    sent = [("Connection", "keep-alive, X-Private"), ("X-Private", "drop me"), ("Keep-Alive", "timeout=5"),
            ("Transfer-Encoding", "chunked"), ("X-Forwarded-For", "6.6.6.6"), ("Forwarded", "for=6.6.6.6"),
            ("X-Paydar-Hop", "1"), ("X-Paydar-Served-By", "elsewhere"), ("Host", "spoofed"),
            ("Cookie", "a=1"), ("Cookie", "b=2"), ("X-Custom", "kept")]
    out = forwarded_headers(sent, peer="127.0.0.1", host="gateway:80", scheme="http", prefix=f"/v1/services/{APP}")
    names = {k.lower() for k in out}
    assert not names & {"connection", "x-private", "keep-alive", "transfer-encoding", "x-paydar-hop",
                        "x-paydar-served-by", "host"}
    assert out.getall("Cookie") == ["a=1", "b=2"] and out["X-Custom"] == "kept"
    assert out.getall("X-Forwarded-For") == ["127.0.0.1"], "the citizen cannot plant an address the app trusts"
    assert out["X-Forwarded-Prefix"] == f"/v1/services/{APP}" and out["Forwarded"].startswith('for="127.0.0.1"')


def test_an_app_cannot_claim_another_region_or_pass_hop_headers_back() -> None:
    answer = [("Content-Length", "5"), ("Connection", "close, X-Internal"), ("X-Internal", "1"),
              ("X-Paydar-Served-By", "forged"), ("Set-Cookie", "s=1"), ("Set-Cookie", "t=2")]
    out = relayed_headers(answer, REGIONS[1])
    assert out.getall(SERVED_BY) == [REGIONS[1]]
    assert "Content-Length" not in out and "X-Internal" not in out and "Connection" not in out
    assert out.getall("Set-Cookie") == ["s=1", "t=2"]


def test_an_instance_judged_down_is_rerouted_in_one_step_and_comes_back() -> None:
    table = initial_table(TOPOLOGY, 0)
    primary = table.route(APP).primary
    assert primary == REGIONS[0]
    routes, changes = plan(table, TOPOLOGY, down={node(primary)}, overrides=Overrides(), views={}, cap=4)
    moved = routes[APP]
    assert [c.kind for c in changes] == ["reroute"] and f"out: {primary}" in changes[0].detail
    assert primary not in moved.regions and moved.primary == REGIONS[1] and moved.epoch == 2
    assert moved.writable, "an app's route is never read-only: its state is its own"
    held = step(table, routes)
    routes, changes = plan(held, TOPOLOGY, down=set(), overrides=Overrides(), views={}, cap=4)
    back = routes[APP]
    assert back.primary == REGIONS[1], "the active instance stays where it is: no flapping back"
    assert set(back.regions) == set(REGIONS) and back.epoch == 3 and f"back: {primary}" in changes[0].detail
    assert plan(step(held, routes), TOPOLOGY, down=set(), overrides=Overrides(), views={}, cap=4)[1] == []


def test_with_no_healthy_instance_the_route_stands() -> None:
    table = initial_table(TOPOLOGY, 0)
    routes, changes = plan(table, TOPOLOGY, down={node(r) for r in REGIONS}, overrides=Overrides(), views={}, cap=4)
    assert routes[APP] == table.route(APP) and not [c for c in changes if c.service == APP]


def test_operators_drain_and_move_an_app_like_a_node() -> None:
    table = initial_table(TOPOLOGY, 0)
    routes, _ = plan(table, TOPOLOGY, down=set(), overrides=Overrides(drained=frozenset({REGIONS[0]})), views={},
                     cap=4)
    assert REGIONS[0] not in routes[APP].regions
    routes, _ = plan(table, TOPOLOGY, down=set(), overrides=Overrides(moves={APP: REGIONS[2]}), views={}, cap=4)
    assert routes[APP].primary == REGIONS[2] and set(routes[APP].regions) == set(REGIONS)


def test_one_lying_prober_can_neither_drain_nor_restore_an_instance() -> None:
    judge = Judge(PROBERS, down_after=1, up_after=1)
    target = node(REGIONS[0])
    honest = {p: {target: True} for p in PROBERS}
    judge.judge_round(honest)
    for _ in range(20):  # one prober claims it down, round after round
        judge.judge_round({**honest, PROBERS[0]: {target: False}})
    assert target not in judge.down()
    down = {p: {target: False} for p in PROBERS}
    for _ in range(3):
        judge.judge_round(down)
    assert target in judge.down()
    for _ in range(20):  # now one prober claims it healthy again
        judge.judge_round({**down, PROBERS[0]: {target: True}})
    assert target in judge.down()


def test_a_canary_answer_is_judged_by_status_and_body() -> None:
    canary = Canary(path="/check?x=1", expect_status=200, body_contains='"eligible": true')
    assert canary_failure(canary, 200, b'{"eligible": true}') is None
    assert canary_failure(canary, 500, b"") == "canary answered 500, expected 200"
    assert canary_failure(canary, 200, b'{"eligible": false}') == "canary answer lacks '\"eligible\": true'"


def test_a_citizen_cannot_plant_a_forwarded_address_or_header_the_app_trusts() -> None:
    sent = [("X-Forwarded-Port", "1"), ("X-Real-IP", "6.6.6.6"), ("X-Forwarded-Server", "x"),
            ("Expect", "100-continue")]
    out = forwarded_headers(sent, peer="127.0.0.1", host='a";for="10.9.9.9', scheme="http", prefix="/p")
    assert "10.9.9.9" not in out["Forwarded"] and out["Forwarded"].count("for=") == 1
    assert not {"X-Forwarded-Port", "X-Real-IP", "X-Forwarded-Server", "Expect"} & set(out)


def test_an_app_header_no_gateway_may_write_is_dropped() -> None:
    out = relayed_headers([("X-A", "a\x01b"), ("X-B", "fine"), ("X-C", "line\nbreak")], REGIONS[0])
    assert "X-A" not in out and "X-C" not in out and out["X-B"] == "fine"


def test_two_instances_given_one_port_are_refused(tmp_path: Path) -> None:
    data = copy.deepcopy(EXAMPLE)
    app = next(s for s in data["services"] if s.get("workload") == "http")
    first, second = app["regions"][:2]
    app["http"]["instances"][first] = {"url": "http://127.0.0.1:8080"}
    app["http"]["instances"][second] = {"url": "http://127.0.0.1:8080"}
    with pytest.raises(BadInput, match=r"has port 8080, as service .* has; give each instance its own port"):
        build_plan(parse_topology(data), tmp_path)
    app["http"]["instances"][second] = {"url": "http://127.0.0.1:8081"}
    ports = PortAllocator()
    plan = build_plan(parse_topology(data), tmp_path, ports)
    assert {8080, 8081} <= ports.taken and plan.node(app["id"], first).port == 8080
    assert sum(1 for c in plan.components if c.port == 8080) == 1, "nobody else is given a URL instance's port"
