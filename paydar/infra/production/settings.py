"""A stack's configuration (``paydar:*`` in ``Pulumi.<stack>.yaml``), read and checked in one place.

Every problem is reported at once, naming the key and what to set, before any resource is
declared: a stack that names a region the topology lacks, or misses one it has, fails here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from paydar.model.errors import Issue, TopologyError
from paydar.model.topology import NationalTopology

__all__ = ["Images", "StackSettings", "VaultSettings", "parse_settings"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Images(_Model):
    """Container images of the four workloads (pin them by digest in production)."""

    node: str = Field(min_length=1)
    gateway: str = Field(min_length=1)
    prober: str = Field(min_length=1)
    controller: str = Field(min_length=1)


class VaultSettings(_Model):
    """The MinIO deployment at the vault site (a failure domain apart from every region)."""

    server: str = Field(min_length=1, description="host:port of the MinIO S3 API")
    user: str = Field(min_length=1, description="MinIO root user (a Pulumi secret)")
    password: str = Field(min_length=1, description="MinIO root password (a Pulumi secret)")
    ssl: bool = True
    cidr: str = Field(min_length=1, description="where nodes reach the vault from, for their egress policy")
    retention_days: int | None = Field(default=None, ge=1, le=3650,
                                       description="overrides vault.retention_days of the topology")


class StackSettings(_Model):
    """Everything a stack must say besides the topology."""

    topology: str = "national.yaml"
    kubeconfigs: dict[str, str] = Field(description="region -> kubeconfig of that region's cluster (secret)")
    region_cidrs: dict[str, str] = Field(description="region -> pod CIDR other regions see its traffic from")
    vault: VaultSettings
    images: Images
    gateway_replicas: int = Field(default=2, ge=2, le=50)
    port: int = Field(default=8080, ge=1024, le=65535)
    citizen_cidr: str = "0.0.0.0/0"


def parse_settings(raw: Mapping[str, Any], topology: NationalTopology, source: str = "stack") -> StackSettings:
    """Validate the ``paydar:`` configuration against the topology; raises ``TopologyError`` naming every issue."""
    try:
        settings = StackSettings.model_validate(dict(raw))
    except ValidationError as exc:
        raise TopologyError(source, [Issue("paydar:" + ".".join(str(p) for p in err["loc"]), err["msg"],
                                           "see the commented Pulumi.staging.yaml") for err in exc.errors()]) from None
    issues = []
    for key in ("kubeconfigs", "region_cidrs"):
        given = getattr(settings, key)
        issues += [Issue(f"paydar:{key}", f"no entry for region {region!r}", f"add {region}: ... under {key}")
                   for region in topology.region_names if region not in given]
        issues += [Issue(f"paydar:{key}.{region}", f"region {region!r} is not in the topology",
                         f"use one of: {', '.join(topology.region_names)}")
                   for region in given if region not in topology.region_names]
    if issues:
        raise TopologyError(source, issues)
    return settings
