"""The link proxy as a real process in front of a real TCP echo server: pass, cut, drop, delay, admin API."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from paydar.infra.local.linkproxy import LinkAdmin, LinkAdminError, LinkMode
from paydar.infra.local.ports import PortAllocator
from tests.helpers import http, wait_until
from tests.integration.conftest import STARTED_PIDS

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "s3cret-link-token"


# Ports are probed by binding 127.0.0.1 and taken below the ephemeral range, so the test's own
# outgoing connections cannot grab a port between the pick and the proxy's bind.
free_port = PortAllocator().take


class EchoServer:
    """A real asyncio TCP echo server on its own loop in a background thread."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="echo", daemon=True)
        self._server: asyncio.Server | None = None
        self.port = 0

    def start(self) -> EchoServer:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._echo, "127.0.0.1", 0), self._loop).result(5)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    @staticmethod
    async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.transport.abort()


@dataclass
class Proxy:
    process: subprocess.Popen[bytes]
    admin_url: str
    ports: list[int]
    stderr: Path

    def admin(self, token: str = TOKEN) -> LinkAdmin:
        return LinkAdmin(self.admin_url, token)

    def log(self) -> str:
        return self.stderr.read_text(errors="replace")


def stop_process(process: subprocess.Popen[bytes]) -> int:
    """Terminate by PID, wait with a deadline, kill if it does not go; return the exit code."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    return int(process.returncode)


def write_token(path: Path, token: str = TOKEN, mode: int = 0o600) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")  # the proxy strips it
    os.chmod(path, mode)
    return path


def proxy_config(tmp_path: Path, targets: list[int], **overrides: Any) -> Path:
    config = {
        "link": "tehran->isfahan", "host": "127.0.0.1", "admin_port": free_port(),
        "token_file": str(tmp_path / "link.token"),
        "routes": [{"name": f"node:svc{i}.isfahan", "listen_port": free_port(), "target_port": port}
                   for i, port in enumerate(targets)],
    } | overrides
    path = tmp_path / "link.json"
    path.write_text(json.dumps(config))
    return path


def run_proxy(config: Path, stderr: Path) -> subprocess.Popen[bytes]:
    with stderr.open("wb") as err:
        process = subprocess.Popen([sys.executable, "-m", "paydar.infra.local.linkproxy", "--config", str(config)],
                                   cwd=ROOT, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
    STARTED_PIDS.add(process.pid)
    return process


@pytest.fixture()
def echo() -> Iterator[EchoServer]:
    server = EchoServer().start()
    yield server
    server.stop()


@pytest.fixture()
def start_proxy(tmp_path: Path, echo: EchoServer) -> Iterator[Callable[..., Proxy]]:
    """Start a link proxy in front of the echo server; stopped by PID at teardown, even on failure."""
    started: list[subprocess.Popen[bytes]] = []

    def start(routes: int = 1, **overrides: Any) -> Proxy:
        write_token(tmp_path / "link.token")
        config = proxy_config(tmp_path, [echo.port] * routes, **overrides)
        data = json.loads(config.read_text())
        proxy = Proxy(run_proxy(config, tmp_path / "proxy.log"), f"http://127.0.0.1:{data['admin_port']}",
                      [r["listen_port"] for r in data["routes"]], tmp_path / "proxy.log")
        started.append(proxy.process)

        def live() -> bool:
            if proxy.process.poll() is not None:
                pytest.fail(f"link proxy exited with {proxy.process.returncode}:\n{proxy.log()}")
            return http("GET", proxy.admin_url + "/livez", timeout=1)[0] == 200

        wait_until(live, 10, "the link proxy to answer /livez")
        return proxy

    yield start
    for process in started:
        stop_process(process)


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def round_trip(sock: socket.socket, payload: bytes, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    sock.sendall(payload)
    received = b""
    while len(received) < len(payload):
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    return received


def closed_by_peer(sock: socket.socket, timeout: float = 3.0) -> bool:
    """True when the peer closes (EOF or reset) within ``timeout``; False if it stays silent."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_bytes_pass_through_every_route_and_state_reports_them(start_proxy: Callable[..., Proxy]) -> None:
    proxy = start_proxy(routes=2)
    for port in proxy.ports:
        with connect(port) as sock:
            assert round_trip(sock, b"hello through the link") == b"hello through the link"
    payload = os.urandom(3 * 1024 * 1024)  # many 64 KiB reads: order and content survive chunking
    with connect(proxy.ports[0]) as sock:
        sender = threading.Thread(target=sock.sendall, args=(payload,))
        sender.start()
        sock.settimeout(10)
        received = b""
        while len(received) < len(payload) and (chunk := sock.recv(65536)):
            received += chunk
        sender.join(10)
        assert received == payload
    wait_until(lambda: proxy.admin().state().connections == 0, 5, "every connection to be closed")
    state = proxy.admin().state()
    assert (state.link, state.mode, state.delay_ms) == ("tehran->isfahan", LinkMode.PASS, 0)
    assert [r.listen_port for r in state.routes] == proxy.ports
    assert state.bytes_forwarded == 2 * (2 * len(b"hello through the link") + len(payload))


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token"}, {"Authorization": TOKEN}],
                         ids=["missing", "wrong", "not-bearer"])
