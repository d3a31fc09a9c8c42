"""Key rotation on a running system: the new key works, the old one is refused everywhere."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Iterator

import pytest

from paydar.chaos.probes import seconds_until_available
from paydar.chaos.reach import offer_everywhere
from paydar.infra.local.realizer import Realization
from paydar.model.identity import TrustRoot
from paydar.model.routing import TableGuard, sign_table
from paydar.ops.failover import current_table
from paydar.ops.keys import rotate
from tests.helpers import write_topology
from tests.integration.conftest import running

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Realization]:
    root = tmp_path_factory.mktemp("keys")
    with running(write_topology(root / "national.yaml"), root / "state") as realization:
        yield realization


def test_a_rotated_controller_key_is_refused_and_the_table_is_re_signed(system: Realization) -> None:
    stolen = system.keystore().signer("controller.tehran")
    other = system.keystore().signer("controller.isfahan")
    before = current_table(system)
    steps: list[str] = []
    done = rotate(system, "controller.tehran", steps.append)
    assert done.old_key_id != done.new_key_id and done.table_version > before.table.version
    assert any("re-signed" in s for s in steps)
    # The table in force verifies under the new trust root.
    trust = TrustRoot.load(system.layout.trust_root)
    guard = TableGuard(trust=trust, threshold=2, known_services=[s.id for s in system.topology.services])
    assert len(guard.restore(current_table(system))) >= 2
    # Before the rotation a table signed by the stolen key and one honest key would have been
    # obeyed; now every node, gateway and controller refuses it as under-signed.
    held = current_table(system).table
    forged = held.model_copy(update={"version": held.version + 100, "reason": "signed with a retired key"})
    answers = asyncio.run(offer_everywhere(system, sign_table(forged, [stolen, other]).model_dump_json().encode()))
    assert answers and set(answers.values()) == {403}, answers
    key_file = system.keystore().path("controller.tehran")
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert system.keystore().signer("controller.tehran").key_id == done.new_key_id
    seconds_until_available(30, {"paydar_state_dir": str(system.layout.root)})


def test_only_components_with_keys_rotate(system: Realization) -> None:
    from paydar.model.errors import PaydarError

    with pytest.raises(PaydarError, match="holds no signing key"):
        rotate(system, "vault")
    with pytest.raises(KeyError, match=r"no component 'controller\.shiraz'"):
        rotate(system, "controller.shiraz")
