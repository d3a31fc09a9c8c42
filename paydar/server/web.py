"""HTTP service scaffolding shared by every Paydar process (nodes, gateways, probers, controllers).

One place for: JSON error bodies that say what to do, request-body parsing against a
pydantic model with 4xx errors naming the field, load shedding (bounded in-flight requests
and a bounded queue; overload answers 503 + Retry-After instead of falling over), loopback
binding, structured logging, liveness and metrics handlers, and the component entry point.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol, TypeVar

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, ValidationError

from paydar.model.errors import TableRejected, TableRejection

__all__ = [
    "HEALTH_PATHS",
    "Lifecycle",
    "LoadShedder",
    "json_error",
    "livez",
    "metrics_response",
    "parse_model",
    "read_body",
    "read_model",
    "require_loopback",
    "run_component",
    "serve",
    "setup_logging",
    "standard_shedders",
    "table_refused",
]

if TYPE_CHECKING:
    from paydar.server.component import ComponentConfig

M = TypeVar("M", bound=BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
log = logging.getLogger(__name__)
LOOPBACK = frozenset({"127.0.0.1", "localhost"})


def json_error(status: int, message: str, **extra: object) -> web.Response:
    """A JSON error response; ``message`` says what went wrong and what to do."""
    return web.json_response({"error": message, **extra}, status=status)


def unauthorized(request: web.Request, admin_token: str) -> web.Response | None:
    """A 401 unless the request carries this component's admin token (compared in constant time)."""
    token = request.headers.get("Authorization", "").removeprefix("Bearer ")
    if hmac.compare_digest(token.encode(), admin_token.encode()):
        return None
    return json_error(401, "admin endpoint: send Authorization: Bearer <admin token from the state dir>")


BODY_SECONDS = 10.0
"""How long a sender may take to deliver a request body; a half-sent body is dropped after it."""
KEEPALIVE_SECONDS = 15.0
"""Idle connections (and requests whose headers never finish) are closed after this."""
MAX_CONNECTIONS = 2048
MAX_CONNECTIONS_PER_PEER = 1024


async def read_body(request: web.Request, limit: int) -> bytes:
    """The request body, at most ``limit`` bytes *as read* (chunked bodies included), within
    :data:`BODY_SECONDS`; raise an HTTP 413 or 408 that says so.

    ``Content-Length`` alone bounds nothing: a chunked body has none, so the bytes are counted.
    """
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0

    async def drain() -> None:
        nonlocal size
        while True:
            chunk = await request.content.readany()
            if not chunk:
                return
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)

    try:
        await asyncio.wait_for(drain(), BODY_SECONDS)
    except RequestPayloadError:  # e.g. a Content-Encoding: gzip body that is not gzip
        raise web.HTTPBadRequest(text=_error_text("request body could not be read as its headers describe it "
                                                  "(Content-Encoding, chunking); send it plain or correctly "
                                                  "encoded"), content_type="application/json") from None
    except TimeoutError:
        raise web.HTTPRequestTimeout(text=_error_text(f"request body not received within {BODY_SECONDS:.0f}s"),
                                     content_type="application/json") from None
    return b"".join(chunks)


def _too_large(limit: int) -> web.HTTPRequestEntityTooLarge:
    return web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=limit + 1,
                                         text=_error_text(f"request body exceeds the {limit} byte limit"),
                                         content_type="application/json")


async def read_model(request: web.Request, model: type[M], *, limit: int) -> M:
    """Parse the request body (at most ``limit`` bytes) as ``model``; raise an HTTP 4xx that
    names the problem."""
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(
            text=_error_text("send the body as JSON with Content-Type: application/json"),
            content_type="application/json")
    return parse_model(await read_body(request, limit), model)


