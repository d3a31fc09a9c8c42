"""One fully compromised component at a time, against real processes.

Each stand-in plays a component with its real credentials (its own key, its config, its
tokens, its port) and no manners: it sends whatever a compromised component could send, to
whatever it can reach. Each test asserts what the compromise may not achieve.
"""

from __future__ import annotations

import http.client as httpclient
import json
import socket
import stat
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from paydar.chaos.liar import ScriptedProber
from paydar.failover.controller import prevote_payload
from paydar.failover.intents import Intent, IntentAction, SignedIntent
from paydar.infra.local.realizer import Realization
from paydar.model.routing import RoutingTable, SignedTable, sign_table
from paydar.node.chain import GENESIS_HASH, entry_hash
from paydar.node.models import ReplicationBatch, SignedBatch
from paydar.ops.failover import current_table
from paydar.ops.restore import restore
from paydar.probes.models import ObservationRound
from paydar.vault.restore import RestoreRefused
from tests.helpers import ROOT, SERVICE, document, http, state, wait_until
from tests.integration.conftest import SystemFactory, running

pytestmark = pytest.mark.integration


def post(url: str, payload: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    status, body, _ = http("POST", url, raw=payload, headers=headers)
    return status, body


# -- a compromised primary ---------------------------------------------------------------------


def hostile_batch(system: Realization, **change: Any) -> bytes:
    """A batch signed with the primary's real key, continuing nothing in particular."""
    entries = change.pop("entries", [])
    batch = ReplicationBatch(service=SERVICE, sender=f"node.{SERVICE}.tehran", epoch=1, table_version=1,
                             acked_position=0, head_position=9, prev_position=0, prev_hash=GENESIS_HASH,
                             entries=entries, **change)
    signer = system.keystore().signer(f"node.{SERVICE}.tehran")
    return SignedBatch(batch=batch, signature=signer.sign(batch.model_dump(mode="json"))).model_dump_json().encode()


def entry(position: int, epoch: int, prev: str, text: str) -> dict[str, Any]:
    digest = entry_hash(SERVICE, position, epoch, f"x{position}", text, prev, 1)
    return {"position": position, "epoch": epoch, "doc_id": f"x{position}", "body": text, "prev_hash": prev,
            "hash": digest, "written_ms": 1}


def test_a_hostile_primary_cannot_brick_its_standby(start_system: SystemFactory) -> None:
    system = start_system()
    standby = system.plan.node(SERVICE, "isfahan").url
    ok_body = json.dumps({"citizen_id": "0012345678", "kind": "diploma", "data": {}})
    first = entry(1, 1, GENESIS_HASH, ok_body)
    attacks = {
        "gap": [first, entry(3, 1, first["hash"], ok_body)],
        "future epoch": [entry(1, 7, GENESIS_HASH, ok_body)],
        "non-JSON body": [entry(1, 1, GENESIS_HASH, "{not json")],
    }
    for name, entries in attacks.items():
        status, body = post(standby + "/v1/replicate", hostile_batch(system, entries=entries),
                            {"Content-Type": "application/json"})
        assert status == 400 and f"replication from node.{SERVICE}.tehran refused" in body["error"], (name, body)
    raw = json.loads(hostile_batch(system))
    raw["batch"]["sender"] = "node.1101.nowhere"
    status, body = post(standby + "/v1/replicate", json.dumps(raw).encode(), {"Content-Type": "application/json"})
    assert status == 403 and "holds no trusted node key" in body["error"]
    raw["batch"]["prev_position"] = 2**70
    status, body = post(standby + "/v1/replicate", json.dumps(raw).encode(), {"Content-Type": "application/json"})
    assert status == 400 and "prev_position" in body["error"]
    assert state(system, f"node.{SERVICE}.isfahan")["compromised"] is None, \
        "the standby does not believe its own data compromised"
    assert all(http("GET", standby + f"/v1/documents/x{n}")[0] == 404 for n in (1, 3)), "nothing hostile was stored"
    token = system.admin_token(f"node.{SERVICE}.isfahan")
    status, check = post(standby + "/v1/integrity", b"", {"Authorization": f"Bearer {token}"})
    assert status == 200 and check["ok"], check
    assert http("GET", standby + "/readyz")[0] == 200


def test_bad_input_gets_a_4xx_that_names_it(start_system: SystemFactory) -> None:
    system = start_system()
    node = system.plan.node(SERVICE, "tehran").url
    gateway = system.plan.gateway("tehran").url
    nan_table = b'{"table": {"version": 9, "issued_at": NaN, "expires_at": Infinity, "services": {}}, "signatures": []}'
    for component in ("node.1101.tehran", "gateway.isfahan", "controller.mashhad"):
        url = system.plan.component(component).url
        status, body = post(url + "/v1/routing-table", nan_table, {"Content-Type": "application/json"})
        assert status == 403 and body["reason"] == "malformed" and "finite" in body["error"], (component, body)
    status, body = post(system.plan.component("controller.mashhad").url + "/v1/proposals", nan_table,
                        {"Content-Type": "application/json"})
    assert status == 400 and "finite" in body["error"]
    assert http("GET", node + f"/v1/chain/{2**70}")[0] == 400
    for doc in ("x%0A", "x%0Ay"):  # a trailing newline must not alias to another document
        assert http("PUT", gateway + f"/v1/services/{SERVICE}/documents/{doc}", document(1))[0] == 400
        assert http("PUT", node + f"/v1/documents/{doc}", document(1))[0] == 400
    nan_doc = b'{"citizen_id": "0012345678", "kind": "diploma", "data": {"x": NaN}}'
    status, body, _ = http("PUT", gateway + f"/v1/services/{SERVICE}/documents/nan", raw=nan_doc)
    assert status == 400 and "finite" in body["error"]
    assert http("GET", gateway + f"/v1/services/{SERVICE}/documents/nan")[0] == 404, "nothing was stored as null"


# -- exhaustion without credentials ----------------------------------------------------------


def chunked_put(url: str, path: str, body: bytes) -> int:
    host, port = url.removeprefix("http://").split(":")
    conn = httpclient.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.putrequest("PUT", path)
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        for start in range(0, len(body), 16384):
            piece = body[start:start + 16384]
            conn.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        conn.send(b"0\r\n\r\n")
        return conn.getresponse().status
    except (ConnectionError, OSError):
        return 0  # the server closed the connection on us: nothing was accepted either
    finally:
        conn.close()


def test_floods_cost_bounded_resources_and_never_compromise(start_system: SystemFactory) -> None:
    system = start_system()
    node = system.plan.node(SERVICE, "isfahan").url
    big = json.dumps({"citizen_id": "0012345678", "kind": "diploma", "data": {"x": "a" * 200_000}}).encode()
    assert chunked_put(node, "/v1/documents/big", big) in (413, 0), "a chunked body is counted as it is read"
    assert http("GET", system.plan.gateway("isfahan").url + f"/v1/services/{SERVICE}/documents/big")[0] == 404
    table = http("GET", node + "/v1/routing-table")[1]
    table["signatures"] = table["signatures"] * 12_000  # 24,000 signatures
    status, body = post(node + "/v1/routing-table", json.dumps(table).encode(), {"Content-Type": "application/json"})
    assert status == 403 and body["reason"] == "malformed" and "at most 64" in body["error"]
    host, port = node.removeprefix("http://").split(":")
    sockets = []
    try:
        for _ in range(1100):  # beyond the per-peer cap of 1024: every peer here is 127.0.0.1
            s = socket.create_connection((host, int(port)), timeout=5)
            sockets.append(s)
        refused = 0
        for s in sockets[-50:]:
            s.settimeout(2)
            try:
                refused += s.recv(1) == b""
            except (ConnectionError, TimeoutError):
                refused += 1
        assert refused >= 40, "connections beyond the cap are closed at the door"
    finally:
        for s in sockets:
            s.close()
    wait_until(lambda: http("GET", node + "/readyz", timeout=3)[0] == 200, 20, "the node to answer readyz again")
    assert state(system, f"node.{SERVICE}.isfahan")["compromised"] is None, "overload is never compromise"


def test_a_half_sent_body_is_dropped(start_system: SystemFactory) -> None:
    system = start_system()
    host, port = system.plan.node(SERVICE, "isfahan").url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(b"PUT /v1/documents/slow HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 1000\r\n\r\n{\"citizen")
        started = time.monotonic()
        answer = s.recv(4096)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
    assert time.monotonic() - started < 25, "the sender's stall is bounded by the body timeout"


# -- a compromised controller ------------------------------------------------------------------


def test_a_rogue_controller_can_neither_act_as_operator_nor_inflate_epochs(start_system: SystemFactory) -> None:
    system = start_system()
    rogue = system.keystore().signer("controller.mashhad")
    honest = [system.plan.component(f"controller.{r}").url for r in ("tehran", "isfahan")]
    intent = Intent.new(IntentAction.PROMOTE, "isfahan", SERVICE, time.time())
    forged = SignedIntent.seal(intent, rogue).model_dump_json().encode()
    for url in honest:
        status, body = post(url + "/v1/intents", forged, {"Content-Type": "application/json"})
        assert status == 403 and "not signed by an operator key" in body["error"]
        legacy = json.dumps({"action": "promote", "region": "isfahan", "service": SERVICE}).encode()
        token = system.admin_token(f"node.{SERVICE}.mashhad")  # every credential it could have been given
        status, _ = post(url + "/v1/intents", legacy, {"Content-Type": "application/json",
                                                       "Authorization": f"Bearer {token}"})
        assert status == 400
    held = current_table(system).table
    route = held.services[SERVICE]
    wanted = {
        "inflated epoch": route.model_copy(update={"epoch": 1_000_004}),
        "another primary": route.model_copy(update={"primary": "isfahan", "standbys": ("tehran", "mashhad"),
                                                    "epoch": route.epoch + 1}),
    }
    for name, rogue_route in wanted.items():
        now = time.time()
        proposal = RoutingTable(version=held.version + 1, issued_at=now,
                                expires_at=now + system.topology.control.table_ttl,
                                previous=held.digest(), reason=f"rogue: {name}",
                                services={**held.services, SERVICE: rogue_route})
        offer = sign_table(proposal, [rogue]).model_dump_json().encode()
        asked = SignedTable(table=proposal, signatures=(rogue.sign(prevote_payload(proposal)),))
        for url in honest:
            status, body = post(url + "/v1/proposals", offer, {"Content-Type": "application/json"})
            assert status == 409 and "not co-signed" in body["error"], (name, body)
            status, body = post(url + "/v1/prevotes", asked.model_dump_json().encode(),
                                {"Content-Type": "application/json"})
            assert status == 409 and "would not co-sign" in body["error"], (name, body)
            # A pre-vote's signature is no table signature: replayed as a proposal, it is unsigned.
            status, body = post(url + "/v1/proposals", asked.model_dump_json().encode(),
                                {"Content-Type": "application/json"})
            assert status == 409 and "carries no valid controller signature" in body["error"], (name, body)
    assert current_table(system).table.version == held.version, "nothing moved"


def four_region_topology(path: Path) -> Path:
    data = yaml.safe_load((ROOT / "national.yaml").read_text())
    data["regions"].append({"name": "shiraz", "display_name": "Shiraz"})
    data["control"]["threshold"] = 3
    data["services"] = [s | {"regions": ["tehran", "isfahan", "mashhad", "shiraz"], "sync_replicas": 1}
                        for s in data["services"] if s["id"] == SERVICE]
    path.write_text(yaml.safe_dump(data))
    return path


def test_two_certified_primaries_of_one_epoch_never_both_acknowledge(tmp_path: Path) -> None:
    """The data-plane backstop: controllers equivocated (one signed two tables), yet with
    acknowledgement by a majority of the 4 replicas neither camp of 2 can acknowledge."""
    with running(four_region_topology(tmp_path / "four.yaml"), tmp_path / "state") as system:
        rpc = system.supervisor.rpc().supervisor
        for component in system.plan.components:
            if component.kind.value in ("controller", "prober"):
                rpc.stopProcess(component.id, True)
        held = current_table(system).table
        keys = system.keystore()
        route = held.services[SERVICE]

        def fork(primary: str, signers: list[str]) -> SignedTable:
            moved = route.model_copy(update={"primary": primary, "epoch": route.epoch + 1,
                                             "standbys": tuple(r for r in route.regions if r != primary)})
            table = held.model_copy(update={"version": held.version + 1, "previous": held.digest(),
                                            "issued_at": time.time(), "services": {SERVICE: moved}})
            return sign_table(table, [keys.signer(f"controller.{s}") for s in signers])

        camps = {"tehran": (fork("tehran", ["tehran", "isfahan", "mashhad"]), ("tehran", "isfahan")),
                 "mashhad": (fork("mashhad", ["mashhad", "shiraz", "isfahan"]), ("mashhad", "shiraz"))}
        split = True
        for signed, regions in camps.values():
            for region in regions:
                status, body = post(system.plan.node(SERVICE, region).url + "/v1/routing-table",
                                    signed.model_dump_json().encode(), {"Content-Type": "application/json"})
                # A node may hear the first camp's table from a peer before the second camp's push
                # reaches it: it then refuses that push as equivocation, and the camps are 3 and 1.
                assert status == 200 or (status == 403 and body.get("reason") == "equivocation"), body
                split = split and status == 200
        outcomes = {}
        for primary in camps:
            status, body, _ = http("PUT", system.plan.node(SERVICE, primary).url + "/v1/documents/split",
                                   document(5, primary))
            outcomes[primary] = (status, body)
        acknowledged = [p for p, (status, body) in outcomes.items() if status == 200 and body.get("acknowledged")]
        assert len(acknowledged) <= 1, f"two primaries of one epoch both acknowledged: {outcomes}"
        if split:
            assert acknowledged == [], "with camps of 2 of 4 replicas neither reaches a majority"
            assert all(status == 503 and "NOT acknowledged" in body["error"] for status, body in outcomes.values()), \
                outcomes
        evidence = [p for r in system.topology.service(SERVICE).regions for p in
                    (system.layout.data(f"node.{SERVICE}.{r}") / "evidence").glob("equivocation-*.json")]
        assert evidence, "a primary that heard the other camp's table kept the evidence"
        record = json.loads(evidence[0].read_text())
        double = sorted(keys.signer(f"controller.{r}").key_id for r in ("isfahan", "mashhad"))
        assert record["double_signers"] == double, \
            "the two controllers that signed both tables are named"


# -- a compromised prober ----------------------------------------------------------------------


def test_a_poisoning_prober_costs_only_its_own_vote(start_system: SystemFactory) -> None:
    system = start_system()

    def poison(body: ObservationRound) -> ObservationRound:
        if body.round % 2:
            return body.model_copy(update={"tables": {999: ("node.", "node.9999.nowhere")}})
        future = time.time() + 10**6
        return body.model_copy(update={"started_at": future, "finished_at": future})

    with ScriptedProber(system, "mashhad", lambda *_: True, poison) as liar:
        wait_until(lambda: liar.served >= 10, 20, "ten poisoned rounds")
        rpc = system.supervisor.rpc().supervisor
        rpc.stopProcess(f"node.{SERVICE}.tehran", True)
        moved = wait_until(lambda: (r := state(system, "gateway.isfahan")["services"][SERVICE])["primary"]
                           not in (None, "tehran") and r, 30, "a failover despite the poisoning prober")
    assert moved["mode"] == "read-write"
    with urllib.request.urlopen(system.plan.component("controller.isfahan").url + "/metrics", timeout=5) as answer:
        scrape = answer.read().decode()
    refused = [line for line in scrape.splitlines() if line.startswith("paydar_controller_observations_refused_total")
               and 'prober="prober.mashhad"' in line and 'reason="invalid"' in line]
    assert refused and float(refused[0].rsplit(" ", 1)[1]) >= 5, "each poisoned round was refused and counted"


# -- credentials are per component --------------------------------------------------------------


def test_each_credential_opens_only_its_own_component(start_system: SystemFactory) -> None:
    system = start_system()
    tehran = system.plan.node(SERVICE, "tehran").url
    foreign = system.admin_token(f"node.{SERVICE}.isfahan")
    status, _ = post(tehran + "/v1/integrity", b"", {"Authorization": f"Bearer {foreign}"})
    assert status == 401, "another node's admin token does not open this node"
    own = system.admin_token(f"node.{SERVICE}.tehran")
    assert post(tehran + "/v1/integrity", b"", {"Authorization": f"Bearer {own}"})[0] == 200
    a, b = system.plan.link("tehran", "isfahan"), system.plan.link("isfahan", "tehran")
    status, _, _ = http("GET", b.admin_url + "/v1/link", headers={"Authorization": f"Bearer {system.link_token(a.id)}"})
    assert status == 401, "one link proxy's token does not open another"
    for private in (system.layout.root / "data", system.layout.restores, system.layout.vault_dir,
                    system.layout.secrets):
        assert stat.S_IMODE(private.stat().st_mode) == 0o700, private


# -- operator tooling and a lying gateway ----------------------------------------------------------


def test_operator_tooling_ignores_a_lying_gateways_table(start_system: SystemFactory) -> None:
    system = start_system()
    held = current_table(system)
    lie = held.table.model_copy(update={"version": held.table.version + 50, "services": {
        SERVICE: held.table.services[SERVICE].model_copy(update={"primary": "isfahan", "epoch": 90,
                                                                 "standbys": ("tehran", "mashhad")})}})
    forged = sign_table(lie, [system.keystore().signer("gateway.isfahan")]).model_dump_json().encode()

    class Liar(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(forged)))
            self.end_headers()
            self.wfile.write(forged)

        def log_message(self, *_: object) -> None:
            pass

    system.supervisor.rpc().supervisor.stopProcess("gateway.isfahan", True)
    server = ThreadingHTTPServer(("127.0.0.1", system.plan.gateway("isfahan").port), Liar)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert current_table(system).table.version == held.table.version, "the forged table does not count"
        with pytest.raises(RestoreRefused, match="writable primary"):
            restore(system, service=SERVICE, region="tehran")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


