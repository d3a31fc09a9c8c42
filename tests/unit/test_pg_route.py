"""The TCP route an app reaches its database by: each connection goes to the server the table
names when it connects, a route at its cap sheds, and a move of the primary closes every
connection to the old one."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, Counter

from paydar.infra.local.ports import PortAllocator
from paydar.postgres.route import Route


async def _server(port: int, tag: bytes) -> asyncio.Server:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(100):
            writer.write(tag + data)
            await writer.drain()
        writer.close()

    return await asyncio.start_server(answer, "127.0.0.1", port)


async def _ask(port: int, text: bytes) -> tuple[bytes, asyncio.StreamWriter]:
    """What comes back for ``text`` (nothing when the route closed the connection)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(text)
        await writer.drain()
        return await asyncio.wait_for(reader.read(100), 5), writer
    except ConnectionError:
        return b"", writer


def test_a_route_follows_the_table_sheds_at_its_cap_and_closes_connections_to_a_deposed_server() -> None:
    async def scenario() -> None:
        ports = PortAllocator()
        old_port, new_port, route_port = ports.take(), ports.take(), ports.take()
        servers = [await _server(old_port, b"old:"), await _server(new_port, b"new:")]
        target: dict[str, int | None] = {"port": old_port}
        outcomes = Counter("c", "c", ["route", "outcome"], registry=CollectorRegistry())
        route = Route(name="primary", port=route_port, target=lambda: target["port"], max_connections=2,
                      outcomes=outcomes)
        await route.start()
        try:
            first, writer1 = await _ask(route_port, b"a")
            second, writer2 = await _ask(route_port, b"b")
            assert (first, second) == (b"old:a", b"old:b")
            shed, writer3 = await _ask(route_port, b"c")
            assert shed == b"", "a third connection is closed unread: the route is at its cap"
            target["port"] = new_port
            assert route.retarget() == 2, "both connections to the deposed server are closed"
            moved, writer4 = await _ask(route_port, b"d")
            assert moved == b"new:d"
            target["port"] = None  # fenced: no primary
            refused, writer5 = await _ask(route_port, b"e")
            assert refused == b""
            for writer in (writer1, writer2, writer3, writer4, writer5):
                writer.close()
        finally:
            await route.stop()
            for server in servers:
                server.close()
                await server.wait_closed()

    asyncio.run(scenario())
