"""The resilience policies as CrossGuard stack policies (``policy/__main__.py`` packs them).

Kept apart from ``policy/__main__.py`` because building a ``PolicyPack`` starts its gRPC
server and blocks: these objects are importable, and the tests call their ``validate``.
"""

from __future__ import annotations

from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    ReportViolation,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy import Policy as PulumiPolicy

from paydar.infra.production.graph import Resource
from paydar.infra.production.policies import POLICIES, Policy

__all__ = ["PACK_NAME", "stack_policies"]

PACK_NAME = "paydar-resilience"


def _validator(policy: Policy) -> Any:
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        resources = [Resource(r.resource_type, r.name, dict(r.props)) for r in args.resources]
        for message in policy.check(resources):
            report_violation(message, None)

    return validate


def stack_policies() -> list[PulumiPolicy]:
    """One mandatory stack policy per resilience rule."""
    return [StackValidationPolicy(name=p.name, description=p.description, validate=_validator(p),
                                  enforcement_level=EnforcementLevel.MANDATORY) for p in POLICIES]
