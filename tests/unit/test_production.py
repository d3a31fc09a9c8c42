"""The Pulumi program under Pulumi's mock runtime (named so: no engine, no cloud; inputs are
what the engine would receive), the resilience policies, and `paydar plan`."""

from __future__ import annotations

import copy
import json
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import yaml
from click.testing import CliRunner
from pulumi_policy import StackValidationArgs, StackValidationPolicy

from paydar.cli import cli
from paydar.infra.production.graph import Graph, Resource, render
from paydar.infra.production.paths import CITIZENS, VAULT, components, intended_paths
from paydar.infra.production.plan import load_stack, open_paths
from paydar.infra.production.policies import evaluate
from paydar.infra.production.policy_pack import stack_policies
from paydar.infra.production.settings import StackSettings, parse_settings
from paydar.model.errors import TopologyError
from paydar.model.topology import NationalTopology, load_topology

ROOT = Path(__file__).resolve().parents[2]
CIDRS = {"tehran": "10.1.0.0/16", "isfahan": "10.2.0.0/16", "mashhad": "10.3.0.0/16"}


def settings_for(topology: NationalTopology, **overrides: Any) -> StackSettings:
    raw = {"kubeconfigs": {r: f"/k/{r}" for r in topology.region_names},
           "region_cidrs": {r: CIDRS.get(r, "10.8.0.0/16") for r in topology.region_names},
           "vault": {"server": "vault.example:9000", "user": "root", "password": "pw", "cidr": "10.9.0.0/24"},
           "images": {k: f"img/{k}" for k in ("node", "gateway", "prober", "controller")}} | overrides
    return parse_settings(raw, topology)


@pytest.fixture(scope="module")
def topology() -> NationalTopology:
    return load_topology(ROOT / "national.yaml")


@pytest.fixture(scope="module")
def graph(topology: NationalTopology) -> Graph:
    return render(topology, (ROOT / "national.yaml").read_text(), settings_for(topology))


def test_resource_counts_per_region_match_the_topology(topology: NationalTopology, graph: Graph) -> None:
    per_region = {r: Counter(x.type.rsplit(":", 1)[1] for x in graph.resources if x.region == r)
                  for r in topology.region_names}
    for region, counts in per_region.items():
        nodes = len(topology.services_in(region))
        workloads = nodes + 2 + (region in topology.vantage_points)  # + gateway, controller, prober
        assert counts == Counter({"Deployment": workloads, "Service": workloads, "PodDisruptionBudget": workloads,
                                  "NetworkPolicy": workloads + 2, "Secret": workloads + 1,
                                  "PersistentVolumeClaim": nodes, "Namespace": 1, "ConfigMap": 1,
                                  "RegionStack": 1, "kubernetes": 1}), region
    national = Counter(x.type.rsplit(":", 1)[1] for x in graph.resources if x.region is None)
    services, regions = len(topology.services), len(topology.regions)
    assert national == Counter({"PrivateKey": len(components(topology)), "S3Bucket": services,
                                "S3BucketVersioning": services, "Resource": services, "IamUser": regions + 1,
                                "IamPolicy": regions + 1, "IamUserPolicyAttachment": regions + 1,
                                "VaultStack": 1, "minio": 1})
    assert graph.outputs["gateway_endpoints"] == {r: f"http://gateway.paydar-{r}.svc:8080"
                                                  for r in topology.region_names}


