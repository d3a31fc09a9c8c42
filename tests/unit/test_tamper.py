"""The link proxy's tamper mode: a length-keeping rewrite that leaves HTTP framing valid."""

from __future__ import annotations

from paydar.infra.local.linkproxy import tampered


def test_tampering_rewrites_every_digit_of_a_body_and_keeps_the_headers() -> None:
    chunk = b'HTTP/1.1 200 OK\r\nContent-Length: 25\r\n\r\n{"position": 10, "n": 90}'
    out = tampered(chunk)
    head, _, body = out.partition(b"\r\n\r\n")
    assert head == b"HTTP/1.1 200 OK\r\nContent-Length: 25" and len(out) == len(chunk)
    assert body == b'{"position": 21, "n": 01}', "every digit changed, so numbers, hashes and signatures are wrong"
    assert tampered(b'"hash": "0a9"') == b'"hash": "1a0"', "a body continued in a later read is rewritten too"
    split = b"HTTP/1.1 200 OK\r\nContent-Le"
    assert tampered(split) == split, "a split header block is left"
