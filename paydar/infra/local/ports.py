"""Port allocation for a local realization: free, loopback, and outside the ephemeral range.

Ports are probed by binding 127.0.0.1 before they are handed out, and picked at random in
20000-29999, below Linux's ephemeral range (32768+) so outgoing connections never take them,
so two realizations on one machine do not collide. SeaweedFS also binds port+10000 for gRPC:
:meth:`PortAllocator.take_pair` keeps that one free too (it stays below 32768).
"""

from __future__ import annotations

import random
import socket

__all__ = ["PortAllocator"]

LOW, HIGH, GRPC_OFFSET = 20000, 30000, 10000


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class PortAllocator:
    """Hands out distinct free ports; ``taken`` grows as ports are given."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.SystemRandom()
        self.taken: set[int] = set()

    def take(self) -> int:
        for _ in range(2000):
            port = self._rng.randrange(LOW, HIGH)
            if port not in self.taken and _free(port):
                self.taken.add(port)
                return port
        raise RuntimeError(f"no free port found in {LOW}-{HIGH - 1} on 127.0.0.1; stop other realizations")

    def take_pair(self) -> int:
        """A port whose gRPC companion (port + 10000) is free as well."""
        for _ in range(2000):
            port = self._rng.randrange(LOW, 32768 - GRPC_OFFSET)
            grpc = port + GRPC_OFFSET
            if not {port, grpc} & self.taken and _free(port) and _free(grpc):
                self.taken |= {port, grpc}
                return port
        raise RuntimeError("no free port pair (port, port+10000) found for SeaweedFS on 127.0.0.1")
