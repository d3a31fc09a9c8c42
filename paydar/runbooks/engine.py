"""Reading a runbook and running its steps, with an incident log of everything that ran.

Each step runs as ``bash -e -o pipefail -c BLOCK`` with ``PAYDAR_STATE_DIR`` set, the
project's ``paydar`` first on ``PATH`` and the ``--set`` inputs in the environment; it is bounded
by ``STEP_TIMEOUT``. The incident log, ``<state-dir>/incidents/<time>-<runbook>.jsonl``, gets
one line when the run starts, one per step (time, command, exit status, output) and one at
the end, written as they happen so a crash mid-incident loses nothing.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt

from paydar.model.errors import BadInput, PaydarError

__all__ = ["RUNBOOK_DIR", "RunOutcome", "Runbook", "Step", "available", "find", "load", "run"]

RUNBOOK_DIR = Path(__file__).parent
STEP_TIMEOUT = 600.0
OUTPUT_KEPT = 20_000
"""Characters of a step's output kept in the incident log (the end, where errors are)."""
RUN_SECTIONS = ("steps", "verify")
_INPUT = re.compile(r"`([A-Z][A-Z0-9_]*)`")


@dataclass(frozen=True)
class Step:
    section: str
    title: str
    command: str


@dataclass(frozen=True)
class Runbook:
    name: str
    title: str
    path: Path
    sections: dict[str, str]
    """Section title (lower case) -> its Markdown text."""
    steps: tuple[Step, ...]
    inputs: tuple[str, ...]

    @property
    def summary(self) -> str:
        """The first sentence of "When to use"."""
        text = " ".join(self.sections.get("when to use", "").split())
        return text.split(". ")[0].rstrip(".") + "." if text else ""


@dataclass
class RunOutcome:
    runbook: str
    log: Path
    ran: list[dict[str, Any]] = field(default_factory=list)
    failed: dict[str, Any] | None = None
    stopped: bool = False

    @property
    def ok(self) -> bool:
        return self.failed is None and not self.stopped


def available(folder: Path = RUNBOOK_DIR) -> list[Runbook]:
    return [load(path) for path in sorted(folder.glob("*.md"))]


def find(name: str, folder: Path = RUNBOOK_DIR) -> Runbook:
    path = folder / f"{name}.md"
    if not path.exists():
        known = ", ".join(p.stem for p in sorted(folder.glob("*.md")))
        raise BadInput(f"no runbook {name!r}; runbooks: {known}")
    return load(path)


def load(path: Path) -> Runbook:
    """Parse one runbook; its steps are the ``sh`` blocks of its Steps and Verify sections."""
    tokens = MarkdownIt().parse(path.read_text(encoding="utf-8"))
    title, section, last_text = path.stem, "", ""
    sections: dict[str, list[str]] = {}
    steps: list[Step] = []
    for i, token in enumerate(tokens):
        if token.type == "heading_open":
            heading = tokens[i + 1].content.strip()
            if token.tag == "h1":
                title = heading
            elif token.tag == "h2":
                section = heading.lower()
            last_text = ""  # a block right under a heading has no title of its own
        elif token.type == "inline" and tokens[i - 1].type == "paragraph_open":
            last_text = token.content.strip()
            sections.setdefault(section, []).append(last_text)
        elif token.type == "fence":
            sections.setdefault(section, []).append(f"```\n{token.content}```")
            if section in RUN_SECTIONS and token.info.strip() in ("sh", "bash", "shell"):
                steps.append(Step(section, last_text.splitlines()[0] if last_text else "", token.content.strip()))
            last_text = ""  # the paragraph titles this block only
    inputs = tuple(dict.fromkeys(_INPUT.findall("\n".join(sections.get("inputs", [])))))
    if not steps:
        raise PaydarError(f"runbook {path} has no ```sh block under ## Steps")
    return Runbook(path.stem, title, path, {k: "\n".join(v) for k, v in sections.items()}, tuple(steps), inputs)


def run(runbook: Runbook, *, state_dir: Path, values: dict[str, str], confirm: Callable[[Step, int], bool],
        show: Callable[[str], None]) -> RunOutcome:
    """Run every step in order, asking ``confirm`` before each; stop at the first that fails."""
    missing = [name for name in runbook.inputs if not values.get(name)]
    if missing:
        raise BadInput(f"runbook {runbook.name} needs {', '.join(missing)}: pass "
                          + " ".join(f"--set {name}=..." for name in missing))
    folder = state_dir / "incidents"
    folder.mkdir(parents=True, exist_ok=True)
    outcome = RunOutcome(runbook.name, folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{runbook.name}.jsonl")
    env = {**os.environ, **values, "PAYDAR_STATE_DIR": str(state_dir),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    with outcome.log.open("a", encoding="utf-8") as log:
        def record(entry: dict[str, Any]) -> None:
            log.write(json.dumps({"time": time.time(), **entry}) + "\n")
            log.flush()

        record({"event": "start", "runbook": runbook.name, "operator": getpass.getuser(), "inputs": values,
                "state_dir": str(state_dir)})
        for number, step in enumerate(runbook.steps, 1):
            if not confirm(step, number):
                outcome.stopped = True
                record({"event": "stopped", "step": number, "reason": "the operator declined"})
                break
            entry = _execute(step, number, env)
            outcome.ran.append(entry)
            record(entry)
            show(entry["output"])
            if entry["exit"] != 0:
                outcome.failed = entry
                break
        record({"event": "end", "ok": outcome.ok, "failed_step": outcome.failed["step"] if outcome.failed else None})
    return outcome


def _execute(step: Step, number: int, env: dict[str, str]) -> dict[str, Any]:
    started = time.time()
    # A session of its own, so a step that overruns is stopped with everything it started.
    process = subprocess.Popen(["bash", "-e", "-o", "pipefail", "-c", step.command], env=env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        raw, _ = process.communicate(timeout=STEP_TIMEOUT)
        code, output = process.returncode, raw.decode(errors="replace")
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raw, _ = process.communicate()
        code, output = 124, raw.decode(errors="replace") + f"\n[stopped after {STEP_TIMEOUT:.0f}s]"
    return {"event": "step", "step": number, "section": step.section, "title": step.title, "command": step.command,
            "exit": code, "seconds": round(time.time() - started, 3), "output": output[-OUTPUT_KEPT:]}
