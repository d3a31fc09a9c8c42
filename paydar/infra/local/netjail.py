"""Run one program in a network namespace of its own, reachable only through forwarded ports.

``python -m paydar.infra.local.netjail --forward PORT [--forward PORT ...] -- COMMAND ...``

Why: SeaweedFS answers on master, volume and filer HTTP ports beside its S3 port, and the
master's ``/col/delete`` drops a bucket's volumes, object lock or not, without any
credential; weed's ``-whiteList`` cannot tell its own S3 gateway from a compromised node,
since both connect from 127.0.0.1. So weed runs where no other process can connect at all:
in its own network namespace, with its own loopback. Only the ports named here are
forwarded from 127.0.0.1 on the host side to the same port inside; everything else weed
binds is unreachable from every other component.

No library does this: ``unshare(2)`` is reached through libc (Python 3.11 has no
``os.unshare``), and the forwarder is a bounded asyncio byte pipe. As root only a network
namespace is made; otherwise a user namespace is made with it (mapping the caller to itself,
so the program holds no capability after ``exec``). Unix sockets weed makes in /tmp are not
network-scoped; each of them checks the same JWT, TLS or IAM credentials as its TCP twin.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import fcntl
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["IDLE_SECONDS", "MAX_CONNECTIONS", "JailUnavailable", "jailed_command", "main"]

log = logging.getLogger("paydar.netjail")

MAX_CONNECTIONS = 512
"""Forwarded connections open at once; more are closed on accept (weed's own S3 port has no cap)."""
IDLE_SECONDS = 120.0
"""A forwarded connection with no byte either way for this long is closed."""
_CHUNK = 1 << 20
_CLONE_NEWUSER, _CLONE_NEWNET = 0x10000000, 0x40000000
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1
_PR_SET_PDEATHSIG = 1


class JailUnavailable(RuntimeError):
    """This kernel or sandbox refuses a new network namespace."""


def jailed_command(python: str, forward: Sequence[int], command: Sequence[str]) -> list[str]:
    """The argv that runs ``command`` in its own network namespace, ``forward`` ports reachable."""
    argv = [python, "-m", "paydar.infra.local.netjail"]
    for port in forward:
        argv += ["--forward", str(port)]
    return [*argv, "--", *command]


@dataclass(frozen=True)
class _Options:
    forward: tuple[int, ...]
    command: tuple[str, ...]


def _parse(argv: Sequence[str]) -> _Options:
    parser = argparse.ArgumentParser(prog="python -m paydar.infra.local.netjail", description=__doc__.split("\n\n")[0])
    parser.add_argument("--forward", type=int, action="append", required=True, metavar="PORT",
                        help="a 127.0.0.1 port forwarded from the host to the same port inside (repeatable)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the program and its arguments")
    options = parser.parse_args(argv)
    command = options.command[1:] if options.command[:1] == ["--"] else options.command
    if not command:
        parser.error("name the program to jail after --")
    if any(not 0 < port < 65536 for port in options.forward):
        parser.error(f"ports must be 1-65535, got {options.forward}")
    return _Options(forward=tuple(options.forward), command=tuple(command))


def _enter_own_network() -> None:
    """Move this (single-threaded) process into a new network namespace with loopback up."""
    libc = ctypes.CDLL(None, use_errno=True)
    uid, gid = os.getuid(), os.getgid()
    flags = _CLONE_NEWNET if os.geteuid() == 0 else _CLONE_NEWUSER | _CLONE_NEWNET
    if libc.unshare(flags) != 0:
        err = ctypes.get_errno()
        raise JailUnavailable(f"unshare(network namespace) failed: {os.strerror(err)}. Run as root, or enable "
                              "unprivileged user namespaces (sysctl user.max_user_namespaces > 0)")
    if flags & _CLONE_NEWUSER:
        for path, text in (("/proc/self/setgroups", "deny"), ("/proc/self/uid_map", f"{uid} {uid} 1"),
                           ("/proc/self/gid_map", f"{gid} {gid} 1")):
            with open(path, "w", encoding="ascii") as handle:
                handle.write(text)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as control:
        request = struct.pack("16sh22x", b"lo", 0)
        current = struct.unpack("16sh22x", fcntl.ioctl(control, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(control, _SIOCSIFFLAGS, struct.pack("16sh22x", b"lo", current | _IFF_UP))


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: if the jail dies, so does the jailed program.
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await asyncio.wait_for(reader.read(_CHUNK), IDLE_SECONDS):
            writer.write(chunk)
            await asyncio.wait_for(writer.drain(), IDLE_SECONDS)
    except (TimeoutError, OSError):
        pass
    finally:
        writer.close()


class _Forwarder:
    """Accepts on host-side listeners and pipes each connection to the same port inside."""

    def __init__(self) -> None:
        self.open = 0

    async def serve(self, listener: socket.socket) -> asyncio.Server:
        port = listener.getsockname()[1]

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if self.open >= MAX_CONNECTIONS:
                log.warning("forwarder for port %d at its cap of %d connections: closing one", port, MAX_CONNECTIONS)
                writer.close()
                return
            self.open += 1
            try:
                # Opened after unshare, so this socket lives inside the jail's namespace.
                inner_reader, inner_writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
            except (TimeoutError, OSError):
                writer.close()
                self.open -= 1
                return
            try:
                await asyncio.gather(_pipe(reader, inner_writer), _pipe(inner_reader, writer))
            finally:
                self.open -= 1

        return await asyncio.start_server(accept, sock=listener, limit=_CHUNK)


async def _run(listeners: list[socket.socket], command: tuple[str, ...]) -> int:
    child = subprocess.Popen(command, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)  # noqa: PLW1509 - no thread runs yet
    log.info("jailed pid %d (%s) with ports %s forwarded", child.pid, command[0],
             [sock.getsockname()[1] for sock in listeners])
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    forwarder = _Forwarder()
    servers = [await forwarder.serve(sock) for sock in listeners]
    exited: asyncio.Future[int] = loop.run_in_executor(None, child.wait)
    stopping: asyncio.Future[bool] = asyncio.ensure_future(stop.wait())
    either: list[asyncio.Future[Any]] = [exited, stopping]
    await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    for server in servers:
        server.close()
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(exited), 15)
        except TimeoutError:
            child.kill()
    code = await exited
    stopping.cancel()
    log.info("jailed pid %d exited with %d", child.pid, code)
    return 0 if stop.is_set() else (code or 1)


def main(argv: Sequence[str] | None = None) -> int:
    """Bind the forwarded ports on the host, enter a new network namespace, run and forward."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    options = _parse(sys.argv[1:] if argv is None else argv)
    listeners = []
    for port in options.forward:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind(("127.0.0.1", port))
        except OSError as exc:
            log.error("cannot bind 127.0.0.1:%d for forwarding: %s", port, exc)
            return 2
        listener.listen(1024)
        listeners.append(listener)
    try:
        _enter_own_network()
    except (JailUnavailable, OSError) as exc:
        log.error("%s", exc)
        return 3
    return asyncio.run(_run(listeners, options.command))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
