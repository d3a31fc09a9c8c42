"""Paydar's CrossGuard policy pack: `pulumi preview --policy-pack policy` enforces it.

The rules live in infra/production/policies.py (the tests and `paydar plan` run the same ones).
"""

from pulumi_policy import PolicyPack

from paydar.infra.production.policy_pack import PACK_NAME, stack_policies

PolicyPack(name=PACK_NAME, policies=stack_policies())
