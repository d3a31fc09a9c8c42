"""A TCP proxy on one directed inter-region link, so chaos can cut, slow or blackhole it.

Every region of the local realization runs on 127.0.0.1, so no network separates them. One
process per directed link (``<source> -> <target>``) holds a listener per component of the
destination region, forwarding to that component's real port; the source region reaches the
destination only through these listeners.

The idea is Toxiproxy's, but Toxiproxy is a Go binary that cannot be installed from PyPI, and
the local realization installs everything with pip. We need only four modes and a delay, so
it is written here: asyncio streams for the data path, aiohttp for the admin API
(:mod:`paydar.infra.local.linkadmin`, which also holds the client :class:`LinkAdmin`).

Modes (:class:`LinkMode`) and ``delay_ms`` apply to open connections as well as new ones.
A connection that lost bytes in ``drop`` is closed when the link heals: real TCP would have
retransmitted them, and delivering the rest of a stream with a hole hands the peers garbage.
``tamper`` plays a compromised link: it forwards, but rewrites the digits of every message body
both ways (keeping lengths, so HTTP framing holds and peers see well-formed, wrong messages).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from aiohttp import web
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from paydar.infra.local.linkadmin import (
    LinkAdmin,
    LinkAdminError,
    LinkChange,
    LinkMode,
    LinkState,
    RouteInfo,
    build_admin_app,
)
from paydar.model.errors import PaydarError
from paydar.server.web import LOOPBACK, run_until_signalled, serve, setup_logging

__all__ = ["LinkAdmin", "LinkAdminError", "LinkConfig", "LinkConfigError", "LinkMode", "LinkProxy",
           "Route", "load_config", "main", "read_token", "run"]

log = logging.getLogger("paydar.linkproxy")

TARGET_HOST = "127.0.0.1"
READ_SIZE = 64 * 1024
QUEUE_CHUNKS = 16  # per direction: at most 1 MiB waits out a delay before reads stop (backpressure)
CONNECT_TIMEOUT = 5.0
_EOF = b""  # queued after the last chunk so the far side sees the close only after the data


class LinkConfigError(PaydarError):
    """The link proxy's config or token file cannot be used; the message says how to fix it."""


class Route(BaseModel):
    """One listener: ``name`` is the target component id, forwarded to 127.0.0.1:target_port."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    listen_port: int = Field(ge=1, le=65535)
    target_port: int = Field(ge=1, le=65535)


class LinkConfig(BaseModel):
    """The JSON config of one link proxy process."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    link: str = Field(min_length=1, description='directed path, "<source>-><target>"')
    host: str = "127.0.0.1"
    admin_port: int = Field(ge=1, le=65535)
    token_file: Path
    routes: list[Route] = Field(min_length=1)
    max_connections: int = Field(default=512, ge=1, le=65536)

    @field_validator("host")
    @classmethod
    def _loopback_only(cls, host: str) -> str:
        if host not in LOOPBACK:
            raise ValueError(f"refusing to listen on {host!r}: the local realization binds loopback only; "
                             "set host to 127.0.0.1")
        return host

    @model_validator(mode="after")
    def _distinct_ports(self) -> LinkConfig:
        ports = [self.admin_port, *(r.listen_port for r in self.routes)]
        if len(set(ports)) != len(ports):
            raise ValueError(f"admin_port and every listen_port must be distinct; got {ports}")
        return self


