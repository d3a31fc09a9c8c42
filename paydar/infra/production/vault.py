"""The vault at its site: one MinIO bucket per service, versioned and locked at creation, a user
per region that may only put and read its own prefix, and an admin user no region receives.

pulumi-minio has no resource for a bucket's default object-lock retention, so
:class:`ObjectLockRetention` is a dynamic resource that sets it with boto3 (idempotently: the
same call on create and update). The bucket is created with object locking on, as MinIO
requires; retention is COMPLIANCE, so nobody, the admin included, can shorten it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_minio as minio
from pulumi.dynamic import CreateResult, ResourceProvider, UpdateResult

from paydar.infra.production.settings import VaultSettings
from paydar.model.buckets import bucket_name
from paydar.model.topology import NationalTopology

__all__ = ["REGION_ACTIONS", "ObjectLockRetention", "VaultArgs", "VaultStack", "region_policy"]

REGION_ACTIONS = ("s3:PutObject", "s3:GetObject", "s3:GetObjectVersion")
"""What a region's nodes need: put backups and manifests, read them back. No list, no delete."""


def region_policy(region: str, buckets: list[str]) -> str:
    """The IAM policy of a region's vault user: its own prefix of each bucket it backs up into."""
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": list(REGION_ACTIONS),
        "Resource": [f"arn:aws:s3:::{bucket}/{region}/*" for bucket in buckets]}]}, sort_keys=True)


class _RetentionProvider(ResourceProvider):
    """Sets a bucket's default retention through the S3 API (runs only under the Pulumi engine)."""

    def _apply(self, props: dict[str, Any]) -> None:
        import boto3
        from botocore.config import Config

        scheme = "https" if props["ssl"] else "http"
        client = boto3.client("s3", endpoint_url=f"{scheme}://{props['server']}", region_name="us-east-1",
                              aws_access_key_id=props["user"], aws_secret_access_key=props["password"],
                              config=Config(s3={"addressing_style": "path"}))
        client.put_object_lock_configuration(Bucket=props["bucket"], ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": props["mode"], "Days": int(props["days"])}}})

    def create(self, props: dict[str, Any]) -> CreateResult:
        self._apply(props)
        return CreateResult(id_=f"{props['bucket']}-retention", outs=props)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        self._apply(news)
        return UpdateResult(outs=news)


class ObjectLockRetention(pulumi.dynamic.Resource):
    """Default COMPLIANCE retention of a locked bucket."""

    def __init__(self, name: str, *, bucket: pulumi.Input[str], days: int, settings: VaultSettings,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(_RetentionProvider(), name, {
            "bucket": bucket, "mode": "COMPLIANCE", "days": days, "server": settings.server, "ssl": settings.ssl,
            "user": pulumi.Output.secret(settings.user), "password": pulumi.Output.secret(settings.password)}, opts)


@dataclass(frozen=True)
class VaultArgs:
    topology: NationalTopology
    settings: VaultSettings
    site: str


@dataclass(frozen=True)
class RegionCredentials:
    """A region's vault identity, for that region's nodes only."""

    access_key: pulumi.Output[str]
    secret_key: pulumi.Output[str]


class VaultStack(pulumi.ComponentResource):
    """Buckets, versioning, retention, and users of the vault site."""

    def __init__(self, name: str, args: VaultArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("paydar:vault:VaultStack", name, None, opts)
        topology, settings = args.topology, args.settings
        provider = minio.Provider(f"{name}-minio", minio_server=settings.server, minio_ssl=settings.ssl,
                                  minio_user=pulumi.Output.secret(settings.user),
                                  minio_password=pulumi.Output.secret(settings.password),
                                  opts=pulumi.ResourceOptions(parent=self))
        child = pulumi.ResourceOptions(parent=self, provider=provider)
        days = settings.retention_days or topology.vault.retention_days
        self.buckets: dict[str, minio.S3Bucket] = {}
        for service in topology.services:
            bucket = bucket_name(service.id)
            created = minio.S3Bucket(f"{name}-{bucket}", bucket=bucket, acl="private", object_locking=True,
                                     force_destroy=False, opts=child)
            minio.S3BucketVersioning(f"{name}-{bucket}-versioning", bucket=created.bucket,
                                     versioning_configuration={"status": "Enabled"}, opts=child)
            ObjectLockRetention(f"{name}-{bucket}-retention", bucket=created.bucket, days=days, settings=settings,
                                opts=pulumi.ResourceOptions(parent=self))
            self.buckets[service.id] = created
        admin = minio.IamUser(f"{name}-admin", name="paydar-admin", opts=child)
        admin_policy = minio.IamPolicy(f"{name}-admin-policy", name="paydar-admin", opts=child, policy=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:*"],
                                                    "Resource": ["arn:aws:s3:::paydar-*"]}]}, sort_keys=True))
        minio.IamUserPolicyAttachment(f"{name}-admin-attachment", user_name=admin.name, policy_name=admin_policy.name,
                                      opts=child)
        self.credentials: dict[str, RegionCredentials] = {}
        for region in topology.region_names:
            hosted = [bucket_name(s.id) for s in topology.services_in(region)]
            user = minio.IamUser(f"{name}-region-{region}", name=f"paydar-region-{region}", opts=child)
            policy = minio.IamPolicy(f"{name}-region-{region}-policy", name=f"paydar-region-{region}",
                                     policy=region_policy(region, hosted), opts=child)
            minio.IamUserPolicyAttachment(f"{name}-region-{region}-attachment", user_name=user.name,
                                          policy_name=policy.name, opts=child)
            self.credentials[region] = RegionCredentials(user.name, pulumi.Output.secret(user.secret))
        self.register_outputs({"buckets": {sid: b.bucket for sid, b in self.buckets.items()},
                               "region_users": {r: c.access_key for r, c in self.credentials.items()}})