def parse_model(raw: bytes, model: type[M]) -> M:
    """Validate JSON bytes as ``model``; an HTTP 400 naming the first problems otherwise."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in exc.errors()[:5])
        raise web.HTTPBadRequest(text=_error_text(f"invalid request body: {problems}"),
                                 content_type="application/json") from None


async def livez(_: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return web.json_response({"status": "alive"})


def metrics_response(registry: CollectorRegistry) -> web.Response:
    """A Prometheus scrape of ``registry``."""
    return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


def _error_text(message: str) -> str:
    import json

    return json.dumps({"error": message})


class LoadShedder:
    """Bounded concurrency for the requests ``scope`` selects: at most ``max_inflight`` run,
    ``max_queued`` wait.

    Anything beyond is shed at once with 503 + Retry-After, so a flood costs a bounded amount
    of memory. Every route of every component belongs to some shedder's scope; routes are
    split into separate scopes (citizens, control, health) so that a flood of one kind
    cannot starve the others.
    """

    def __init__(self, *, max_inflight: int, max_queued: int, scope: Callable[[str], bool],
                 on_shed: Callable[[], None] = lambda: None) -> None:
        self._slots = asyncio.Semaphore(max_inflight)
        self.max_queued = max_queued
        self.queued = 0
        self.scope = scope
        self._on_shed = on_shed

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not self.scope(request.path):
            return await handler(request)
        if self._slots.locked() and self.queued >= self.max_queued:
            self._on_shed()
            return web.json_response(
                {"error": "overloaded: too many requests in flight; retry after the delay given"},
                status=503, headers={"Retry-After": "1"})
        self.queued += 1
        try:
            await self._slots.acquire()
        finally:
            self.queued -= 1
        try:
            return await handler(request)
        finally:
            self._slots.release()


HEALTH_PATHS = frozenset({"/livez", "/readyz", "/state", "/metrics"})


def standard_shedders(*, max_inflight: int, max_queued: int, citizen: Callable[[str], bool],
                      on_shed: Callable[[], None],
                      bounded_elsewhere: Callable[[str], bool] = lambda _path: False) -> list[LoadShedder]:
    """Three shedders that cover every route: citizen requests (bounded as the topology's
    ``limits`` say), health checks, and the rest (control: tables, replication, proposals,
    admin), each with its own slots. Control and health get fixed bounds: they carry a few
    requests per peer, and must keep flowing when citizen limits are set very low. Paths
    ``bounded_elsewhere`` (an http service's, bounded per service by the gateway's proxy) are in
    none of them, so they can never take the control routes' slots."""

    def control(path: str) -> bool:
        return not citizen(path) and path not in HEALTH_PATHS and not bounded_elsewhere(path)

    return [LoadShedder(max_inflight=max_inflight, max_queued=max_queued, scope=citizen, on_shed=on_shed),
            LoadShedder(max_inflight=32, max_queued=128, scope=control, on_shed=on_shed),
            LoadShedder(max_inflight=32, max_queued=64, scope=HEALTH_PATHS.__contains__, on_shed=on_shed)]


def require_loopback(host: str) -> None:
    """Refuse to listen beyond loopback: the local realization never exposes a port."""
    if host not in LOOPBACK:
        raise SystemExit(f"refusing to listen on {host!r}: the local realization binds 127.0.0.1 only")


class _Gate(asyncio.Protocol):
    """Admits a connection to the HTTP server only within the connection caps.

    Decided per connection before aiohttp sees a byte: a flood of idle connections is
    refused at the door (overload), and never runs the process out of file descriptors.
    """

    def __init__(self, server: web.Server, max_total: int, max_per_peer: int) -> None:
        self.server, self.max_total, self.max_per_peer = server, max_total, max_per_peer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        peer = _peer_of(transport)
        open_ = self.server._connections
        same_peer = sum(1 for t in open_.values() if _peer_of(t) == peer)
        if len(open_) >= self.max_total or same_peer >= self.max_per_peer:
            log.warning("connection refused peer=%s open=%d from_peer=%d: over the connection cap",
                        peer, len(open_), same_peer)
            transport.abort()
            return
        handler = self.server()
        transport.set_protocol(handler)
        handler.connection_made(transport)