def test_admin_api_requires_the_token(start_proxy: Callable[..., Proxy], headers: dict[str, str]) -> None:
    proxy = start_proxy()
    for method, path in [("GET", "/v1/link"), ("POST", "/v1/link/cut")]:
        status, body, _ = http(method, proxy.admin_url + path, headers=headers)
        assert status == 401
        assert body["error"].startswith("missing or wrong bearer token: send 'Authorization: Bearer <token>'")
    with pytest.raises(LinkAdminError, match=r"HTTP 401 .*missing or wrong bearer token"):
        proxy.admin("wrong-token").cut()
    assert http("GET", proxy.admin_url + "/livez")[:2] == (200, {"status": "ok"})
    assert proxy.admin().state().mode is LinkMode.PASS, "an unauthorised cut changes nothing"
    assert TOKEN not in proxy.log(), "the token is never logged"


def test_cut_closes_existing_connections_refuses_new_ones_and_heal_restores(
        start_proxy: Callable[..., Proxy]) -> None:
    proxy = start_proxy()
    existing = connect(proxy.ports[0])
    assert round_trip(existing, b"before") == b"before"

    assert proxy.admin().cut().mode is LinkMode.CUT
    assert closed_by_peer(existing), "an existing connection is closed by the cut"
    started = time.monotonic()
    with connect(proxy.ports[0]) as fresh:
        assert closed_by_peer(fresh), "a new connection is closed at once"
    assert time.monotonic() - started < 2.0, "refused at once, not after a timeout"
    assert proxy.admin().state().connections == 0
    assert "link=tehran->isfahan mode pass -> cut" in proxy.log()

    assert proxy.admin().heal().mode is LinkMode.PASS
    with connect(proxy.ports[0]) as healed:
        assert round_trip(healed, b"after") == b"after"
    existing.close()


def test_drop_blackholes_traffic_but_keeps_connections_open(start_proxy: Callable[..., Proxy]) -> None:
    proxy = start_proxy()
    existing = connect(proxy.ports[0])
    assert round_trip(existing, b"before") == b"before"

    assert proxy.admin().drop().mode is LinkMode.DROP
    existing.sendall(b"ping")
    assert not closed_by_peer(existing, timeout=0.5), "no reply and no close: the peer hangs"
    fresh = connect(proxy.ports[0])
    fresh.sendall(b"ping")
    assert not closed_by_peer(fresh, timeout=0.5), "a new connection is accepted, then hangs"
    assert proxy.admin().state().connections == 2

    proxy.admin().heal()
    with connect(proxy.ports[0]) as healed:
        assert round_trip(healed, b"after") == b"after"
    # Bytes were lost on the old connections; they are closed rather than resumed with a hole.
    assert closed_by_peer(existing) and closed_by_peer(fresh)
    existing.close()
    fresh.close()


def test_delay_slows_every_chunk_both_ways(start_proxy: Callable[..., Proxy]) -> None:
    proxy = start_proxy()
    with connect(proxy.ports[0]) as sock:
        assert round_trip(sock, b"warm") == b"warm"
        assert proxy.admin().set(delay_ms=300).delay_ms == 300
        started = time.monotonic()
        assert round_trip(sock, b"slow") == b"slow"
        assert time.monotonic() - started >= 0.6, "300 ms to the target and 300 ms back"
        state = proxy.admin().set(delay_ms=0)
        assert (state.mode, state.delay_ms) == (LinkMode.PASS, 0)
        assert round_trip(sock, b"fast") == b"fast"


