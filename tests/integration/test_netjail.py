"""The vault's network jail under a sender with no manners: it holds the forwarder's every
connection slot open, and one more is turned away; when it lets go, the door works again."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from paydar.infra.local.netjail import MAX_CONNECTIONS, jailed_command
from paydar.infra.local.processes import terminate
from tests.helpers import wait_until
from tests.integration.conftest import STARTED_PIDS

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        return sock.recv(12).startswith(b"HTTP/1.0 200")


@pytest.fixture()
def jailed_http() -> Iterator[int]:
    port = _free_port()
    command = jailed_command(sys.executable, [port], [sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
                                                      str(port)])
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/")
    STARTED_PIDS.add(process.pid)
    try:
        wait_until(lambda: _answers(port), 15, "the jailed server to answer through the forwarder")
        yield port
    finally:
        terminate(process)


def test_a_flood_of_idle_connections_is_capped_and_the_door_reopens(jailed_http: int) -> None:
    with contextlib.ExitStack() as held:
        flood = [held.enter_context(socket.create_connection(("127.0.0.1", jailed_http), timeout=5))
                 for _ in range(MAX_CONNECTIONS)]
        one_more = held.enter_context(socket.create_connection(("127.0.0.1", jailed_http), timeout=5))
        one_more.settimeout(5)
        assert wait_until(lambda: one_more.recv(1) == b"" or None, 10, "the connection beyond the cap to be closed")
        flood[0].sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert flood[0].recv(12).startswith(b"HTTP/1.0 200"), "connections within the cap are forwarded"
    assert wait_until(lambda: _answers(jailed_http), 20, "the door to work again once the flood lets go")