# -- a compromised link (or a process squatting a port) ------------------------------------------


class TamperingLink:
    """Holds one route port of a stopped link proxy and answers as ``rewrite`` says:
    ``rewrite(method, path, request_body, upstream) -> (status, body)``, where ``upstream``
    forwards the request to the real target."""

    def __init__(self, system: Realization, source: str, target: str, component: str, rewrite: Any) -> None:
        link = system.plan.link(source, target)
        if system.supervisor.rpc().supervisor.getProcessInfo(link.id)["statename"] == "RUNNING":
            system.supervisor.rpc().supervisor.stopProcess(link.id, True)
        target_url = system.plan.component(component).url
        self.seen = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""

                def upstream() -> tuple[int, bytes]:
                    request = urllib.request.Request(target_url + self.path, data=body or None, method=self.command,
                                                     headers={"Content-Type": "application/json"})
                    try:
                        with urllib.request.urlopen(request, timeout=5) as answer:
                            return answer.status, answer.read()
                    except urllib.error.HTTPError as exc:
                        return exc.code, exc.read()

                outer.seen += 1
                status, payload = rewrite(self.command, self.path, body, upstream)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_PUT = do_POST = _any

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", link.routes[component]), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> TamperingLink:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


def test_a_tampering_link_gets_no_write_acknowledged(start_system: SystemFactory) -> None:
    system = start_system()
    rpc = system.supervisor.rpc().supervisor
    rpc.stopProcess(f"node.{SERVICE}.mashhad", True)  # isfahan is now the only standby that can acknowledge
    mashhad_key = system.keystore().signer(f"node.{SERVICE}.mashhad")

    def fake_ok(method: str, path: str, body: bytes, upstream: Any) -> tuple[int, bytes]:
        if path != "/v1/replicate":
            answer: tuple[int, bytes] = upstream()
            return answer
        batch = json.loads(body)
        entries = batch["batch"]["entries"]
        reply = {"status": "ok", "standby": f"node.{SERVICE}.isfahan", "batch_signature": batch["signature"]["sig"],
                 "matched": entries[-1]["position"] if entries else batch["batch"]["prev_position"],
                 "matched_hash": entries[-1]["hash"] if entries else batch["batch"]["prev_hash"],
                 "position": 0, "head_hash": "0" * 64, "epoch": batch["batch"]["epoch"], "table_version": 1}
        # Signed with another standby's real key: the best a compromised peer could do.
        signed = {"reply": reply, "signature": mashhad_key.sign(reply).model_dump()}
        return 200, json.dumps(signed).encode()

    with TamperingLink(system, "tehran", "isfahan", f"node.{SERVICE}.isfahan", fake_ok) as link:
        status, body, _ = http("PUT", system.plan.node(SERVICE, "tehran").url + "/v1/documents/phantom",
                               document(3, "phantom"))
        assert link.seen > 0, "the primary replicated through the tampering link"
    assert status == 503 and "NOT acknowledged" in body["error"], (status, body)
    assert http("GET", system.plan.node(SERVICE, "isfahan").url + "/v1/documents/phantom")[0] == 404


