"""Pulumi's entry point (``main: infra/`` in Pulumi.yaml): the program lives in infra.production."""

from infra.production.program import main

main()
