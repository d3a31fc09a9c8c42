"""Resilience policies over the resource graph: the rules no stack may break.

Each :class:`Policy` is a plain function from the declared resources to the violations it
finds, so the same rules run in three places: the CrossGuard pack in ``policy/`` (as
``pulumi_policy`` stack policies, under ``pulumi preview --policy-pack policy``), ``paydar
plan`` (on the graph rendered offline), and the tests (on good and deliberately bad graphs).
Properties are read as the engine gives them: camelCase inputs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from paydar.infra.production.graph import Resource

__all__ = ["POLICIES", "Policy", "evaluate"]

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
PDB = "kubernetes:policy/v1:PodDisruptionBudget"
SECRET = "kubernetes:core/v1:Secret"
NAMESPACE = "kubernetes:core/v1:Namespace"
BUCKET = "minio:index/s3Bucket:S3Bucket"
VERSIONING = "minio:index/s3BucketVersioning:S3BucketVersioning"
DYNAMIC = "pulumi-python:dynamic:Resource"
IAM_POLICY = "minio:index/iamPolicy:IamPolicy"
VAULT_STACK = "paydar:vault:VaultStack"
ADMIN_USER = "paydar-admin"
FORBIDDEN_FOR_REGIONS = ("delete", "*", "putobjectretention", "bypassgovernanceretention", "putbucket",
                         "putobjectlegalhold", "putobjectlockconfiguration", "putlifecycle")


@dataclass(frozen=True)
class Policy:
    name: str
    description: str
    check: Callable[[list[Resource]], list[str]]


def _get(value: Any, *path: str) -> Any:
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _labels(deployment: Resource) -> dict[str, str]:
    return _get(deployment.props, "spec", "template", "metadata", "labels") or {}


def service_in_two_regions(resources: list[Resource]) -> list[str]:
    regions: dict[str, set[str]] = {}
    for d in (r for r in resources if r.type == DEPLOYMENT):
        labels = _labels(d)
        if "paydar.io/service" in labels:
            regions.setdefault(labels["paydar.io/service"], set()).add(labels.get("paydar.io/region", "?"))
    return [f"service {service} runs in {len(where)} region(s) ({', '.join(sorted(where))}): losing that region "
            "takes it down; list at least two regions" for service, where in sorted(regions.items()) if len(where) < 2]


def vault_immutable(resources: list[Resource]) -> list[str]:
    found = []
    versioned = {_get(r.props, "bucket") for r in resources if r.type == VERSIONING
                 and _get(r.props, "versioningConfiguration", "status") == "Enabled"}
    retained = {_get(r.props, "bucket"): r.props for r in resources if r.type == DYNAMIC and "mode" in r.props}
    for bucket in (r for r in resources if r.type == BUCKET):
        name = _get(bucket.props, "bucket")
        if bucket.props.get("objectLocking") is not True:
            found.append(f"bucket {name}: object locking is off (it can only be turned on at creation)")
        if name not in versioned:
            found.append(f"bucket {name}: versioning is not enabled")
        retention = retained.get(name)
        if retention is None or retention.get("mode") != "COMPLIANCE" or not float(retention.get("days") or 0) >= 1:
            found.append(f"bucket {name}: no COMPLIANCE default retention of at least a day")
        if bucket.props.get("forceDestroy") is True:
            found.append(f"bucket {name}: force_destroy would let `pulumi destroy` empty it")
    return found


def no_shared_credentials(resources: list[Resource]) -> list[str]:
    holders: dict[str, list[str]] = {}
    for secret in (r for r in resources if r.type == SECRET and r.region):
        key, region = _get(secret.props, "stringData", "access_key"), secret.region
        if key is not None and region:
            holders.setdefault(str(key), []).append(region)
    found = [f"vault identity {key} is given to regions {', '.join(sorted(set(where)))}: a region's stolen "
             "credentials must not reach another region's backups" for key, where in holders.items()
             if len(set(where)) > 1]
    found += [f"the vault admin identity is given to region {', '.join(sorted(set(where)))}"
              for key, where in holders.items() if key == ADMIN_USER]
    return found


def _actions(policy: Any) -> Iterable[str]:
    document = json.loads(policy) if isinstance(policy, str) else policy or {}
    for statement in document.get("Statement", []):
        if statement.get("Effect") == "Allow":
            actions = statement.get("Action", [])
            yield from [actions] if isinstance(actions, str) else actions


def no_region_delete(resources: list[Resource]) -> list[str]:
    found = []
    for policy in (r for r in resources if r.type == IAM_POLICY and r.props.get("name") != ADMIN_USER):
        bad = [a for a in _actions(policy.props.get("policy")) if any(f in a.lower() for f in FORBIDDEN_FOR_REGIONS)]
        if bad:
            found.append(f"vault policy {policy.props.get('name')} allows {', '.join(bad)}: a region may only "
                         "put and read its own backups")
    return found


def vault_site_apart(resources: list[Resource]) -> list[str]:
    regions = {_get(r.props, "metadata", "labels", "paydar.io/region") for r in resources if r.type == NAMESPACE}
    sites = {r.name.removeprefix("vault-") for r in resources if r.type == VAULT_STACK}
    return [f"vault site {site} is also a service region: backups must live in a failure domain apart"
            for site in sorted(sites & regions)]


def deployments_probed_and_budgeted(resources: list[Resource]) -> list[str]:
    found = []
    budgets = [(_get(p.props, "metadata", "namespace"), _get(p.props, "spec", "selector", "matchLabels") or {})
               for p in resources if p.type == PDB]
    for d in (r for r in resources if r.type == DEPLOYMENT):
        name = f"{_get(d.props, 'metadata', 'namespace')}/{_get(d.props, 'metadata', 'name')}"
        for container in _get(d.props, "spec", "template", "spec", "containers") or []:
            missing = [p for p in ("readinessProbe", "livenessProbe") if not container.get(p)]
            if missing:
                found.append(f"deployment {name}: container {container.get('name')} has no {' or '.join(missing)}")
        labels = _labels(d)
        if not any(ns == _get(d.props, "metadata", "namespace") and selector and
                   all(labels.get(k) == v for k, v in selector.items()) for ns, selector in budgets):
            found.append(f"deployment {name}: no PodDisruptionBudget selects its pods")
    return found


POLICIES = (
    Policy("service-in-two-regions", "Every service runs in at least two regions.", service_in_two_regions),
    Policy("vault-immutable", "Vault buckets are versioned, locked at creation, with COMPLIANCE retention.",
           vault_immutable),
    Policy("no-shared-credentials", "No vault identity is given to two regions; the admin's to none.",
           no_shared_credentials),
    Policy("no-region-delete", "No region's vault policy allows delete, retention or bucket changes.",
           no_region_delete),
    Policy("vault-site-apart", "Vault sites are not service regions.", vault_site_apart),
    Policy("deployments-probed-and-budgeted", "Every Deployment has readiness and liveness probes and a "
           "PodDisruptionBudget.", deployments_probed_and_budgeted),
)


def evaluate(resources: list[Resource]) -> dict[str, list[str]]:
    """Every policy's violations (an empty list: it passed)."""
    return {policy.name: policy.check(resources) for policy in POLICIES}
