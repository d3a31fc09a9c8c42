"""`paydar keys rotate`: a component gets a new Ed25519 key, and its old key is refused everywhere.

The order matters for a controller key, because the table in force carries that key's
signature:
1. write the trust root with the new public key;
2. SIGHUP every node, gateway and controller through supervisord, so they verify with it. The
   held table then lacks a quorum of valid signatures but stays in force (fail static);
3. for a controller, wait until the other controllers re-sign the same routes as a new version;
4. put the new private key in place (0600; the old file is replaced) and restart the component
   so it signs with the new key. A restarted controller finds the re-signed table on its disk.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from paydar.infra.local.plan import PlannedComponent
from paydar.infra.local.realizer import SIGNING_KINDS, Realization
from paydar.model.errors import BadInput, PaydarError
from paydar.model.files import write_json_atomic
from paydar.model.identity import Role, TrustRoot, trust_root_of
from paydar.model.ids import Kind
from paydar.model.routing import TableGuard
from paydar.model.signing import key_id
from paydar.ops.failover import current_table, fetch_json

__all__ = ["Rotation", "preview_rotation", "rotate"]

RESIGN_TIMEOUT = 30.0
READY_TIMEOUT = 60.0
RELOADING_KINDS = (Kind.NODE, Kind.GATEWAY, Kind.CONTROLLER)
"""The components that verify signatures and reload the trust root on SIGHUP."""


@dataclass(frozen=True)
class Rotation:
    component: str
    old_key_id: str
    new_key_id: str
    table_version: int
    """The table in force afterwards (re-signed when a controller key was rotated)."""
    seconds: float


def _signing(system: Realization, component: str) -> PlannedComponent:
    planned = system.plan.component(component)  # KeyError names the known components
    if planned.kind not in SIGNING_KINDS or planned.app:
        raise BadInput(f"{component} holds no signing key; nodes, gateways, probers and controllers do (an "
                       "agency app's instance is given none)")
    return planned


def preview_rotation(system: Realization, component: str) -> str:
    """What :func:`rotate` would do now (unknown or keyless components refused as it would); changes nothing."""
    _signing(system, component)
    return (f"replace the key of {component} (key id {system.keystore().signer(component).key_id}), rewrite the "
            "trust root so every component refuses the old key, and restart it with the new one")


def rotate(system: Realization, component: str, step: Callable[[str], None] = lambda _: None) -> Rotation:
    """Rotate ``component``'s key in the running ``system``."""
    planned = _signing(system, component)
    started = time.monotonic()
    keystore = system.keystore()
    signing = [c.id for c in system.plan.components if c.kind in SIGNING_KINDS and not c.app]
    old = keystore.load(component)
    new = Ed25519PrivateKey.generate()
    publics = {c: (new.public_key() if c == component else keystore.load(c).public_key()) for c in signing}
    trust = trust_root_of(publics)
    write_json_atomic(system.layout.trust_root, trust.model_dump(mode="json"))
    step(f"trust root lists the new key {key_id(new.public_key())} for {component}")
    rpc = system.supervisor.rpc().supervisor
    for c in system.plan.components:
        # An agency app reloads nothing of Paydar's, and SIGHUP would end most of them.
        if c.kind in RELOADING_KINDS and not c.app and rpc.getProcessInfo(c.id)["statename"] == "RUNNING":
            rpc.signalProcess(c.id, "HUP")
    step("every node, gateway and controller reloaded it (SIGHUP)")
    resigned = _wait_resigned(system, trust, step) if planned.kind is Kind.CONTROLLER else None
    keystore.replace(component, new)
    rpc.stopProcess(component, True)
    rpc.startProcess(component, True)
    _wait_ready(system, component)
    step(f"{component} restarted with its new key")
    version = resigned if resigned is not None else current_table(system).table.version
    return Rotation(component, key_id(old.public_key()), key_id(new.public_key()), version,
                    round(time.monotonic() - started, 2))


def _wait_resigned(system: Realization, trust: TrustRoot, step: Callable[[str], None]) -> int:
    guard = TableGuard(trust=trust, threshold=system.topology.control.threshold,
                       known_services=[s.id for s in system.topology.services])
    deadline = time.monotonic() + RESIGN_TIMEOUT
    while time.monotonic() < deadline:
        held = current_table(system)
        try:
            guard.restore(held)
        except PaydarError:
            time.sleep(0.2)
            continue
        names = sorted(trust.component_of(Role.CONTROLLER, kid) or kid for kid in guard.signers)
        step(f"table v{held.table.version} re-signed by {', '.join(names)}")
        return held.table.version
    raise PaydarError(f"the controllers did not re-sign the routing table within {RESIGN_TIMEOUT:.0f}s; "
                      "check `paydar status` (controllers need a quorum); the new key is not yet in use")


def _wait_ready(system: Realization, component: str) -> None:
    url = system.plan.component(component).url + "/readyz"
    deadline = time.monotonic() + READY_TIMEOUT
    while fetch_json(url) is None:
        if time.monotonic() >= deadline:
            raise PaydarError(f"{component} did not become ready within {READY_TIMEOUT:.0f}s after its restart; "
                              f"see its log under the state directory")
        time.sleep(0.2)
