"""`workload: http` services: every field validated with its location; `paydar up` refuses an
instance URL it cannot reach locally, and `paydar plan` refuses what production cannot render yet,
both changing nothing."""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import yaml
from click.testing import CliRunner

from paydar.chaos.roles import Role, pick
from paydar.cli import cli
from paydar.infra.local.plan import build_plan
from paydar.infra.local.realizer import Realization, up
from paydar.infra.production.plan import load_stack
from paydar.model.errors import BadInput, TopologyError
from paydar.model.routing import initial_table
from paydar.model.topology import InstanceMode, WorkloadKind, parse_topology
from paydar.ops.backups import select_nodes
from paydar.ops.keys import preview_rotation

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE: dict[str, Any] = yaml.safe_load((ROOT / "national.yaml").read_text())
REGIONS = [r["name"] for r in EXAMPLE["regions"]]


def with_http(**changes: Any) -> dict[str, Any]:
    """The example plus an HTTP service in the first two regions, changed by ``changes``."""
    data = copy.deepcopy(EXAMPLE)
    template = {k: v for k, v in data["services"][0].items() if k not in ("sync_replicas", "id", "name")}
    http = {"instances": {region: {"command": ["python", "-m", "app", "--port", "{port}", "--region", "{region}"]}
                          for region in REGIONS[:2]},
            "health_path": "/healthz", "canary": {"path": "/eligibility?household=4", "body_contains": "eligible"},
            "mode": "active-passive", "limits": {"max_body_bytes": 4096, "timeout": "5s", "max_concurrency": 8}}
    service = template | {"id": "h1", "name": "Subsidy eligibility", "workload": "http", "regions": REGIONS[:2],
                          "http": http}
    for key, value in changes.items():
        target, field = (http, key.removeprefix("http_")) if key.startswith("http_") else (service, key)
        if value is None:
            target.pop(field, None)
        else:
            target[field] = value
    data["services"].append(service)
    return data


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(TopologyError) as caught:
        parse_topology(data, source="<test>")
    return [f"{i.location}: {i.message}" for i in caught.value.issues]


def test_an_http_service_validates_with_its_instances_canary_mode_and_bounds() -> None:
    service = parse_topology(with_http(), source="<test>").service("h1")
    assert service.workload is WorkloadKind.HTTP and service.http is not None
    assert service.http.mode is InstanceMode.ACTIVE_PASSIVE and service.http.limits.timeout == 5.0
    assert service.http.canary.method == "GET" and service.http.canary.expect_status == 200
    url = with_http(http_instances={REGIONS[0]: {"url": "http://127.0.0.1:8080"}, REGIONS[1]: {"url": "http://x:1"}})
    assert parse_topology(url, source="<test>").service("h1").http is not None


@pytest.mark.parametrize(("changes", "expected"), [
    ({"http_instances": {REGIONS[0]: {"command": ["app", "{port}"]}}},
     f"services[4] (id 'h1').http.instances: no instance for region '{REGIONS[1]}'"),
    ({"http_instances": {r: {"command": ["app", "{port}"]} for r in REGIONS}},
     f"services[4] (id 'h1').http.instances.{REGIONS[2]}: region '{REGIONS[2]}' is not one of the service's regions"),
    ({"http_instances": {r: {"command": ["app", "{port}"], "url": "http://127.0.0.1:1"} for r in REGIONS[:2]}},
     f"services[4] (id 'h1').http.instances.{REGIONS[0]}: give exactly one of command"),
    ({"http_instances": {r: {"command": ["app", "--port", "8080"]} for r in REGIONS[:2]}},
     f"services[4] (id 'h1').http.instances.{REGIONS[0]}.command: the command never names {{port}}"),
    ({"http_instances": {r: {"command": ["app", "{port}", "{host}"]} for r in REGIONS[:2]}},
     f"services[4] (id 'h1').http.instances.{REGIONS[0]}.command: unknown placeholder {{host}}"),
    ({"sync_replicas": 1}, "services[4] (id 'h1').sync_replicas: sync_replicas applies to workloads Paydar replicates"),
    ({"http": None}, "services[4] (id 'h1').http: workload: http needs an http block"),
    ({"workload": None}, "services[4] (id 'h1').http: an http block belongs to workload: http only"),
    ({"http_canary": {"path": "/x", "method": "BREW"}}, "services[4].http.canary.method: String should match"),
    ({"http_health_path": "healthz"}, "services[4].http.health_path: String should match"),
    ({"http_limits": {"timeout": "10m"}}, "services[4].http.limits.timeout: Input should be less than or equal"),
    ({"http_mode": "hot-standby"}, "services[4].http.mode: Input should be 'active-active' or 'active-passive'"),
])
def test_every_mistake_in_an_http_service_is_named_with_its_place(changes: dict[str, Any], expected: str) -> None:
    found = problems(with_http(**changes))
    assert any(p.startswith(expected) for p in found), found


def test_a_registry_service_still_needs_sync_replicas() -> None:
    data = copy.deepcopy(EXAMPLE)
    del data["services"][0]["sync_replicas"]
    assert problems(data) == ["services[0] (id '1101').sync_replicas: missing: a registry service needs sync_replicas"]


