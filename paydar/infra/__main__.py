"""Pulumi's entry point (``main: infra/`` in Pulumi.yaml): the program lives in paydar.infra.production."""

from paydar.infra.production.program import main

main()
