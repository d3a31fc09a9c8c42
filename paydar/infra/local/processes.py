"""Child processes a Paydar program starts itself (outside supervisord): stopping them for sure."""

from __future__ import annotations

import logging
import signal
import subprocess

log = logging.getLogger(__name__)

__all__ = ["terminate"]


def terminate(process: subprocess.Popen[bytes], grace: float = 15.0, how: signal.Signals = signal.SIGTERM) -> None:
    """Stop a child process this program started: ``how`` (SIGTERM), then SIGKILL by PID after ``grace`` seconds."""
    if process.poll() is not None:
        return
    process.send_signal(how)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
        log.warning("process %d ignored %s for %.0fs and was killed", process.pid, how.name, grace)
