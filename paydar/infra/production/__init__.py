"""The production realization: a Pulumi program that declares the national system on Kubernetes
clusters (one per region) and a MinIO vault, from the same topology model as the local one.

``paths`` says which component may talk to which (the design's network), ``settings`` reads
and checks a stack's configuration, ``region`` and ``vault`` are the component resources,
``program`` composes them (``infra/__main__.py`` runs it under the Pulumi CLI), ``graph``
renders the resource graph offline with Pulumi's mock runtime, and ``policies`` are the
resilience rules, checked both by the CrossGuard pack in ``policy/`` and on the mocked graph.
"""