def test_every_network_policy_allows_exactly_the_intended_paths(topology: NationalTopology, graph: Graph) -> None:
    settings = settings_for(topology)
    by_id = {c.id: c for c in components(topology)}

    def seen_from(region: str, endpoint: str) -> str:
        if endpoint in (CITIZENS, VAULT):
            return endpoint
        other = by_id[endpoint]
        return other.id if other.region == region else f"region:{other.region}"

    allowed = open_paths(graph, settings)
    for region in topology.region_names:
        expected = {(seen_from(region, p.source), p.target) for p in intended_paths(topology)
                    if p.target in by_id and by_id[p.target].region == region}
        expected |= {(p.source, seen_from(region, p.target)) for p in intended_paths(topology)
                     if p.source in by_id and by_id[p.source].region == region}
        expected.add(("every pod", "dns"))
        assert allowed[region] == expected, region
    # Spot checks of what the design forbids: no node talks to another service's node, no
    # prober to a controller, and citizens reach gateways only.
    tehran = allowed["tehran"]
    assert ("node.2204.tehran", "node.1101.tehran") not in tehran and ("node.1101.tehran", "node.1101.tehran") \
        not in tehran
    assert ("prober.tehran", "controller.tehran") not in tehran
    assert {t for s, t in tehran if s == CITIZENS} == {"gateway.tehran"}
    deny = [r for r in graph.resources if r.name.endswith("default-deny")]
    assert len(deny) == 3 and all(r.props["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
                                  for r in deny)


def test_vault_buckets_are_locked_versioned_and_retained(topology: NationalTopology, graph: Graph) -> None:
    buckets = graph.of_type("minio:index/s3Bucket:S3Bucket")
    assert sorted(b.props["bucket"] for b in buckets) == [f"paydar-{s.id}" for s in topology.services]
    assert all(b.props["objectLocking"] is True and b.props["forceDestroy"] is False for b in buckets)
    versioning = graph.of_type("minio:index/s3BucketVersioning:S3BucketVersioning")
    assert {v.props["bucket"]: v.props["versioningConfiguration"]["status"] for v in versioning} == {
        b.props["bucket"]: "Enabled" for b in buckets}
    retention = [r.props for r in graph.of_type("pulumi-python:dynamic:Resource")]
    assert {(r["bucket"], r["mode"], int(r["days"])) for r in retention} == {
        (b.props["bucket"], "COMPLIANCE", topology.vault.retention_days) for b in buckets}


def test_region_vault_policies_put_and_read_their_own_prefix_and_never_delete(topology: NationalTopology,
                                                                              graph: Graph) -> None:
    policies = {p.props["name"]: json.loads(p.props["policy"]) for p in graph.of_type(
        "minio:index/iamPolicy:IamPolicy")}
    for region in topology.region_names:
        [statement] = policies[f"paydar-region-{region}"]["Statement"]
        assert statement["Action"] == ["s3:PutObject", "s3:GetObject", "s3:GetObjectVersion"]
        assert statement["Resource"] == [f"arn:aws:s3:::paydar-{s.id}/{region}/*" for s in topology.services_in(region)]
    secrets = {r.region: r.props["stringData"]["access_key"] for r in graph.of_type("kubernetes:core/v1:Secret")
               if "access_key" in r.props.get("stringData", {})}
    assert secrets == {r: f"paydar-region-{r}" for r in topology.region_names}, "the admin identity reaches no region"


def test_the_policies_pass_on_the_example(graph: Graph) -> None:
    assert evaluate(graph.resources) == {name: [] for name in evaluate(graph.resources)}


def _mutated(graph: Graph, token: str, change: Any, match: Any = lambda r: True) -> list[Resource]:
    resources = copy.deepcopy(graph.resources)
    target = next(r for r in resources if r.type == token and match(r))
    change(target.props)
    return resources


@pytest.mark.parametrize(("policy", "breaks", "message"), [
    ("vault-immutable", ("minio:index/s3Bucket:S3Bucket", lambda p: p.update(objectLocking=False),
                         lambda r: r.props["bucket"] == "paydar-1101"), "bucket paydar-1101: object locking is off"),
    ("no-shared-credentials", ("kubernetes:core/v1:Secret", lambda p: p["stringData"].update(
        access_key="paydar-region-tehran"), lambda r: r.region == "isfahan" and "access_key" in r.props.get(
        "stringData", {})), "vault identity paydar-region-tehran is given to regions isfahan, tehran"),
    ("no-region-delete", ("minio:index/iamPolicy:IamPolicy", lambda p: p.update(policy=json.dumps({"Statement": [
        {"Effect": "Allow", "Action": ["s3:DeleteObjectVersion"], "Resource": ["*"]}]})),
        lambda r: r.props["name"] == "paydar-region-mashhad"), "paydar-region-mashhad allows s3:DeleteObjectVersion"),
    ("deployments-probed-and-budgeted", ("kubernetes:apps/v1:Deployment", lambda p: p["spec"]["template"]["spec"][
        "containers"][0].pop("livenessProbe"), lambda r: r.name.endswith("gateway.tehran-deployment")),
     "deployment paydar-tehran/gateway-tehran: container gateway has no livenessProbe"),
])
def test_each_policy_catches_a_graph_that_breaks_it(graph: Graph, policy: str,
                                                 breaks: tuple[Any, ...], message: str) -> None:
    bad = _mutated(graph, *breaks)
    found = evaluate(bad)
    assert [name for name, violations in found.items() if violations] == [policy]
    assert any(message in v for v in found[policy]), found[policy]
    # The CrossGuard pack runs the same rule on what the engine hands it.
    [pack_policy] = [p for p in stack_policies() if p.name == policy]
    assert isinstance(pack_policy, StackValidationPolicy)
    reported: list[str] = []
    # What the engine hands a stack policy: resources with their type, name and properties.
    resources = [SimpleNamespace(resource_type=r.type, name=r.name, props=r.props) for r in bad]
    args = cast("StackValidationArgs", SimpleNamespace(resources=resources))
    pack_policy.validate(args, lambda text, urn: reported.append(text))
    assert reported == found[policy]


def test_a_deliberately_bad_topology_violates_the_topology_policies(topology: NationalTopology) -> None:
    data = yaml.safe_load((ROOT / "national.yaml").read_text())
    data["services"][0]["regions"] = ["tehran"]
    data["services"][0]["sync_replicas"] = 0
    data["vault"]["sites"][0]["name"] = "mashhad"
    bad = NationalTopology.model_validate(data)  # the model only: `paydar validate` would refuse it
    graph = render(bad, yaml.safe_dump(data), settings_for(bad))
    found = evaluate(graph.resources)
    assert found["service-in-two-regions"] == [
        "service 1101 runs in 1 region(s) (tehran): losing that region takes it down; list at least two regions"]
    assert found["vault-site-apart"] == [
        "vault site mashhad is also a service region: backups must live in a failure domain apart"]


def test_stack_settings_name_every_missing_or_unknown_region(topology: NationalTopology) -> None:
    with pytest.raises(TopologyError) as info:
        settings_for(topology, kubeconfigs={"tehran": "k", "shiraz": "k"}, gateway_replicas=1)
    assert [i.location for i in info.value.issues] == ["paydar:gateway_replicas"]
    with pytest.raises(TopologyError) as info:
        settings_for(topology, kubeconfigs={"tehran": "k", "shiraz": "k"})
    assert [str(i) for i in info.value.issues] == [
        "paydar:kubeconfigs: no entry for region 'isfahan' (hint: add isfahan: ... under kubeconfigs)",
        "paydar:kubeconfigs: no entry for region 'mashhad' (hint: add mashhad: ... under kubeconfigs)",
        "paydar:kubeconfigs.shiraz: region 'shiraz' is not in the topology "
        "(hint: use one of: tehran, isfahan, mashhad)"]


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_the_shipped_stacks_are_valid(stack: str) -> None:
    topology, _, settings = load_stack(stack, ROOT)
    assert set(settings.kubeconfigs) == set(topology.region_names)


def test_paydar_plan_reviews_the_example_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(cli, ["plan", "--stack", "staging", "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    assert found["passed"] and set(found["policies"].values()) == {"passed"}
    assert found["by_region"]["tehran"]["kubernetes:apps/v1:Deployment"] == 7
    assert "gateway.tehran -> region:isfahan" in found["open_paths"]["tehran"]
    assert found["vault_permissions"]["paydar-region-tehran"] == [
        "s3:PutObject, s3:GetObject, s3:GetObjectVersion on arn:aws:s3:::paydar-1101/tehran/*, "
        "arn:aws:s3:::paydar-2204/tehran/*, arn:aws:s3:::paydar-3307/tehran/*, arn:aws:s3:::paydar-4412/tehran/*"]
    text = CliRunner().invoke(cli, ["plan", "--stack", "staging"])
    assert "policy vault-immutable: passed" in text.output and "citizens -> gateway.tehran" in text.output
    missing = CliRunner().invoke(cli, ["plan", "--stack", "nope"])
    assert missing.exit_code == 2 and "stacks here: production, staging" in missing.output


def test_the_trust_root_is_in_the_format_components_load() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from paydar.infra.production.program import _trust_root
    from paydar.model.identity import TrustRoot

    key = Ed25519PrivateKey.generate()
    pem = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    root = TrustRoot.model_validate_json(_trust_root({"controller.tehran": pem, "gateway.tehran": None}))
    _, public = root.key_of("controller.tehran")
    assert public.public_bytes_raw() == key.public_key().public_bytes_raw()
