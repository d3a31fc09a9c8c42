"""The vault's bucket names: one bucket per service, named by a rule of the model, not of a client.

Every realization (the local SeaweedFS, production's MinIO) and every reader of the vault
derives a service's bucket here, so they can never disagree.
"""

from __future__ import annotations

import re

from paydar.model.errors import PaydarError

__all__ = ["BUCKET_PREFIX", "InvalidBucketName", "bucket_name", "check_bucket_name"]

BUCKET_PREFIX = "paydar-"
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")


class InvalidBucketName(PaydarError, ValueError):
    """A name is not a valid S3 bucket name; the message gives the rule and the fix."""


def bucket_name(service_id: str) -> str:
    """The vault bucket of a service: ``paydar-<id>``, lowercased, other characters as ``-``.

    Distinct ids can map to one name (``a.b`` and ``a_b``): callers naming many services
    should check the names are distinct.
    """
    slug = re.sub(r"[^a-z0-9-]", "-", service_id.lower()).strip("-")
    if not slug:
        raise InvalidBucketName(
            f"service id {service_id!r} has no letter or digit to name its vault bucket; "
            "give the service an id with letters or digits")
    name = BUCKET_PREFIX + slug
    check_bucket_name(name, f"service id {service_id!r}")
    return name


def check_bucket_name(name: str, origin: str) -> None:
    """Raise :class:`InvalidBucketName` unless ``name`` is a valid S3 bucket name (``origin``: where it came from)."""
    if len(name) > 63:
        raise InvalidBucketName(
            f"bucket name {name!r} from {origin} is {len(name)} characters, S3 allows at most 63; "
            f"use a service id of at most {63 - len(BUCKET_PREFIX)} characters")
    if not _BUCKET_RE.fullmatch(name):
        raise InvalidBucketName(
            f"bucket name {name!r} from {origin} is not a valid S3 name: 3-63 characters of "
            "a-z, 0-9 and '-', starting and ending with a letter or digit")
