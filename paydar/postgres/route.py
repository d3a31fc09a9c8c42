"""A TCP route to a PostgreSQL server that obeys the signed table: how an agency app reaches
"the current primary of service S" without ever naming a host.

Each region's agent listens on two ports on 127.0.0.1: the **primary route**, forwarded at
accept time to the server the table in force names primary (its own, or another region's
through the links), refused while the service is fenced; and the **read route**, to its own
server whatever its role (a standby's reads may be stale). When a new table moves the primary,
every connection the route forwarded to the old one is closed at once, so an app never keeps
writing into a deposed primary; the deposed server is stopped by its own agent as well.

Written here rather than taken from a library: no maintained asyncio TCP proxy chooses its
target per connection from state the caller holds, which is the whole point of this one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import Counter

__all__ = ["Route"]

log = logging.getLogger(__name__)
CONNECT_TIMEOUT = 5.0
CHUNK = 64 * 1024


@dataclass(eq=False)
class _Forwarded:
    target: int
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    def close(self) -> None:
        for writer in self.writers:
            writer.close()


class Route:
    """One listening route; ``target()`` is the server port to forward a new connection to (None: refuse)."""

    def __init__(self, *, name: str, port: int, target: Callable[[], int | None], max_connections: int,
                 outcomes: Counter) -> None:
        self.name = name
        self.port = port
        self.target = target
        self.max_connections = max_connections
        self.outcomes = outcomes
        self.open: set[_Forwarded] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, limit=CHUNK)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for forwarded in list(self.open):
            forwarded.close()

    def retarget(self) -> int:
        """Close every connection whose server is no longer the target; how many were closed."""
        now = self.target()
        stale = [f for f in self.open if f.target != now]
        for forwarded in stale:
            forwarded.close()
        if stale:
            log.info("route=%s closed %d connection(s) to a server the table no longer names", self.name, len(stale))
        return len(stale)

    def _count(self, outcome: str) -> None:
        self.outcomes.labels(route=self.name, outcome=outcome).inc()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        target = self.target()
        if target is None or len(self.open) >= self.max_connections:
            self._count("refused" if target is None else "shed")
            writer.close()
            return
        # The slot is taken before the connect, so a burst of accepts cannot pass the cap.
        forwarded = _Forwarded(target=target, writers=[writer])
        self.open.add(forwarded)
        try:
            try:
                upstream_reader, upstream_writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", target, limit=CHUNK), CONNECT_TIMEOUT)
            except (OSError, TimeoutError):
                self._count("unreachable")
                return
            forwarded.writers.append(upstream_writer)
            if self.target() != target or writer.is_closing():
                # The table moved (or retarget closed it) while it connected: never to the old primary.
                self._count("refused")
                return
            self._count("forwarded")
            await asyncio.gather(_pump(reader, upstream_writer), _pump(upstream_reader, writer))
        finally:
            self.open.discard(forwarded)  # whatever ended it, cancellation included, frees the slot
            forwarded.close()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until either side ends; then end both (a half-open database connection serves no one)."""
    try:
        while chunk := await reader.read(CHUNK):
            writer.write(chunk)
            await writer.drain()  # bounded: never more than the peer reads
    except (OSError, ConnectionError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            writer.close()
