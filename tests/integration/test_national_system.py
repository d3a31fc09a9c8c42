"""The national system in a box, on the shared healthy system: API, replication, tables, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from paydar.infra.local.realizer import AlreadyRunning, Realization, up
from paydar.model.routing import RoutingTable, ServiceRoute, SignedTable, sign_table
from tests.helpers import ROOT, document, http, wait_until

pytestmark = pytest.mark.integration


def paydar(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "paydar", *args], capture_output=True, text=True, timeout=60,
                          cwd=ROOT, check=False)


def gw(national: Realization, region: str) -> str:
    return national.plan.gateway(region).url


def test_every_component_is_ready_and_loopback_only(national: Realization) -> None:
    # `up` returns once every component answers; controllers find their peers' quorum on
    # their next peer ping, so "all ready" is awaited (bounded), not assumed at once.
    result = wait_until(lambda: (r := paydar("status", "--state-dir", str(national.layout.root), "--json"))
                        .returncode == 0 and r, 20, "paydar status to report every component ready")
    rows = json.loads(result.stdout)
    assert len(rows) == len(national.plan.components) == 3 + 12 + 3 + 3 + 6 + 1
    assert {r["health"] for r in rows} == {"ready"}
    assert {r["process"] for r in rows} == {"RUNNING"}
    primaries = {(r["service"], r["region"]) for r in rows if r["role"] == "primary"}
    assert primaries == {(s.id, s.home) for s in national.topology.services}
    listening = subprocess.run(["ss", "-Htlnp"], capture_output=True, text=True, check=False).stdout
    ours = {c.port for c in national.plan.components}
    for line in listening.splitlines():
        local = line.split()[3]
        host, _, port = local.rpartition(":")
        if int(port) in ours:
            assert host in ("127.0.0.1", "[::ffff:127.0.0.1]"), line


def test_second_up_on_running_state_dir_says_so(national: Realization) -> None:
    with pytest.raises(AlreadyRunning, match="already running"):
        up(ROOT / "national.yaml", national.layout.root)


def test_keys_are_private_and_never_logged(national: Realization) -> None:
    keys = list(national.layout.keys.iterdir())
    assert len(keys) == 12 + 3 + 3 + 3 + 1, "one per node, gateway, prober, controller, and the operator's"
    assert all((k.stat().st_mode & 0o777) == 0o600 for k in keys)
    for config in (national.layout.root / "config").glob("*.json"):
        text = config.read_text()
        assert "operator.key" not in text, f"{config.name} names the operator key"
        own = config.stem
        named = [t for t in (national.layout.secrets / "admin").glob("*.token") if str(t) in text]
        assert all(t.stem == own for t in named), f"{config.name} names another component's admin credential"
    secrets = [k.read_text().splitlines()[1] for k in keys]
    logs = "".join(p.read_text(errors="replace") for p in (national.layout.root / "logs").glob("*.log"))
    assert not any(secret in logs for secret in secrets)


def test_write_through_every_gateway_read_through_every_gateway(national: Realization) -> None:
    for i, writer in enumerate(national.topology.region_names):
        for service in national.topology.services:
            doc_id = f"every-{writer}-{service.id}"
            status, body, headers = http("PUT", f"{gw(national, writer)}/v1/services/{service.id}/documents/{doc_id}",
                                         document(i))
            assert status == 200 and body["acknowledged"] is True, body
            assert headers["X-Paydar-Served-By"] == service.home
            for reader in national.topology.region_names:
                status, got, _ = http("GET", f"{gw(national, reader)}/v1/services/{service.id}/documents/{doc_id}")
                assert status == 200 and got["data"] == document(i)["data"] and got["stale"] is False


def test_write_is_on_a_standby_when_acknowledged(national: Realization) -> None:
    service = national.topology.services[1]
    status, body, _ = http("PUT", f"{gw(national, 'tehran')}/v1/services/{service.id}/documents/sync-1", document(7))
    assert status == 200
    holders = []
    for region in service.regions[1:]:
        code, got, _ = http("GET", f"{national.plan.node(service.id, region).url}/v1/documents/sync-1")
        if code == 200:
            assert got["position"] == body["position"] and got["stale"] is True
            holders.append(region)
    assert len(holders) >= service.sync_replicas


def test_listing_by_citizen(national: Realization) -> None:
    service = national.topology.services[2]
    for n in range(3):
        http("PUT", f"{gw(national, 'isfahan')}/v1/services/{service.id}/documents/list-{n}", document(4242))
    status, body, _ = http("GET", f"{gw(national, 'mashhad')}/v1/services/{service.id}/documents?citizen_id=0000004242")
    assert status == 200 and [d["doc_id"] for d in body["documents"]] == ["list-0", "list-1", "list-2"]


@pytest.mark.parametrize(("method", "path", "body", "status", "message"), [
    ("PUT", "/v1/services/1101/documents/x1", {"citizen_id": "12", "kind": "diploma"}, 400, "citizen_id"),
    ("PUT", "/v1/services/1101/documents/x1", {"citizen_id": "0012345678", "kind": "spell"}, 400, "kind"),
    ("PUT", "/v1/services/1101/documents/x1", {"citizen_id": "0012345678", "kind": "diploma", "x": 1}, 400,
     "Extra inputs"),
    ("PUT", "/v1/services/1101/documents/x1", "not an object", 400, "invalid request body"),
    ("PUT", "/v1/services/1101/documents/bad$id", {"citizen_id": "0012345678", "kind": "diploma"}, 400,
     "invalid document id"),
    ("PUT", "/v1/services/9999/documents/x1", {"citizen_id": "0012345678", "kind": "diploma"}, 404,
     "unknown service '9999'"),
    ("GET", "/v1/services/1101/documents/never-written", None, 404, "no document"),
    ("GET", "/v1/services/1101/documents?citizen_id=abc", None, 400, "10-digit"),
])
def test_malformed_requests_get_clear_4xx(national: Realization, method: str, path: str, body: object,
                                          status: int, message: str) -> None:
    code, answer, _ = http(method, gw(national, "tehran") + path, body)
    assert code == status and message in answer["error"], answer


def test_oversized_and_non_json_bodies(national: Realization) -> None:
    url = f"{gw(national, 'tehran')}/v1/services/1101/documents/big"
    big = {"citizen_id": "0012345678", "kind": "diploma", "data": {"blob": "x" * 70_000}}
    code, answer, _ = http("PUT", url, big)
    assert code == 413, answer
    code, answer, _ = http("PUT", national.plan.node("1101", "tehran").url + "/v1/documents/big", big)
    assert code == 413 and "exceeds the 65536 byte limit" in answer["error"]
    code, answer, _ = http("PUT", national.plan.node("1101", "tehran").url + "/v1/documents/t", raw=b"{",
                           headers={"Content-Type": "text/plain"})
    assert code == 415 and "Content-Type: application/json" in answer["error"]
    code, _, _ = http("GET", f"{gw(national, 'tehran')}/v1/services/1101/documents/big")
    assert code == 404, "a refused write changed nothing"


def _table(national: Realization, **changes: object) -> RoutingTable:
    held = SignedTable.model_validate_json(national.layout.table.read_bytes()).table
    return held.model_copy(update={"version": held.version + 100, "expires_at": time.time() + 600, **changes})


def _signed(national: Realization, table: RoutingTable, controllers: list[str]) -> str:
    keystore = national.keystore()
    return sign_table(table, [keystore.signer(f"controller.{r}") for r in controllers]).model_dump_json()


def test_tables_that_must_be_refused_by_nodes_and_gateways(national: Realization) -> None:
    rogue_routes = {s.id: ServiceRoute(primary="mashhad", standbys=tuple(r for r in s.regions if r != "mashhad"),
                                       epoch=50) for s in national.topology.services}
    rogue = _table(national, services=rogue_routes)
    expired = _table(national, expires_at=time.time() - 5)
    held_version = SignedTable.model_validate_json(national.layout.table.read_bytes()).table.version
    old = _table(national, version=max(1, held_version - 1) if held_version > 1 else 1)
    cases = [
        (_signed(national, rogue, ["tehran"]), 403, "under-signed"),        # one stolen controller key
        (SignedTable(table=rogue).model_dump_json(), 403, "under-signed"),   # unsigned
        (_signed(national, expired, ["tehran", "isfahan"]), 403, "expired"),
        (_signed(national, old, ["tehran", "isfahan"]), 409, "not-newer"),  # rollback / replay
        ("{not json", 403, "malformed"),
    ]
    targets = [national.plan.gateway("tehran").url, national.plan.node("1101", "isfahan").url]
    for raw, status, reason in cases:
        for url in targets:
            code, answer, _ = http("POST", url + "/v1/routing-table", raw=raw.encode())
            assert (code, answer.get("reason")) == (status, reason), (url, answer)
    for url in targets:
        code, state, _ = http("GET", url + "/state")
        assert state["table_version"] == held_version, "no refused table changed anything"


def test_standby_refuses_replication_signed_by_a_foreign_key(national: Realization) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from paydar.model.signing import Signer
    from paydar.node.models import ReplicationBatch, SignedBatch

    batch = ReplicationBatch(service="1101", sender="node.1101.tehran", epoch=1, table_version=1, acked_position=0,
                             head_position=0, prev_position=0, prev_hash="0" * 64)
    stranger = Signer(Ed25519PrivateKey.generate())
    forged = SignedBatch(batch=batch, signature=stranger.sign(batch.model_dump(mode="json")))
    code, answer, _ = http("POST", national.plan.node("1101", "isfahan").url + "/v1/replicate",
                           raw=forged.model_dump_json().encode())
    assert code == 403 and "signed by another key" in answer["error"]


def test_metrics_are_prometheus_text(national: Realization) -> None:
    import urllib.request

    with urllib.request.urlopen(national.plan.node("1101", "tehran").url + "/metrics", timeout=5) as response:
        text = response.read().decode()
        assert response.headers["Content-Type"].startswith("text/plain")
    assert 'paydar_node_role{paydar_node_role="primary",region="tehran",service="1101"} 1.0' in text
    assert "paydar_node_write_duration_seconds_bucket" in text


def test_validate_cli(tmp_path: Path) -> None:
    good = paydar("validate", str(ROOT / "national.yaml"))
    assert good.returncode == 0 and "valid" in good.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "national.yaml").read_text().replace("regions: [tehran, isfahan, mashhad]",
                                                                "regions: [tehran, shiraz]"))
    result = paydar("validate", str(bad))
    assert result.returncode == 2
    assert "unknown region 'shiraz'" in result.stderr and "hint:" in result.stderr


def test_destructive_commands_show_a_dry_run_and_refuse_to_act_unconfirmed(national: Realization) -> None:
    from paydar.ops.failover import current_table

    state = ("--state-dir", str(national.layout.root))
    held = current_table(national).table
    service = national.topology.services[0].id
    route = held.route(service)
    standby = next(r for r in route.regions if r != route.primary)
    dry = paydar("failover", "promote", "--service", service, "--region", standby, *state, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"promote node.{service}.{standby} (primary now {route.primary}, epoch {route.epoch}" in dry.stdout
    assert "the safety check says now: candidate holds every acknowledged write" in dry.stdout
    assert "Nothing was changed." in dry.stdout
    drain = paydar("failover", "drain", "--region", str(route.primary), *state, "--dry-run")
    assert drain.returncode == 0 and f"move every primary out of {route.primary}" in drain.stdout
    rotate = paydar("keys", "rotate", "--component", f"controller.{standby}", *state, "--dry-run")
    key = national.keystore().signer(f"controller.{standby}").key_id
    assert rotate.returncode == 0 and f"replace the key of controller.{standby} (key id {key})" in rotate.stdout
    restore = paydar("restore", "--service", service, "--region", standby, *state, "--dry-run")
    assert restore.returncode == 0 and f"rebuild node.{service}.{standby} from the newest verified backup" \
        in restore.stdout
    primary = paydar("restore", "--service", service, "--region", str(route.primary), *state, "--dry-run")
    assert primary.returncode == 1 and "is the writable primary" in primary.stderr, "refused as the restore would be"
    unconfirmed = paydar("failover", "fence", "--service", service, "--region", standby, *state)
    assert unconfirmed.returncode == 2 and "pass --yes to confirm" in unconfirmed.stderr
    unknown = paydar("failover", "drain", "--region", "nowhere", *state, "--dry-run")
    assert unknown.returncode == 2 and "unknown region 'nowhere'" in unknown.stderr
    assert current_table(national).table == held, "no dry run and no unconfirmed command changed the table"
    assert national.keystore().signer(f"controller.{standby}").key_id == key
