"""The admin API of a link proxy: its wire schema, its aiohttp routes, and a small client.

Served on 127.0.0.1:admin_port by :mod:`paydar.infra.local.linkproxy`:

- ``GET /livez`` → ``{"status": "ok"}``, without auth (readiness);
- everything else needs ``Authorization: Bearer <token>`` (401 otherwise);
- ``GET /v1/link`` → :class:`LinkState`;
- ``POST /v1/link`` with :class:`LinkChange` (``{"mode": "pass|cut|drop|tamper"}`` and/or
  ``{"delay_ms": N}``, at most 4 KiB) → the new :class:`LinkState`; a bad body is a 400 naming
  the field and changes nothing;
- ``POST /v1/link/cut``, ``/v1/link/drop``, ``/v1/link/heal`` (pass, no delay), empty bodies.

Chaos actions, the CLI and tests use :class:`LinkAdmin`, which needs only ``urllib.request``:
its callers (chaos activities, the CLI, pytest) are not asyncio programs.
"""

from __future__ import annotations

import hmac
import json
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Any, Protocol

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from paydar.model.errors import PaydarError
from paydar.server.web import json_error, read_model

__all__ = ["MAX_DELAY_MS", "LinkAdmin", "LinkAdminError", "LinkChange", "LinkControl", "LinkMode", "LinkState",
           "RouteInfo", "build_admin_app"]

MAX_DELAY_MS = 60_000
BODY_LIMIT = 4 * 1024
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class LinkMode(StrEnum):
    """What a link does with traffic."""

    PASS = "pass"  # forward bytes normally
    CUT = "cut"  # close every connection and refuse new ones at once: peers fail fast
    DROP = "drop"  # blackhole: accept, then discard bytes both ways, so peers hang (gray partition)
    TAMPER = "tamper"  # a compromised link: forward, but rewrite message bytes both ways (length kept)


class LinkChange(BaseModel):
    """Body of ``POST /v1/link``: the fields to change; absent fields keep their value.

    Strict, so ``"300"`` or ``true`` is not silently taken for a delay.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    mode: LinkMode | None = None
    delay_ms: int | None = Field(default=None, ge=0, le=MAX_DELAY_MS)


class RouteInfo(BaseModel):
    """One listener of a link: its name, where it listens and the port it forwards to."""

    model_config = ConfigDict(frozen=True)

    name: str
    listen_port: int
    target_port: int


class LinkState(BaseModel):
    """What ``GET /v1/link`` answers (and every change answers with the new state)."""

    model_config = ConfigDict(frozen=True)

    link: str
    mode: LinkMode
    delay_ms: int
    connections: int
    routes: list[RouteInfo]
    bytes_forwarded: int


class LinkControl(Protocol):
    """What the admin API drives (the proxy's data path)."""

    def state(self) -> LinkState:
        """The current state."""

    def apply(self, change: LinkChange) -> LinkState:
        """Apply a validated change and return the new state."""


def build_admin_app(link: LinkControl, token: str) -> web.Application:
    """The admin API: ``/livez`` is open, everything else needs the bearer token."""
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/livez":
            return await handler(request)
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            response = json_error(401, "missing or wrong bearer token: send 'Authorization: Bearer <token>' "
                                       "with the token from this link's token file")
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
        return await handler(request)

    async def livez(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def get_link(_: web.Request) -> web.Response:
        return web.json_response(link.state().model_dump(mode="json"))

    async def post_link(request: web.Request) -> web.Response:
        change = await read_model(request, LinkChange, limit=4096)
        if change.mode is None and change.delay_ms is None:
            return json_error(400, 'nothing to change: send {"mode": "pass|cut|drop|tamper"} and/or {"delay_ms": N}')
        return web.json_response(link.apply(change).model_dump(mode="json"))

    def preset(change: LinkChange) -> Handler:
        async def handle(_: web.Request) -> web.Response:
            return web.json_response(link.apply(change).model_dump(mode="json"))
        return handle

    app = web.Application(client_max_size=BODY_LIMIT, middlewares=[require_token])
    app.router.add_get("/livez", livez)
    app.router.add_get("/v1/link", get_link)
    app.router.add_post("/v1/link", post_link)
    app.router.add_post("/v1/link/cut", preset(LinkChange(mode=LinkMode.CUT)))
    app.router.add_post("/v1/link/drop", preset(LinkChange(mode=LinkMode.DROP)))
    app.router.add_post("/v1/link/tamper", preset(LinkChange(mode=LinkMode.TAMPER)))
    app.router.add_post("/v1/link/heal", preset(LinkChange(mode=LinkMode.PASS, delay_ms=0)))
    return app


class LinkAdminError(PaydarError):
    """The link admin API refused a request or could not be reached; the message says why."""

    def __init__(self, url: str, message: str, status: int | None = None) -> None:
        self.url = url
        self.status = status
        prefix = f"HTTP {status} from {url}" if status is not None else f"cannot reach {url}"
        super().__init__(f"{prefix}: {message}")


class LinkAdmin:
    """Synchronous client of one link proxy's admin API.

    ``base_url`` is ``http://127.0.0.1:<admin_port>``; ``token`` is the bearer token from the
    link token file. Every method returns the link's state after the call.
    """

    def __init__(self, base_url: str, token: str, *, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.timeout = timeout

    def __repr__(self) -> str:
        # Never show the token, even in a traceback.
        return f"LinkAdmin({self.base_url!r})"

    def state(self) -> LinkState:
        """The link's current mode, delay, routes and counters."""
        return self._call("GET", "/v1/link")

    def set(self, mode: LinkMode | str | None = None, delay_ms: int | None = None) -> LinkState:
        """Change the mode and/or the delay; a value the server refuses raises and changes nothing."""
        body: dict[str, Any] = {}
        if mode is not None:
            body["mode"] = str(mode)
        if delay_ms is not None:
            body["delay_ms"] = delay_ms
        return self._call("POST", "/v1/link", body)

    def cut(self) -> LinkState:
        """Close every connection on the link and refuse new ones."""
        return self._call("POST", "/v1/link/cut")

    def drop(self) -> LinkState:
        """Blackhole the link: connections stay open but no byte gets through."""
        return self._call("POST", "/v1/link/drop")

    def tamper(self) -> LinkState:
        """Rewrite what crosses the link (a compromised link): only proofs in the messages protect them."""
        return self._call("POST", "/v1/link/tamper")

    def heal(self) -> LinkState:
        """Forward normally again with no delay."""
        return self._call("POST", "/v1/link/heal")

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> LinkState:
        url = self.base_url + path
        headers = {"Authorization": f"Bearer {self._token}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return LinkState.model_validate_json(response.read())
        except urllib.error.HTTPError as exc:
            raise LinkAdminError(url, _server_message(exc.read()), exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise LinkAdminError(url, f"{reason}; is the link proxy running?") from None


def _server_message(payload: bytes) -> str:
    """The server's ``error`` field, or the raw body when it is not the usual JSON error."""
    try:
        parsed = json.loads(payload)
    except ValueError:
        parsed = None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, str):
        return error
    return payload.decode(errors="replace")[:500] or "(empty response)"
