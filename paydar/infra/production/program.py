"""The Pulumi program: the topology and a stack's settings in, every region and the vault out.

``infra/__main__.py`` calls :func:`main` under the Pulumi CLI; :mod:`paydar.infra.production.graph`
calls :func:`declare` under the mock runtime. Outputs: each region's gateway endpoint and
namespace, the vault's buckets and the region users (never a secret).
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_tls as tls
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from paydar.infra.production.paths import components, intended_paths
from paydar.infra.production.region import RegionArgs, RegionStack
from paydar.infra.production.settings import StackSettings, parse_settings
from paydar.infra.production.vault import VaultArgs, VaultStack
from paydar.infra.support import require_renderable
from paydar.model.identity import trust_root_of
from paydar.model.topology import NationalTopology, load_topology

__all__ = ["declare", "main"]


def declare(topology: NationalTopology, topology_yaml: str, settings: StackSettings) -> dict[str, pulumi.Output[Any]]:
    """Declare the national system; returns the stack outputs."""
    every = components(topology)
    paths = intended_paths(topology)
    keys = {c.id: tls.PrivateKey(f"identity-{c.id}", algorithm="ED25519") for c in every}
    trust_root = pulumi.Output.all(**{cid: key.public_key_pem for cid, key in keys.items()}).apply(_trust_root)
    site = topology.vault.sites[0].name
    vault = VaultStack(f"vault-{site}", VaultArgs(topology=topology, settings=settings.vault, site=site))
    regions = {region: RegionStack(f"region-{region}", RegionArgs(
        region=region, components=every, paths=paths, settings=settings, keys=keys, trust_root=trust_root,
        topology_yaml=topology_yaml, vault_credentials=vault.credentials[region]))
        for region in topology.region_names}
    return {"gateway_endpoints": pulumi.Output.all(**{r: s.gateway_endpoint for r, s in regions.items()}),
            "namespaces": pulumi.Output.all(**{r: s.namespace for r, s in regions.items()}),
            "vault_buckets": pulumi.Output.all(**{sid: b.bucket for sid, b in vault.buckets.items()}),
            "vault_region_users": pulumi.Output.all(**{r: c.access_key for r, c in vault.credentials.items()})}


def _trust_root(pems: dict[str, str | None]) -> str:
    """The components' trust root in the format every component loads (``paydar.model.identity.TrustRoot``).
    Keys only the engine can generate are absent under the mock runtime."""
    publics = {cid: load_pem_public_key(pem.encode()) for cid, pem in pems.items() if pem}
    return trust_root_of({cid: key for cid, key in publics.items() if isinstance(key, Ed25519PublicKey)}
                         ).model_dump_json()


def main() -> None:
    """Entry point under the Pulumi CLI: read the stack's ``paydar:*`` settings and declare."""
    config = pulumi.Config("paydar")
    raw: dict[str, Any] = {key: config.get_object(key) for key in ("kubeconfigs", "region_cidrs", "vault", "images")}
    raw |= {key: value for key in ("topology", "citizen_cidr") if (value := config.get(key)) is not None}
    raw |= {key: number for key in ("gateway_replicas", "port") if (number := config.get_int(key)) is not None}
    path = raw.get("topology") or "national.yaml"
    topology = load_topology(path)
    require_renderable(topology)
    with open(path, encoding="utf-8") as text:
        topology_yaml = text.read()
    settings = parse_settings({k: v for k, v in raw.items() if v is not None}, topology, f"stack {pulumi.get_stack()}")
    for name, output in declare(topology, topology_yaml, settings).items():
        pulumi.export(name, output)
