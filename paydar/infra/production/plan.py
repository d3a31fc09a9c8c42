"""`paydar plan`: a stack's resource graph rendered offline, summarised for review, with the policies' verdict.

The stack file's ``paydar:*`` configuration is read as the Pulumi CLI would; values stored as
``secure:`` ciphertext cannot be decrypted without the CLI and show as ``[secret]`` (nothing
in the plan depends on their contents).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from paydar.infra.production.graph import Graph, render
from paydar.infra.production.policies import IAM_POLICY, evaluate
from paydar.infra.production.region import COMPONENT_LABEL
from paydar.infra.production.settings import StackSettings, parse_settings
from paydar.infra.support import require_renderable
from paydar.model.errors import BadInput
from paydar.model.topology import NationalTopology, load_topology

__all__ = ["Plan", "load_stack", "open_paths", "plan_stack"]

NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
SECRET_PLACEHOLDER = "[secret]"


@dataclass
class Plan:
    stack: str
    topology: NationalTopology
    settings: StackSettings
    graph: Graph
    violations: dict[str, list[str]]

    @property
    def passed(self) -> bool:
        return not any(self.violations.values())


def load_stack(stack: str, root: Path = Path(".")) -> tuple[NationalTopology, str, StackSettings]:
    """The topology and validated settings of ``Pulumi.<stack>.yaml`` under ``root``."""
    path = root / f"Pulumi.{stack}.yaml"
    if not path.exists():
        known = sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in root.glob("Pulumi.*.yaml"))
        raise BadInput(f"no stack file {path}; stacks here: {', '.join(known) or 'none'}")
    config = (yaml.safe_load(path.read_text()) or {}).get("config") or {}
    raw = {key.removeprefix("paydar:"): _plain(value) for key, value in config.items() if key.startswith("paydar:")}
    topology_path = root / raw.get("topology", "national.yaml")
    topology = load_topology(topology_path)
    require_renderable(topology)
    return topology, topology_path.read_text(), parse_settings(raw, topology, str(path))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return SECRET_PLACEHOLDER if set(value) == {"secure"} else {k: _plain(v) for k, v in value.items()}
    return value


def plan_stack(stack: str, root: Path = Path(".")) -> Plan:
    topology, text, settings = load_stack(stack, root)
    graph = render(topology, text, settings, stack=stack)
    return Plan(stack, topology, settings, graph, evaluate(graph.resources))


def _peer(peer: dict[str, Any], settings: StackSettings) -> str:
    if "podSelector" in peer and "namespaceSelector" not in peer:
        return str(peer["podSelector"].get("matchLabels", {}).get(COMPONENT_LABEL, "every pod"))
    cidr = (peer.get("ipBlock") or {}).get("cidr")
    regions = {c: r for r, c in settings.region_cidrs.items()}
    if cidr in regions:
        return f"region:{regions[cidr]}"
    if cidr == settings.vault.cidr:
        return "vault"
    if cidr == settings.citizen_cidr:
        return "citizens"
    return "dns" if "namespaceSelector" in peer else f"cidr:{cidr}"


def open_paths(graph: Graph, settings: StackSettings) -> dict[str, set[tuple[str, str]]]:
    """Per region, every (source, target) a NetworkPolicy lets through, ingress and egress alike.

    A component of the same region appears by id; another region only as ``region:<name>``
    (the finest a policy can name it), and ``citizens`` / ``vault`` / ``dns`` as such.
    """
    found: dict[str, set[tuple[str, str]]] = {}
    for policy in graph.of_type(NETWORK_POLICY):
        spec = policy.props.get("spec") or {}
        selected = (spec.get("podSelector") or {}).get("matchLabels", {}).get(COMPONENT_LABEL, "every pod")
        pairs = found.setdefault(str(policy.region), set())
        for rule in spec.get("ingress") or []:
            pairs |= {(_peer(p, settings), selected) for p in rule.get("from") or []}
        for rule in spec.get("egress") or []:
            pairs |= {(selected, _peer(p, settings)) for p in rule.get("to") or []}
    return found


def vault_permissions(graph: Graph) -> dict[str, list[str]]:
    """Each vault policy: what it allows, on what."""
    permissions = {}
    for policy in graph.of_type(IAM_POLICY):
        document = json.loads(policy.props.get("policy") or "{}")
        permissions[str(policy.props.get("name"))] = [
            f"{', '.join(s.get('Action', []))} on {', '.join(s.get('Resource', []))}"
            for s in document.get("Statement", [])]
    return permissions


def summary(plan: Plan) -> dict[str, Any]:
    """What `paydar plan` prints (and --json emits)."""
    by_region: dict[str, Counter[str]] = {}
    for resource in plan.graph.resources:
        by_region.setdefault(resource.region or "national", Counter())[resource.type] += 1
    return {"stack": plan.stack, "resources": len(plan.graph.resources),
            "by_region": {r: dict(sorted(c.items())) for r, c in sorted(by_region.items())},
            "open_paths": {r: sorted(f"{s} -> {t}" for s, t in pairs)
                           for r, pairs in sorted(open_paths(plan.graph, plan.settings).items())},
            "vault_permissions": vault_permissions(plan.graph), "outputs": plan.graph.outputs,
            "policies": {name: found or "passed" for name, found in plan.violations.items()},
            "passed": plan.passed}