def _peer_of(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else "?"


class CappedSite(web.TCPSite):
    """A TCP site whose connections pass through :class:`_Gate`."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, *, max_connections: int,
                 max_per_peer: int) -> None:
        super().__init__(runner, host, port, reuse_address=True)
        self._caps = (max_connections, max_per_peer)

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _Gate(server, *self._caps), self._host, self._port, reuse_address=True)


async def serve(app: web.Application, host: str, port: int, *, max_connections: int = MAX_CONNECTIONS,
                max_per_peer: int = MAX_CONNECTIONS_PER_PEER) -> web.AppRunner:
    """Start ``app`` on host:port (loopback only) and return its runner.

    Idle connections and unfinished headers are closed after :data:`KEEPALIVE_SECONDS`
    (aiohttp's default keeps them an hour), and connections are capped in total and per peer.
    """
    require_loopback(host)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, keepalive_timeout=KEEPALIVE_SECONDS)
    await runner.setup()
    await CappedSite(runner, host, port, max_connections=max_connections, max_per_peer=max_per_peer).start()
    return runner


class _ContextFilter(logging.Filter):
    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def filter(self, record: logging.LogRecord) -> bool:
        record.component = self.component
        return True


def setup_logging(component: str, level: str = "INFO") -> None:
    """Structured, single-line logs on stderr with the component on every line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ContextFilter(component))
    handler.setFormatter(logging.Formatter(
        "%(asctime)s level=%(levelname)s component=%(component)s logger=%(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


async def run_until_signalled(start: Callable[[], Awaitable[None]],
                              stop: Callable[[], Awaitable[None]],
                              reload: Callable[[], object] | None = None) -> None:
    """Run a service until SIGTERM or SIGINT, then stop it cleanly; SIGHUP calls ``reload``."""
    import signal

    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    if reload is not None:
        loop.add_signal_handler(signal.SIGHUP, reload)
    await start()
    await stopping.wait()
    await stop()


class Lifecycle(Protocol):
    """What a component's state object offers its entry point."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


C = TypeVar("C", bound="ComponentConfig")


def run_component(description: str, config_type: type[C],
                  build: Callable[[C], tuple[Lifecycle, web.Application]]) -> None:
    """The ``python -m <component> --config PATH`` entry point every Paydar component shares.

    ``build`` runs inside the event loop and returns the component's state object and its
    HTTP application; the state starts before the port opens and stops after it closes.
    """
    import argparse

    from paydar.model.errors import PaydarError

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", required=True, help="component config JSON written by `paydar up`")
    args = parser.parse_args()
    try:
        config = config_type.load(args.config)
    except PaydarError as exc:
        raise SystemExit(str(exc)) from None
    setup_logging(config.component, config.log_level)
    log = logging.getLogger(config.component)

    async def main() -> None:
        state, app = build(config)
        runner: web.AppRunner | None = None

        async def start() -> None:
            nonlocal runner
            await state.start()
            runner = await serve(app, config.host, config.port)
            log.info("serving port=%d", config.port)

        async def stop() -> None:
            if runner:
                await runner.cleanup()
            await state.stop()
            log.info("stopped")

        # SIGHUP reloads the trust root (``paydar keys rotate`` sends it through supervisord).
        foundation = getattr(state, "f", None)
        await run_until_signalled(start, stop, getattr(foundation, "reload_trust", None))

    asyncio.run(main())


def table_refused(exc: TableRejected, held_version: int) -> web.Response:
    """The answer to a pushed table that was refused: 409 for one not newer than the held table
    (a replay or a race, nothing to fear), 403 for every other rule it broke."""
    status = 409 if exc.reason is TableRejection.NOT_NEWER else 403
    return json_error(status, str(exc), reason=exc.reason.value, held_version=held_version)
