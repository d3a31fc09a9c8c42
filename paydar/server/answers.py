"""Reading an HTTP answer of a peer, bounded: every Paydar client reads answers through here.

``StreamReader.read(n)`` returns only what has arrived so far (one TCP segment, often 64 KiB),
not ``n`` bytes: a large answer read that way is cut short. :func:`read_up_to` keeps reading
until the answer ends or ``limit`` bytes are in hand; a longer answer is cut at ``limit`` (the
caller then sees a malformed answer, never an unbounded one).
"""

from __future__ import annotations

import aiohttp

__all__ = ["read_up_to"]


async def read_up_to(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The answer's first ``limit`` bytes, however many segments they arrive in."""
    chunks: list[bytes] = []
    size = 0
    while size < limit and (chunk := await response.content.readany()):
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)[:limit]
