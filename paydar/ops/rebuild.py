"""`paydar rebuild`: clone one PostgreSQL instance afresh from its service's current primary.

The way back for an instance whose data failed the integrity scan (its agent stopped it and
will not start it again) or one that will not rejoin. The agent does the work, since only it
holds its server's superuser and its region's replication password; this asks it with the
agent's own admin token, after refusing the table's writable primary (and an instance that
says it is one), and waits until it serves again as a standby in the table's epoch. The old
data is kept aside by the agent, never deleted.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from paydar.infra.local.realizer import Realization
from paydar.model.errors import BadInput, PaydarError
from paydar.model.ids import node_id
from paydar.model.topology import WorkloadKind
from paydar.ops.failover import current_table, fetch_node_state
from paydar.ops.restore import refuse_primary
from paydar.workload.contract import InstanceRole

__all__ = ["REBUILD_WHY", "RebuildFailed", "RebuildReport", "rebuild"]

REBUILD_WHY = "rebuilding it would leave the service without its primary"
REQUEST_SECONDS = 60.0
"""The agent answers once the old server is stopped and its data moved aside."""


class RebuildFailed(PaydarError):
    """The agent refused, or the instance did not come back in time; the message says which."""


@dataclass(frozen=True)
class RebuildReport:
    node: str
    detail: str
    seconds: float


def rebuild(realization: Realization, service: str, region: str, *, timeout: float = 600.0,
            phase: Callable[[str], None] = lambda _text: None) -> RebuildReport:
    """Clone ``service``'s instance in ``region`` afresh from the current primary; wait until it
    is a standby again in the table's epoch (at most ``timeout`` seconds)."""
    spec = realization.topology.service(service)
    if spec.workload is not WorkloadKind.POSTGRES:
        raise BadInput(f"service {service} is not a PostgreSQL database (workload: postgres): `paydar restore` "
                       "rebuilds a registry node from the vault")
    if region not in spec.regions:
        raise BadInput(f"service {service} is not hosted in {region!r}; it is in {', '.join(spec.regions)}")
    refuse_primary(realization, service, region, why=REBUILD_WHY)
    node = node_id(service, region)
    url = realization.plan.component(node).url
    started = time.monotonic()
    phase(f"asking {node} to set its data aside and clone afresh")
    request = urllib.request.Request(url + "/v1/rebuild", data=b"", method="POST",
                                     headers={"Authorization": f"Bearer {realization.admin_token(node)}"})
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_SECONDS) as response:
            detail = str(json.loads(response.read(64 * 1024)).get("detail", ""))
    except urllib.error.HTTPError as exc:
        raise RebuildFailed(f"{node} refused: {_error(exc)}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise RebuildFailed(f"{node} did not answer ({exc}); is the system up (`paydar status`)?") from None
    phase(f"{node}: {detail}; waiting for it to stream as a standby")
    deadline = started + timeout
    while time.monotonic() < deadline:
        epoch = current_table(realization).table.route(service).epoch
        state = fetch_node_state(url + "/state")
        if state is not None and state.role is InstanceRole.STANDBY and state.epoch == epoch \
                and not state.compromised:
            return RebuildReport(node=node, detail=detail, seconds=time.monotonic() - started)
        time.sleep(0.5)
    raise RebuildFailed(f"{node} was not a standby again within {timeout:.0f}s; its log is "
                        f"{realization.layout.log(node)} (`paydar status --service {service}`)")


def _error(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(exc.read(64 * 1024)).get("error", exc))
    except ValueError:
        return f"HTTP {exc.code}"
