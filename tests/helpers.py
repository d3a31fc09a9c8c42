"""What the tests share: waiting on a condition, HTTP to a component, the example topology with
overrides, and reading a running system's components. Fixtures live in the conftest files."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from paydar.chaos.invariants import check_acknowledged
from paydar.chaos.workload import Workload, read_back
from paydar.infra.local.linkadmin import LinkAdmin
from paydar.infra.local.realizer import Realization
from paydar.model.ids import gateway_id, node_id

ROOT = Path(__file__).resolve().parents[1]
SERVICE = "1101"
"""The example service most tests write to (tehran, then isfahan, then mashhad)."""
FAILOVER_TIMEOUT = 30.0

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """The awaited condition did not hold before the deadline."""


def wait_until(
    predicate: Callable[[], T | Literal[False] | None],
    timeout: float,
    what: str,
    *,
    interval: float = 0.05,
) -> T:
    """Poll ``predicate`` until it returns a truthy value and return that value.

    Exceptions raised by the predicate count as "not yet" and the last one is reported,
    so a timeout error names what was awaited and what was last seen.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
            if value:
                return value
            last = value
        except Exception as exc:  # noqa: BLE001 - reported in the timeout message
            last = exc
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout:.1f}s waiting for {what}; last seen: {last!r}")
        time.sleep(interval)


def http(method: str, url: str, body: Any = None, *, headers: dict[str, str] | None = None,
         raw: bytes | None = None, timeout: float = 10.0) -> tuple[int, dict[str, Any], dict[str, str]]:
    """One HTTP call; returns (status, JSON body, headers) for any status."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = response.read()
            return response.status, json.loads(payload) if payload else {}, dict(response.headers)
    except urllib.error.HTTPError as exc:
        payload = exc.read()
        try:
            parsed = json.loads(payload) if payload else {}
        except ValueError:
            parsed = {"raw": payload.decode(errors="replace")}
        return exc.code, parsed, dict(exc.headers)


def document(n: int, tag: str = "t") -> dict[str, Any]:
    return {"citizen_id": f"{n:010d}", "kind": "national-id-card", "data": {"tag": tag, "n": n}}


def write_topology(path: Path, **overrides: Any) -> Path:
    """The example topology with overrides; ``services=[...]`` keeps only those ids."""
    data = yaml.safe_load((ROOT / "national.yaml").read_text())
    keep = overrides.pop("services", None)
    if keep is not None:
        data["services"] = [s for s in data["services"] if s["id"] in keep]
    for key, value in overrides.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    path.write_text(yaml.safe_dump(data))
    return path


def with_app(path: Path) -> Path:
    """Add the example's agency app (``examples/http-service.yaml``) to the topology at ``path``,
    its code copied beside it: an instance runs jailed from the topology file's directory, which
    any user must be able to read."""
    example = yaml.safe_load((ROOT / "examples" / "http-service.yaml").read_text())
    data = yaml.safe_load(path.read_text())
    data["services"] += [s for s in example["services"] if s.get("workload") == "http"]
    path.write_text(yaml.safe_dump(data))
    shutil.copytree(ROOT / "examples" / "subsidy", path.parent / "subsidy", dirs_exist_ok=True)
    path.parent.chmod(0o755)
    return path


def state(system: Realization, component: str) -> dict[str, Any]:
    """A component's ``/state`` as JSON (any status)."""
    return http("GET", system.plan.component(component).url + "/state", timeout=5)[1]


def node_state(system: Realization, region: str, service: str = SERVICE) -> dict[str, Any]:
    """The ``/state`` of ``service``'s node in ``region``."""
    return state(system, node_id(service, region))


def link_admin(system: Realization, source: str, target: str) -> LinkAdmin:
    """The admin client of the link carrying ``source``'s traffic into ``target``."""
    link = system.plan.link(source, target)
    return LinkAdmin(link.admin_url, system.link_token(link.id))


def route(system: Realization, via: str, service: str = SERVICE) -> dict[str, Any]:
    """The route of ``service`` in the table ``via``'s gateway holds."""
    found: dict[str, Any] = state(system, gateway_id(via))["services"][service]
    return found


@contextmanager
def writers(system: Realization, regions: tuple[str, ...]) -> Iterator[Workload]:
    """Concurrent citizens writing :data:`SERVICE` through these regions' gateways, for the block."""
    workload = Workload({r: system.plan.gateway(r).url for r in regions}, [SERVICE]).start()
    try:
        yield workload
    finally:
        workload.stop()


def assert_history_holds(system: Realization, workload: Workload, regions: tuple[str, ...]) -> None:
    """Every write the workload saw acknowledged reads back, as acknowledged, through each region."""
    ledger = workload.ledger
    assert ledger.acknowledged_count > 0, "the writers never got an acknowledgement"
    for region in regions:
        violations = check_acknowledged(ledger, asyncio.run(read_back(system, ledger, region)))
        assert violations == [], f"via {region}: {violations[:5]}"


def wait_failover_from(system: Realization, old: str, via: str) -> dict[str, Any]:
    """The route ``via``'s gateway holds once :data:`SERVICE` has a primary other than ``old``."""
    return wait_until(lambda: (r := route(system, via))["primary"] not in (None, old) and r, FAILOVER_TIMEOUT,
                      f"service {SERVICE} to fail over away from {old}")


EXPERIMENTS = sorted((ROOT / "chaos" / "experiments").glob("*.json"))
CHAOS = str(Path(sys.executable).with_name("chaos"))


def assert_experiment_holds(system: Realization, experiment: Path, folder: Path) -> None:
    """Run ``experiment`` with plain ``chaos run``: it completes, its steady state holds before and
    after, and its one rollback runs."""
    journal = folder / "journal.json"
    run = subprocess.run([CHAOS, "--no-log-file", "run", "--journal-path", str(journal), str(experiment)],
                         env={**os.environ, "PAYDAR_STATE_DIR": str(system.layout.root)}, cwd=folder,
                         capture_output=True, text=True, timeout=200, check=False)
    assert journal.exists(), run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(journal.read_text())
    failures = [(r["activity"]["name"], r.get("exception")) for r in result["run"] + result["rollbacks"]
                if r["status"] != "succeeded"]
    assert (result["status"], result["deviated"], failures) == ("completed", False, []), run.stderr[-3000:]
    assert result["steady_states"]["before"]["steady_state_met"] is True
    assert result["steady_states"]["after"]["steady_state_met"] is True
    assert [r["activity"]["name"] for r in result["rollbacks"]] == ["undo-the-fault"]


PAYDAR = str(Path(sys.executable).with_name("paydar"))


def paydar(system: Realization, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PAYDAR, *args], capture_output=True, text=True, timeout=timeout,
                          env={"PAYDAR_STATE_DIR": str(system.layout.root), "PATH": "/usr/bin:/bin"}, check=False)


def run_runbook(system: Realization, name: str, **inputs: str) -> list[dict[str, Any]]:
    """Run it with --yes; it must succeed, and its incident log must record every step."""
    sets = [arg for key, value in inputs.items() for arg in ("--set", f"{key}={value}")]
    done = paydar(system, "runbook", "run", name, "--yes", *sets)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "steps succeeded" in done.stdout
    [log] = sorted((system.layout.root / "incidents").glob(f"*-{name}.jsonl"))[-1:]
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert entries[0]["event"] == "start" and entries[0]["inputs"] == inputs
    assert entries[-1] == entries[-1] | {"event": "end", "ok": True, "failed_step": None}
    steps = [e for e in entries if e["event"] == "step"]
    assert steps and all(e["exit"] == 0 and e["command"] and "seconds" in e for e in steps)
    return steps
