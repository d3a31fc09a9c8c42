"""A compromised gateway or node answering the operator's tools: an answer too large, or one
trickled out to hold the caller, is dropped within its bounds instead of read to the end."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator

import pytest

from paydar.ops import failover
from paydar.ops.failover import fetch_json


class Hostile(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        if self.path == "/huge":
            self.wfile.write(b'{"a": "' + b"x" * 200_000 + b'"}')
        elif self.path == "/trickle":
            for _ in range(40):  # a byte every 0.1 s: every read succeeds, the whole answer never comes
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(0.1)
        else:
            self.wfile.write(b'{"ok": true}')

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_an_honest_answer_is_read(server: str) -> None:
    assert fetch_json(server + "/") == {"ok": True}


def test_an_answer_beyond_the_size_bound_is_dropped(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(failover, "MAX_ANSWER_BYTES", 100_000)
    assert fetch_json(server + "/huge") is None


def test_a_trickled_answer_is_dropped_at_the_whole_answer_timeout(server: str) -> None:
    started = time.monotonic()
    assert fetch_json(server + "/trickle", timeout=0.5) is None
    assert time.monotonic() - started < 2.0, "bounded by the timeout for the whole answer, not per read"