@pytest.mark.parametrize(("body", "status", "message"), [
    (b'{"mode": "explode"}', 400, "invalid request body: mode: Input should be 'pass', 'cut', 'drop' or 'tamper'"),
    (b'{"mode": "cut", "bogus": 1}', 400, "invalid request body: bogus: Extra inputs are not permitted"),
    (b'{"delay_ms": 60001}', 400, "invalid request body: delay_ms: Input should be less than or equal to 60000"),
    (b'{"delay_ms": "300"}', 400, "invalid request body: delay_ms: Input should be a valid integer"),
    (b"not json", 400, "invalid request body: body: Invalid JSON"),
    (b"{}", 400, 'nothing to change: send {"mode": "pass|cut|drop|tamper"} and/or {"delay_ms": N}'),
    (json.dumps({"mode": "cut", "pad": "x" * 8192}).encode(), 413, "request body exceeds the 4096 byte limit"),
], ids=["bad-mode", "unknown-field", "delay-too-long", "delay-not-int", "not-json", "empty", "oversized"])
def test_bad_bodies_are_refused_and_change_nothing(start_proxy: Callable[..., Proxy], body: bytes, status: int,
                                                   message: str) -> None:
    proxy = start_proxy()
    before = proxy.admin().set(delay_ms=5)
    got, answer, _ = http("POST", proxy.admin_url + "/v1/link", raw=body,
                          headers={"Authorization": f"Bearer {TOKEN}"})
    assert got == status
    assert answer["error"].startswith(message)
    assert proxy.admin().state() == before


def test_client_raises_with_the_servers_message(start_proxy: Callable[..., Proxy]) -> None:
    proxy = start_proxy()
    with pytest.raises(LinkAdminError, match=r"HTTP 400 .*mode: Input should be 'pass', 'cut', 'drop' or 'tamper'"):
        proxy.admin().set(mode="explode")
    with pytest.raises(LinkAdminError, match=r"cannot reach .*is the link proxy running"):
        LinkAdmin(f"http://127.0.0.1:{free_port()}", TOKEN, timeout=1).state()


def test_unreachable_target_closes_the_client_and_is_logged(tmp_path: Path) -> None:
    write_token(tmp_path / "link.token")
    config = proxy_config(tmp_path, [free_port()])  # nothing listens on the target port
    data = json.loads(config.read_text())
    process = run_proxy(config, tmp_path / "proxy.log")
    try:
        wait_until(lambda: http("GET", f"http://127.0.0.1:{data['admin_port']}/livez", timeout=1)[0] == 200,
                   10, "the link proxy to answer /livez")
        with connect(data["routes"][0]["listen_port"]) as sock:
            assert closed_by_peer(sock)
        wait_until(lambda: "link=tehran->isfahan route=node:svc0.isfahan target 127.0.0.1:"
                           in (tmp_path / "proxy.log").read_text(), 5, "a warning naming link, route and target")
    finally:
        stop_process(process)


def test_excess_connections_are_closed_and_logged(start_proxy: Callable[..., Proxy]) -> None:
    proxy = start_proxy(max_connections=2)
    held = [connect(proxy.ports[0]) for _ in range(2)]
    for sock in held:
        assert round_trip(sock, b"x") == b"x"
    with connect(proxy.ports[0]) as excess:
        assert closed_by_peer(excess)
    wait_until(lambda: "link=tehran->isfahan route=node:svc0.isfahan at max_connections=2" in proxy.log(),
               5, "a warning naming the link and the limit")
    for sock in held:
        assert round_trip(sock, b"still") == b"still"
        sock.close()


def test_sigterm_closes_connections_and_exits_zero(start_proxy: Callable[..., Proxy]) -> None:
    proxy = start_proxy()
    sock = connect(proxy.ports[0])
    assert round_trip(sock, b"x") == b"x"
    started = time.monotonic()
    proxy.process.send_signal(signal.SIGTERM)
    assert proxy.process.wait(timeout=5) == 0
    assert time.monotonic() - started < 2.0, "no waiting for connections or timeouts"
    assert closed_by_peer(sock)
    sock.close()


@pytest.mark.parametrize(("setup", "message"), [
    ("host", "host: Value error, refusing to listen on '0.0.0.0': the local realization binds loopback only"),
    ("token-mode", "is open to group or others; run: chmod 600"),
    ("token-empty", "is empty; write the admin token into it"),
    ("no-config", "cannot read link config"),
])
def test_unusable_config_exits_nonzero_with_a_clear_message(tmp_path: Path, setup: str, message: str) -> None:
    write_token(tmp_path / "link.token", token="" if setup == "token-empty" else TOKEN,
                mode=0o644 if setup == "token-mode" else 0o600)
    config = proxy_config(tmp_path, [free_port()], **({"host": "0.0.0.0"} if setup == "host" else {}))
    if setup == "no-config":
        config = tmp_path / "missing.json"
    # run() kills the child itself if it outlives the timeout.
    result = subprocess.run([sys.executable, "-m", "paydar.infra.local.linkproxy", "--config", str(config)],
                            cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, timeout=15, check=False)
    assert result.returncode == 2
    assert message in result.stderr.decode()
