"""supervisord as the local orchestrator: render its config, start it, talk to its API.

supervisord restarts crashed programs with backoff (as an orchestrator would) and its
XML-RPC API, on a unix socket in a 0700 directory with a password, is how `down`, `status`
and chaos actions stop, signal and start programs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import xmlrpc.client
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supervisor.xmlrpc import SupervisorTransport

from paydar.infra.local.layout import StateLayout
from paydar.model.errors import PaydarError
from paydar.model.files import read_secret

__all__ = ["Program", "Supervisor", "render_config"]

USER = "paydar"


@dataclass(frozen=True)
class Program:
    """One supervised program."""

    name: str
    command: list[str]
    log: Path
    priority: int = 500
    stop_wait_seconds: int = 10
    environment: dict[str, str] = field(default_factory=dict)
    """Extra environment (secrets allowed: supervisord.conf is 0600 in a 0700 directory)."""


def render_config(layout: StateLayout, programs: list[Program], password: str) -> str:
    """The supervisord.conf text for these programs."""
    sup = layout.supervisor_dir
    lines = [
        "; Written by `paydar up`; regenerated on every up. Do not edit.",
        "[unix_http_server]", f"file={layout.supervisor_socket}", "chmod=0700",
        f"username={USER}", f"password={password}", "",
        "[supervisord]", f"logfile={sup / 'supervisord.log'}", f"pidfile={layout.supervisor_pid}",
        f"childlogdir={layout.root / 'logs'}", "logfile_maxbytes=10MB", "logfile_backups=2",
        f"directory={layout.root}", "minfds=4096", "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface", "",
        "[supervisorctl]", f"serverurl=unix://{layout.supervisor_socket}", f"username={USER}",
        f"password={password}", "",
    ]
    for program in programs:
        lines += [
            f"[program:{program.name}]",
            "command=" + " ".join(_quote(part) for part in program.command),
            f"priority={program.priority}", "autostart=true", "autorestart=true",
            "startsecs=1", "startretries=3", "stopsignal=TERM",
            f"stopwaitsecs={program.stop_wait_seconds}", "stopasgroup=true", "killasgroup=true",
            "redirect_stderr=true", f"stdout_logfile={program.log}",
            "stdout_logfile_maxbytes=10MB", "stdout_logfile_backups=2",
            "environment=" + ",".join(f'{k}="{_env_value(v)}"' for k, v in
                                      {"PYTHONUNBUFFERED": "1", **program.environment}.items()), "",
        ]
    return "\n".join(lines)


def _quote(part: str) -> str:
    # supervisord splits commands with shlex; our parts never contain quotes or '%'.
    if any(c in part for c in "\"'%"):
        raise PaydarError(f"unsafe character in supervised command argument {part!r}")
    return f'"{part}"' if " " in part else part


def _env_value(value: str) -> str:
    # supervisord parses environment= as KEY="value" pairs separated by commas.
    if any(c in value for c in "\"'%,"):
        raise PaydarError(f"unsafe character in a supervised program's environment value {value[:40]!r}")
    return value


class Supervisor:
    """The supervisord of one state directory."""

    def __init__(self, layout: StateLayout) -> None:
        self.layout = layout

    def pid(self) -> int | None:
        """The supervisord PID when it is running for this state directory."""
        try:
            pid = int(self.layout.supervisor_pid.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        return pid if b"supervisord" in cmdline and str(self.layout.supervisor_conf).encode() in cmdline else None

    def start(self) -> int:
        """Start supervisord (it daemonizes) and return its PID once its API answers."""
        supervisord = Path(sys.executable).with_name("supervisord")
        result = subprocess.run([str(supervisord), "-c", str(self.layout.supervisor_conf)],
                                capture_output=True, text=True, timeout=30, check=False)
        if result.returncode != 0:
            raise PaydarError(f"supervisord failed to start: {result.stderr.strip() or result.stdout.strip()}")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            pid = self.pid()
            if pid is not None:
                try:
                    self.rpc().supervisor.getState()
                    return pid
                except (OSError, xmlrpc.client.Fault):
                    pass
            time.sleep(0.05)
        raise PaydarError(f"supervisord did not answer within 15s; "
                          f"see {self.layout.supervisor_dir / 'supervisord.log'}")

    def rpc(self) -> Any:
        password = read_secret(self.layout.supervisor_password)
        transport = SupervisorTransport(USER, password, f"unix://{self.layout.supervisor_socket}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)

    def processes(self) -> list[dict[str, Any]]:
        """supervisord's view of every program (name, statename, pid, ...)."""
        return list(self.rpc().supervisor.getAllProcessInfo())

    def shutdown(self, timeout: float = 60.0) -> list[int]:
        """Stop every program and supervisord; kill by PID whatever outlives the timeout.

        Returns the PIDs that had to be killed.
        """
        pid = self.pid()
        if pid is None:
            return []
        try:
            children = [p["pid"] for p in self.processes() if p["pid"]]
            # Signal every program at once: supervisord's own shutdown stops them one group
            # (= one program) at a time, which takes ~0.3 s per process.
            self.rpc().supervisor.stopAllProcesses(False)
            deadline = time.monotonic() + timeout / 2
            while any(_alive(c) for c in children) and time.monotonic() < deadline:
                time.sleep(0.05)
            self.rpc().supervisor.shutdown()
        except (OSError, xmlrpc.client.Fault):
            children = []
        killed = []
        deadline = time.monotonic() + timeout
        for target in [*children, pid]:
            while _alive(target) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(target):
                os.kill(target, 9)
                killed.append(target)
        return killed


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
