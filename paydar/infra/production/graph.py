"""The resource graph of a stack, rendered offline with Pulumi's mock runtime (no CLI, no cloud).

Every resource the program declares is recorded as the engine would receive it (type token,
name, inputs in the engine's camelCase); the mocks answer each with its own inputs, so
outputs that only a cloud can fill (load-balancer addresses, generated keys) stay empty.
``paydar plan`` prints a summary of this graph and the policies' verdict; the tests check it.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any

import pulumi

from paydar.infra.production.settings import StackSettings
from paydar.model.topology import NationalTopology

__all__ = ["Graph", "Resource", "render"]

_LOCK = threading.Lock()  # the mock runtime is process-global
_SIGNATURE = "4dabf18193072939515e22adb298388d"  # how the engine's wire format marks a secret value


@dataclass(frozen=True)
class Resource:
    """One declared resource: type token, logical name, inputs."""

    type: str
    name: str
    props: dict[str, Any]

    @property
    def region(self) -> str | None:
        """The region whose component declared it (names are prefixed ``region-<name>-``)."""
        return self.name.split("-", 2)[1] if self.name.startswith("region-") else None


@dataclass
class Graph:
    resources: list[Resource] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)

    def of_type(self, token: str) -> list[Resource]:
        return [r for r in self.resources if r.type == token]


class _Recorder(pulumi.runtime.Mocks):
    def __init__(self, graph: Graph) -> None:
        self.graph = graph

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.graph.resources.append(Resource(args.typ, args.name, _revealed(dict(args.inputs))))
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


def _revealed(value: Any) -> Any:
    """Inputs with secret markers unwrapped, as policies see them (a review needs the structure,
    and the mock runtime holds no real secret: stack secrets are placeholders here)."""
    if isinstance(value, dict):
        if _SIGNATURE in value and "value" in value:
            return _revealed(value["value"])
        return {k: _revealed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_revealed(v) for v in value]
    return value


def render(topology: NationalTopology, topology_yaml: str, settings: StackSettings, *, project: str = "paydar",
           stack: str = "staging") -> Graph:
    """Run the program under the mock runtime and return what it declared."""
    from paydar.infra.production.program import declare

    graph = Graph()
    with _LOCK:
        # The mock runtime drives the thread's current event loop; a caller that used
        # asyncio.run() left none, so give it a fresh one for this render.
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            pulumi.runtime.set_mocks(_Recorder(graph), project=project, stack=stack, preview=False)

            @pulumi.runtime.test  # type: ignore[untyped-decorator]  # pulumi ships this decorator untyped
            def program() -> pulumi.Output[None]:
                outputs = declare(topology, topology_yaml, settings)
                return pulumi.Output.all(**outputs).apply(graph.outputs.update)

            program()
        finally:
            asyncio.set_event_loop(None)
            loop.close()
    return graph
