"""HTTP service scaffolding shared by every Paydar process (nodes, gateways, probers, controllers).

One place for: JSON error bodies that say what to do, request-body parsing against a
pydantic model with 4xx errors naming the field, load shedding (bounded in-flight requests
and a bounded queue; overload answers 503 + Retry-After instead of falling over), loopback
binding, structured logging, liveness and metrics handlers, and the component entry point.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol, TypeVar

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, ValidationError

__all__ = [
    "LoadShedder",
    "Lifecycle",
    "json_error",
    "livez",
    "metrics_response",
    "read_model",
    "require_loopback",
    "run_component",
    "serve",
    "setup_logging",
]

if TYPE_CHECKING:
    from infra.component import ComponentConfig

M = TypeVar("M", bound=BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
LOOPBACK = frozenset({"127.0.0.1", "localhost"})


def json_error(status: int, message: str, **extra: object) -> web.Response:
    """A JSON error response; ``message`` says what went wrong and what to do."""
    return web.json_response({"error": message, **extra}, status=status)


async def read_model(request: web.Request, model: type[M]) -> M:
    """Parse the request body as ``model``; raise an HTTP 4xx that names the problem."""
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(
            text=_error_text("send the body as JSON with Content-Type: application/json"),
            content_type="application/json")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise web.HTTPRequestEntityTooLarge(
            max_size=request.app._client_max_size, actual_size=request.content_length or 0,  # noqa: SLF001
            text=_error_text(f"request body exceeds the {request.app._client_max_size} byte limit"),  # noqa: SLF001
            content_type="application/json") from None
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
    """Bounded concurrency: at most ``max_inflight`` requests run, ``max_queued`` wait.

    Anything beyond is shed at once with 503 + Retry-After, so a flood costs a bounded
    amount of memory and the process stays responsive for health checks (exempt paths).
    """

    def __init__(self, *, max_inflight: int, max_queued: int, exempt: frozenset[str],
                 on_shed: Callable[[], None] = lambda: None) -> None:
        self._slots = asyncio.Semaphore(max_inflight)
        self.max_queued = max_queued
        self.queued = 0
        self.exempt = exempt
        self._on_shed = on_shed

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in self.exempt:
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


def require_loopback(host: str) -> None:
    """Refuse to listen beyond loopback: the local realization never exposes a port."""
    if host not in LOOPBACK:
        raise SystemExit(f"refusing to listen on {host!r}: the local realization binds 127.0.0.1 only")


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Start ``app`` on host:port (loopback only) and return its runner."""
    require_loopback(host)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_address=True).start()
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

    from infra.errors import PaydarError

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