def test_located_in_the_file_and_up_refuses_a_remote_url_changing_nothing(tmp_path: Path) -> None:
    config = tmp_path / "http.yaml"
    config.write_text(yaml.safe_dump(with_http(http_instances={REGIONS[0]: {"command": ["app", "{port}"]}})))
    answer = CliRunner().invoke(cli, ["validate", str(config)])
    assert answer.exit_code == 2 and "http.instances (line " in answer.output
    config.write_text(yaml.safe_dump(with_http()))
    assert CliRunner().invoke(cli, ["validate", "--strict", str(config)]).exit_code == 0
    remote = with_http(http_instances={REGIONS[0]: {"url": "http://127.0.0.1:8080"},
                                       REGIONS[1]: {"url": "http://agency.example:8081"}})
    config.write_text(yaml.safe_dump(remote))
    with pytest.raises(BadInput, match=f"the instance in {REGIONS[1]} is http://agency.example:8081, but the "
                                       "local realization reaches only"):
        up(config, tmp_path / "state")
    assert not (tmp_path / "state").exists(), "nothing was created"
    refused = CliRunner().invoke(cli, ["up", "--config", str(config), "--state-dir", str(tmp_path / "state")])
    assert refused.exit_code == 2 and "reaches only http://127.0.0.1" in refused.output
    assert not (tmp_path / "state").exists()


def test_production_refuses_what_it_cannot_render_yet(tmp_path: Path) -> None:
    (tmp_path / "national.yaml").write_text(yaml.safe_dump(with_http()))
    (tmp_path / "Pulumi.staging.yaml").write_text((ROOT / "Pulumi.staging.yaml").read_text())
    with pytest.raises(BadInput, match="h1 use workload: http, which the production program does not render yet"):
        load_stack("staging", tmp_path)


def test_an_app_holds_no_paydar_key_backup_or_node_attack(tmp_path: Path) -> None:
    data = with_http()
    data["services"][-1]["regions"] = REGIONS  # the most replicated service of all: still never a node target
    data["services"][-1]["http"]["instances"] = {r: {"command": ["app", "{port}"]} for r in REGIONS}
    topology = parse_topology(data, source="<test>")
    system = cast("Realization", SimpleNamespace(topology=topology, plan=build_plan(topology, tmp_path)))
    app = system.plan.node("h1", REGIONS[0])
    assert app.app and app.supervised
    with pytest.raises(BadInput, match="an agency app's instance is given none"):
        preview_rotation(system, app.id)
    with pytest.raises(BadInput, match=r"service h1 is an agency app .* Paydar holds no backup of it"):
        select_nodes(system, "h1", None)
    assert not [n for n in select_nodes(system, None, None) if ".h1." in n]
    table = initial_table(topology, 0)
    assert pick(Role.MOST_REPLICATED_SERVICE, topology, table) != "h1"
    assert pick(Role.MOST_REPLICATED_HTTP_SERVICE, topology, table) == "h1"
    assert "paydar-h1" not in Realization.vault_buckets(system), "no vault bucket for an app"


def test_up_refuses_to_run_an_app_unjailed_changing_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "http.yaml"
    config.write_text(yaml.safe_dump(with_http()))
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    with pytest.raises(BadInput, match=r"which paydar up runs jailed, .* needs root"):
        up(config, tmp_path / "state")
    assert not (tmp_path / "state").exists(), "nothing was created"


def test_a_postgres_service_validates_and_up_without_root_refuses_it_by_name_changing_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = copy.deepcopy(EXAMPLE)
    data["services"][0]["workload"] = "postgres"
    config = tmp_path / "pg.yaml"
    config.write_text(yaml.safe_dump(data))
    answer = CliRunner().invoke(cli, ["validate", str(config)])
    assert answer.exit_code == 0 and "postgres service(s) (1101): a PostgreSQL server and its agent" in answer.output
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    with pytest.raises(BadInput, match=r"service\(s\) 1101 run agency processes"):
        up(config, tmp_path / "state")
    assert not (tmp_path / "state").exists()
    del data["services"][0]["sync_replicas"]
    assert problems(data) == ["services[0] (id '1101').sync_replicas: missing: a postgres service needs sync_replicas"]


def test_an_apps_database_and_ledger_are_checked_where_they_are_written(tmp_path: Path) -> None:
    data = with_http()
    app = next(s for s in data["services"] if s.get("workload") == "http")
    app["http"]["database"] = "1101"
    app["http"]["ledger"] = {"write": {"method": "POST", "path": "/records"}, "read": {"path": "/records/{id}"}}
    where = f"services[{data['services'].index(app)}] (id {app['id']!r}).http"
    assert problems(data) == [f"{where}.ledger.write.path: the ledger's write never names {{id}}, the fresh id of "
                              "each record",
                              f"{where}.database: database '1101' is a registry service, not a postgres service"]
    registry = next(s for s in data["services"] if s["id"] == "1101")
    registry["workload"] = "postgres"
    registry["regions"] = [r for r in registry["regions"] if r != app["regions"][0]]
    app["http"]["ledger"]["write"]["path"] = "/records/{id}"
    missing = [app["regions"][0]]
    assert problems(data) == [f"{where}.database: the app runs in {', '.join(missing)}, where database 1101 has no "
                              "server"]
