"""One region's cluster: a namespace with every workload of the region, locked down.

Per workload (each node of a hosted service, the gateway, the prober where the region is a
vantage point, the controller): a Deployment with readiness and liveness probes, anti-affinity
and a restricted security context, a Service, a PodDisruptionBudget, its Ed25519 identity as a
Secret, and a NetworkPolicy allowing exactly its paths of :mod:`paydar.infra.production.paths`. The
namespace denies everything else by default. Paths inside the region name pods; paths from or
to another region can only name that region's CIDR (another cluster's pods have no labels
here), so across regions the policies are as narrow as the network allows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_tls as tls

from paydar.infra.production.paths import CITIZENS, VAULT, Component, Path
from paydar.infra.production.settings import StackSettings
from paydar.infra.production.vault import RegionCredentials
from paydar.model.identity import ENTRY_MODULES, Role
from paydar.model.ids import gateway_id

__all__ = ["COMPONENT_LABEL", "RegionArgs", "RegionStack", "peer"]

COMPONENT_LABEL = "paydar.io/component"


@dataclass(frozen=True)
class RegionArgs:
    region: str
    components: list[Component]
    """Every component of the national system (this region's are deployed here)."""
    paths: set[Path]
    settings: StackSettings
    keys: dict[str, tls.PrivateKey]
    trust_root: pulumi.Output[str]
    topology_yaml: str
    vault_credentials: RegionCredentials


def peer(endpoint: str, region: str, by_id: dict[str, Component], settings: StackSettings) -> dict[str, Any]:
    """A NetworkPolicy peer for ``endpoint`` as seen from ``region``."""
    if endpoint == CITIZENS:
        return {"ipBlock": {"cidr": settings.citizen_cidr}}
    if endpoint == VAULT:
        return {"ipBlock": {"cidr": settings.vault.cidr}}
    other = by_id[endpoint]
    if other.region == region:
        return {"podSelector": {"matchLabels": {COMPONENT_LABEL: other.id}}}
    return {"ipBlock": {"cidr": settings.region_cidrs[other.region]}}


def _unique(peers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    for p in peers:
        if p not in seen:
            seen.append(p)
    return seen


class RegionStack(pulumi.ComponentResource):
    """Everything one region's cluster runs."""

    def __init__(self, name: str, args: RegionArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("paydar:region:RegionStack", name, None, opts)
        settings, region = args.settings, args.region
        provider = k8s.Provider(f"{name}-cluster", kubeconfig=pulumi.Output.secret(settings.kubeconfigs[region]),
                                opts=pulumi.ResourceOptions(parent=self))
        child = pulumi.ResourceOptions(parent=self, provider=provider)
        namespace = k8s.core.v1.Namespace(f"{name}-namespace", metadata={
            "name": f"paydar-{region}", "labels": {"paydar.io/region": region,
                                                   "pod-security.kubernetes.io/enforce": "restricted"}}, opts=child)
        ns = namespace.metadata.apply(_name)
        self.namespace = ns
        k8s.networking.v1.NetworkPolicy(f"{name}-default-deny", metadata={"name": "default-deny", "namespace": ns},
                                        spec={"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}, opts=child)
        k8s.networking.v1.NetworkPolicy(f"{name}-allow-dns", metadata={"name": "allow-dns", "namespace": ns}, spec={
            "podSelector": {}, "policyTypes": ["Egress"],
            "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                        "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}]}, opts=child)
        k8s.core.v1.ConfigMap(f"{name}-national", metadata={"name": "paydar-national", "namespace": ns},
                              data={"national.yaml": args.topology_yaml, "trust_root.json": args.trust_root},
                              opts=child)
        k8s.core.v1.Secret(f"{name}-vault-credentials", metadata={"name": "paydar-vault", "namespace": ns},
                           string_data={"access_key": args.vault_credentials.access_key,
                                        "secret_key": args.vault_credentials.secret_key}, opts=child)
        by_id = {c.id: c for c in args.components}
        self.services: dict[str, k8s.core.v1.Service] = {}
        for component in (c for c in args.components if c.region == region):
            self.services[component.id] = self._workload(name, component, args, by_id, ns, child)
        gateway = self.services[gateway_id(region)]
        self.gateway_endpoint = gateway.status.apply(lambda s: _address(s, f"gateway.paydar-{region}.svc",
                                                                        settings.port))
        self.register_outputs({"namespace": ns, "gateway_endpoint": self.gateway_endpoint})

    def _workload(self, name: str, c: Component, args: RegionArgs, by_id: dict[str, Component],
                  ns: pulumi.Output[str], child: pulumi.ResourceOptions) -> k8s.core.v1.Service:
        settings = args.settings
        prefix = f"{name}-{c.id}"
        resource_name = c.id.replace(".", "-")
        labels = {"app.kubernetes.io/name": "paydar", "app.kubernetes.io/component": c.kind, COMPONENT_LABEL: c.id,
                  "paydar.io/region": c.region, **({"paydar.io/service": c.service} if c.service else {})}
        identity = k8s.core.v1.Secret(f"{prefix}-identity", metadata={"name": f"{resource_name}-identity",
                                                                      "namespace": ns, "labels": labels},
                                      string_data={"private_key.pem": args.keys[c.id].private_key_pem}, opts=child)
        volumes: list[dict[str, Any]] = [
            {"name": "identity", "secret": {"secretName": identity.metadata.apply(_name)}},
            {"name": "national", "configMap": {"name": "paydar-national"}}]
        mounts = [{"name": "identity", "mountPath": "/var/run/paydar/identity", "readOnly": True},
                  {"name": "national", "mountPath": "/etc/paydar", "readOnly": True}]
        if c.kind == "node":
            claim = k8s.core.v1.PersistentVolumeClaim(f"{prefix}-data", metadata={
                "name": f"{resource_name}-data", "namespace": ns, "labels": labels},
                spec={"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "20Gi"}}}, opts=child)
            volumes += [{"name": "data", "persistentVolumeClaim": {"claimName": claim.metadata.apply(_name)}},
                        {"name": "vault", "secret": {"secretName": "paydar-vault"}}]
            mounts += [{"name": "data", "mountPath": "/var/lib/paydar"},
                       {"name": "vault", "mountPath": "/var/run/paydar/vault", "readOnly": True}]
        replicas = settings.gateway_replicas if c.kind == "gateway" else 1
        selector = {COMPONENT_LABEL: c.id}
        probe = {"periodSeconds": 2, "timeoutSeconds": 1, "failureThreshold": 3}
        k8s.apps.v1.Deployment(f"{prefix}-deployment", metadata={"name": resource_name, "namespace": ns,
                                                                 "labels": labels}, spec={
            "replicas": replicas, "selector": {"matchLabels": selector},
            # A node is the single writer of its store: never two at once, even during a rollout.
            "strategy": {"type": "Recreate"} if c.kind == "node" else {"type": "RollingUpdate"},
            "template": {"metadata": {"labels": labels}, "spec": {
                "automountServiceAccountToken": False,
                "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "fsGroup": 10001,
                                    "seccompProfile": {"type": "RuntimeDefault"}},
                "affinity": {"podAntiAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": [
                        {"labelSelector": {"matchLabels": selector}, "topologyKey": "kubernetes.io/hostname"}],
                    "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 50, "podAffinityTerm": {
                        "labelSelector": {"matchLabels": {"app.kubernetes.io/component": c.kind}},
                        "topologyKey": "kubernetes.io/hostname"}}]}},
                "containers": [{
                    "name": c.kind, "image": getattr(settings.images, c.kind),
                    "args": ["python", "-m", ENTRY_MODULES[Role(c.kind)]],
                    "env": [{"name": "PAYDAR_COMPONENT", "value": c.id}, {"name": "PAYDAR_REGION", "value": c.region}],
                    "ports": [{"name": "http", "containerPort": settings.port}],
                    "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, **probe},
                    "livenessProbe": {"httpGet": {"path": "/livez", "port": "http"}, **probe, "failureThreshold": 10},
                    "securityContext": {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                                        "capabilities": {"drop": ["ALL"]}},
                    "volumeMounts": mounts}],
                "volumes": volumes}}}, opts=child)
        # One instance may go at a time: the national system is built to lose any one component.
        k8s.policy.v1.PodDisruptionBudget(f"{prefix}-pdb", metadata={"name": resource_name, "namespace": ns},
                                          spec={"maxUnavailable": 1, "selector": {"matchLabels": selector}},
                                          opts=child)
        self._network_policy(prefix, resource_name, c, args, by_id, ns, child)
        return k8s.core.v1.Service(f"{prefix}-service", metadata={
            "name": "gateway" if c.kind == "gateway" else resource_name, "namespace": ns, "labels": labels}, spec={
            "type": "LoadBalancer" if c.kind == "gateway" else "ClusterIP", "selector": selector,
            "ports": [{"name": "http", "port": settings.port, "targetPort": "http"}]}, opts=child)

    def _network_policy(self, prefix: str, resource_name: str, c: Component, args: RegionArgs,
                        by_id: dict[str, Component], ns: pulumi.Output[str], child: pulumi.ResourceOptions) -> None:
        settings, region = args.settings, args.region
        sources = sorted(p.source for p in args.paths if p.target == c.id)
        targets = sorted(p.target for p in args.paths if p.source == c.id)
        vault_port = int(settings.vault.server.rsplit(":", 1)[1]) if ":" in settings.vault.server else 443
        egress = [{"to": _unique([peer(t, region, by_id, settings) for t in targets if t != VAULT]),
                   "ports": [{"port": settings.port, "protocol": "TCP"}]}]
        if VAULT in targets:
            egress.append({"to": [peer(VAULT, region, by_id, settings)], "ports": [{"port": vault_port,
                                                                                    "protocol": "TCP"}]})
        k8s.networking.v1.NetworkPolicy(f"{prefix}-network", metadata={"name": resource_name, "namespace": ns}, spec={
            "podSelector": {"matchLabels": {COMPONENT_LABEL: c.id}}, "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": _unique([peer(s, region, by_id, settings) for s in sources]),
                         "ports": [{"port": settings.port, "protocol": "TCP"}]}],
            "egress": egress}, opts=child)


def _name(metadata: Any) -> str:
    return str(_field(metadata, "name"))


def _field(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, dict) else getattr(value, key, None)


def _address(status: Any, fallback: str, port: int) -> str:
    """The gateway's load-balancer address once the cloud assigned one, else its in-cluster name."""
    ingress = _field(_field(status, "load_balancer"), "ingress") if status else None
    host = (_field(ingress[0], "ip") or _field(ingress[0], "hostname")) if ingress else None
    return f"http://{host or fallback}:{port}"