def test_a_gateway_serves_only_documents_whose_receipt_verifies(start_system: SystemFactory) -> None:
    system = start_system()
    gateway = system.plan.gateway("isfahan").url
    status, _written, _ = http("PUT", system.plan.gateway("tehran").url + f"/v1/services/{SERVICE}/documents/d1",
                              document(1, "genuine"))
    assert status == 200
    wait_until(lambda: http("GET", system.plan.node(SERVICE, "isfahan").url + "/v1/documents/d1")[0] == 200, 10,
               "isfahan's replica to hold d1")

    def forge(method: str, path: str, body: bytes, upstream: Any) -> tuple[int, bytes]:
        status, payload = upstream()
        if method == "GET" and status == 200 and "/v1/documents/" in path:
            changed = json.loads(payload)
            changed["proof"]["entry"]["body"] = changed["proof"]["entry"]["body"].replace("genuine", "forged")
            changed["data"]["tag"] = "forged"
            return 200, json.dumps(changed).encode()
        return status, payload

    with TamperingLink(system, "isfahan", "tehran", f"node.{SERVICE}.tehran", forge) as link:
        status, got, headers = http("GET", gateway + f"/v1/services/{SERVICE}/documents/d1")
        assert link.seen > 0
    assert status == 200 and got["data"]["tag"] == "genuine", got
    assert headers["X-Paydar-Served-By"] == "isfahan" and got["stale"] is True, \
        "the forged answer was dropped and the local replica's proven copy served, marked stale"
    with urllib.request.urlopen(gateway + "/metrics", timeout=5) as answer:
        scrape = answer.read().decode()
    assert 'paydar_gateway_unproven_answers_total{region="isfahan",target_region="tehran"} 1.0' in scrape

    # A replay: the link answers with a genuine, validly signed answer it recorded before the
    # document changed. The receipt names another request's nonce, so it is not served.
    recorded: dict[str, bytes] = {}

    def record(method: str, path: str, body: bytes, upstream: Any) -> tuple[int, bytes]:
        status, payload = upstream()
        if method == "GET" and status == 200 and path.endswith("/v1/documents/d1"):
            recorded.setdefault("old", payload)
            return 200, recorded["old"]
        return status, payload

    with TamperingLink(system, "isfahan", "tehran", f"node.{SERVICE}.tehran", record):
        assert http("GET", gateway + f"/v1/services/{SERVICE}/documents/d1")[0] == 200
        assert http("PUT", system.plan.gateway("tehran").url + f"/v1/services/{SERVICE}/documents/d1",
                    document(1, "newer"))[0] == 200
        wait_until(lambda: http("GET", system.plan.node(SERVICE, "isfahan").url + "/v1/documents/d1")[1]
                   .get("data", {}).get("tag") == "newer", 10, "isfahan's replica to hold the newer version")
        status, got, _ = http("GET", gateway + f"/v1/services/{SERVICE}/documents/d1")
    assert status == 200 and got["data"]["tag"] == "newer", "the replayed old version was not served"


# -- the full-compromise cells of the N-1 matrix -------------------------------------------------


@pytest.mark.timeout(300)
def test_the_full_compromise_cells_of_the_matrix_hold(start_system: SystemFactory) -> None:
    from paydar.chaos.catalog import run_experiments
    from paydar.chaos.matrix import cells, experiment

    system = start_system()
    only = ("link.isfahan.tehran:tamper", "controller.mashhad:equivocate", "prober.isfahan:poison",
            f"node.{SERVICE}@primary:byzantine-primary", "vault:side-door")
    planned = [(cell.name, experiment(cell, dwell=1.0)) for cell in cells(system, only)]
    assert len(planned) == len(only)
    results = run_experiments(system, planned)
    broken = {r.name: (r.status, r.unmet, r.failed_activities) for r in results if not r.held}
    assert broken == {}, broken
    assert all(r.steady_after for r in results)