def load_config(path: Path) -> LinkConfig:
    """Read and validate the config file; raise :class:`LinkConfigError` naming every problem."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise LinkConfigError(f"cannot read link config {path}: {exc.strerror}") from None
    try:
        return LinkConfig.model_validate_json(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}" for e in exc.errors())
        raise LinkConfigError(f"invalid link config {path}: {problems}") from None


def read_token(path: Path) -> str:
    """The bearer token (stripped); refuse a missing, empty, or group/world-readable file."""
    try:
        if path.stat().st_mode & 0o077:
            raise LinkConfigError(f"token file {path} is open to group or others; run: chmod 600 {path}")
        token = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise LinkConfigError(f"cannot read token file {path}: {exc}") from None
    if not token:
        raise LinkConfigError(f"token file {path} is empty; write the admin token into it")
    return token


@dataclass(eq=False)
class _Connection:
    """One client connection and, once connected, its upstream; ``tainted`` if it lost bytes."""

    route: Route
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    tainted: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def abort(self) -> None:
        """Drop both sockets now: a cut must not wait for buffers to flush to a peer that may not read."""
        for task in self.tasks:
            task.cancel()
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.transport.abort()

    def close(self) -> None:
        """End a connection whose both directions finished: flush what is buffered, then close."""
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.close()


class LinkProxy:
    """The data path of one link: listeners, open connections, and the mode they obey."""

    def __init__(self, config: LinkConfig) -> None:
        self.config = config
        self.mode = LinkMode.PASS
        self.delay_ms = 0
        self.bytes_forwarded = 0
        self._connections: set[_Connection] = set()
        self._servers: list[asyncio.Server] = []
        self._handlers: set[asyncio.Task[None]] = set()
        self._refused = 0
        self._last_refusal_log = float("-inf")

    def state(self) -> LinkState:
        """A snapshot for the admin API."""
        return LinkState(link=self.config.link, mode=self.mode, delay_ms=self.delay_ms,
                         connections=len(self._connections), bytes_forwarded=self.bytes_forwarded,
                         routes=[RouteInfo(**r.model_dump()) for r in self.config.routes])

    def apply(self, change: LinkChange) -> LinkState:
        """Apply a validated change to the link and to every open connection."""
        before, before_delay = self.mode, self.delay_ms
        self.mode = change.mode if change.mode is not None else self.mode
        self.delay_ms = change.delay_ms if change.delay_ms is not None else self.delay_ms
        doomed = [c for c in self._connections
                  if self.mode is LinkMode.CUT or (self.mode is LinkMode.PASS and c.tainted)]
        for conn in doomed:
            conn.abort()
        log.info("link=%s mode %s -> %s, delay_ms %d -> %d, closed %d connection(s)",
                 self.config.link, before, self.mode, before_delay, self.delay_ms, len(doomed))
        return self.state()

    async def start(self) -> None:
        """Open one listener per route."""
        for route in self.config.routes:
            server = await asyncio.start_server(partial(self._accept, route), self.config.host,
                                                route.listen_port, reuse_address=True)
            self._servers.append(server)
            log.info("link=%s route=%s listening on %s:%d -> %s:%d", self.config.link, route.name,
                     self.config.host, route.listen_port, TARGET_HOST, route.target_port)

    async def stop(self) -> None:
        """Stop listening and close every connection."""
        for server in self._servers:
            server.close()
        for conn in list(self._connections):
            conn.abort()
        await asyncio.gather(*(s.wait_closed() for s in self._servers))
        if self._handlers:
            # Let handlers end on their own: Python 3.11 logs a cancelled handler as an error.
            await asyncio.wait(self._handlers, timeout=1.0)
        log.info("link=%s stopped", self.config.link)

    async def _accept(self, route: Route, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if (handler := asyncio.current_task()) is not None:
            self._handlers.add(handler)
            handler.add_done_callback(self._handlers.discard)
        if self.mode is LinkMode.CUT:
            writer.transport.abort()
            return
        if len(self._connections) >= self.config.max_connections:
            self._refuse(route, writer)
            return
        conn = _Connection(route, writer)
        self._connections.add(conn)
        finished = False
        try:
            if self.mode is LinkMode.DROP:
                # A blackhole is not a refusal: never contact the target, swallow what arrives.
                conn.tainted = True
                await self._pump(conn, reader, None)
            elif (upstream := await self._connect(conn)) is not None:
                await self._forward(conn, reader, upstream)
                finished = True
        except OSError:
            pass  # a peer reset, or the link was cut: the connection simply ends
        finally:
            self._connections.discard(conn)
            if finished:
                conn.close()
            else:
                conn.abort()

    async def _connect(self, conn: _Connection) -> asyncio.StreamReader | None:
        route = conn.route
        try:
            reader, conn.upstream = await asyncio.wait_for(
                asyncio.open_connection(TARGET_HOST, route.target_port), CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            # The client sees its connection closed, as it would if the target itself refused.
            why = str(exc) or f"no answer in {CONNECT_TIMEOUT:.0f}s"
            log.warning("link=%s route=%s target %s:%d unreachable: %s",
                        self.config.link, route.name, TARGET_HOST, route.target_port, why)
            return None
        return None if self.mode is LinkMode.CUT else reader  # cut while we were connecting

    def _refuse(self, route: Route, writer: asyncio.StreamWriter) -> None:
        writer.transport.abort()
        self._refused += 1
        now = asyncio.get_running_loop().time()
        if now - self._last_refusal_log >= 1.0:  # one line per second, not one per refused connection
            log.warning("link=%s route=%s at max_connections=%d: refused %d connection(s)",
                        self.config.link, route.name, self.config.max_connections, self._refused)
            self._refused, self._last_refusal_log = 0, now

    async def _forward(self, conn: _Connection, client: asyncio.StreamReader,
                       upstream: asyncio.StreamReader) -> None:
        assert conn.upstream is not None
        to_target: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(QUEUE_CHUNKS)
        to_client: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(QUEUE_CHUNKS)
        conn.tasks = [asyncio.create_task(coro) for coro in (
            self._pump(conn, client, to_target), self._deliver(conn, to_target, conn.upstream),
            self._pump(conn, upstream, to_client), self._deliver(conn, to_client, conn.client))]
        try:
            # The first failure (a reset, an abort by cut) ends the whole connection.
            await asyncio.gather(*conn.tasks)
        except asyncio.CancelledError:
            if (me := asyncio.current_task()) is not None and me.cancelling():
                raise  # this handler itself is being cancelled
            raise ConnectionAbortedError("closed by the link") from None  # abort() cancelled the pumps
        finally:
            for task in conn.tasks:
                task.cancel()
            # Collect every outcome so no second failure is reported as "never retrieved".
            await asyncio.gather(*conn.tasks, return_exceptions=True)

    async def _pump(self, conn: _Connection, reader: asyncio.StreamReader,
                    queue: asyncio.Queue[tuple[float, bytes]] | None) -> None:
        """Read chunks and stamp them with when they may be delivered; discard them in drop."""
        loop = asyncio.get_running_loop()
        while chunk := await reader.read(READ_SIZE):
            if queue is None or self.mode is LinkMode.DROP:
                conn.tainted = True
                continue
            if self.mode is LinkMode.TAMPER:
                chunk, conn.tainted = tampered(chunk), True
            await queue.put((loop.time() + self.delay_ms / 1000, chunk))
        if queue is None or conn.tainted:
            # A peer hanging up ends the connection even in drop: holding sockets for peers that
            # are gone would exhaust max_connections during a long blackhole.
            raise ConnectionAbortedError("peer closed a connection that lost bytes")
        await queue.put((loop.time() + self.delay_ms / 1000, _EOF))

    async def _deliver(self, conn: _Connection, queue: asyncio.Queue[tuple[float, bytes]],
                       writer: asyncio.StreamWriter) -> None:
        """Write chunks in order once their delay has passed; half-close after the last one."""
        loop = asyncio.get_running_loop()
        while True:
            due, chunk = await queue.get()
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)
            if self.mode is LinkMode.DROP:  # queued before the drop began: lost all the same
                conn.tainted = True
                continue
            if chunk == _EOF:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(chunk)
            await writer.drain()
            self.bytes_forwarded += len(chunk)


_SWAP_DIGITS = bytes.maketrans(b"0123456789", b"1234567890")


def tampered(chunk: bytes) -> bytes:
    """``chunk`` with every digit after the HTTP header block changed (a length-keeping rewrite:
    positions, hashes, signatures and numbers all become wrong, and framing stays valid)."""
    head, sep, body = chunk.partition(b"\r\n\r\n")
    if not sep:  # a continuation of a body (or a header block split across reads)
        return chunk.translate(_SWAP_DIGITS) if b"HTTP/1." not in chunk else chunk
    return head + sep + body.translate(_SWAP_DIGITS)


async def run(config: LinkConfig, token: str) -> None:
    """Serve the link and its admin API until SIGTERM or SIGINT."""
    proxy = LinkProxy(config)
    runners: list[web.AppRunner] = []

    async def start() -> None:
        await proxy.start()
        runners.append(await serve(build_admin_app(proxy, token), config.host, config.admin_port))
        log.info("link=%s admin API on %s:%d", config.link, config.host, config.admin_port)

    async def stop() -> None:
        await proxy.stop()
        for runner in runners:
            await runner.cleanup()

    await run_until_signalled(start, stop)


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m paydar.infra.local.linkproxy --config PATH``; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m paydar.infra.local.linkproxy",
                                     description="TCP proxy on one inter-region link.")
    parser.add_argument("--config", type=Path, required=True, help="JSON config of this link")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = parser.parse_args(argv)
    setup_logging("linkproxy", args.log_level)
    try:
        config = load_config(args.config)
        token = read_token(config.token_file)
    except LinkConfigError as exc:
        log.error("cannot start: %s", exc)
        return 2
    try:
        asyncio.run(run(config, token))
    except OSError as exc:  # a port already taken, mostly
        log.error("link=%s cannot listen: %s", config.link, exc)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
