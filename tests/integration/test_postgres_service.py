"""An agency app on its own PostgreSQL (``examples/postgres.yaml``), with real jailed servers, real
agents, links, probers and controllers: the app reaches the current primary through its region's
agent; a crashed, hung or partitioned primary is fenced and a standby proven to hold every
acknowledged commit promoted within the RTO, with nothing acknowledged lost through any gateway
(a Jepsen-style history); the old primary acknowledges nothing and rejoins with pg_rewind; an
agent compromised with its own replication password cannot pose as another standby."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import tarfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from paydar.chaos.actions import partition_region, undo_fault
from paydar.chaos.catalog import NEEDS_POSTGRES
from paydar.infra.local.ports import PortAllocator
from paydar.infra.local.processes import terminate
from paydar.infra.local.realizer import Realization
from paydar.model.buckets import bucket_name
from paydar.model.files import read_secret
from paydar.model.identity import TrustRoot
from paydar.model.ids import gateway_id, node_id
from paydar.model.routing import SignedTable, sign_table
from paydar.ops.failover import current_table
from paydar.ops.pgrestore import RECOVERY_UID
from paydar.postgres.roles import REPLICATOR_CONNECTIONS
from paydar.postgres.server import BINARIES, PgServer
from paydar.vault.manifest import (
    ManifestRejected,
    SignedManifest,
    manifest_key,
    wal_key,
    wal_manifest_key,
    wal_manifests_prefix,
)
from paydar.vault.restore import list_backups
from paydar.vault.s3 import load_identity, vault_client
from tests.helpers import EXPERIMENTS, ROOT, assert_experiment_holds, http, paydar, run_runbook, wait_until
from tests.integration.conftest import STARTED_PIDS, running

DATABASE, APP = "7701", "7702"
RTO = 30.0
CONFIG = ROOT / "examples" / "postgres.yaml"


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Realization]:
    with running(CONFIG, tmp_path_factory.mktemp("pg") / "state") as realization:
        yield realization


def app(system: Realization, region: str, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    status, answer, _ = http(method, f"{system.plan.gateway(region).url}/v1/services/{APP}{path}", body,
                             timeout=20)
    return status, answer


def agent_state(system: Realization, region: str) -> dict[str, Any]:
    return http("GET", system.plan.node(DATABASE, region).url + "/state", timeout=3)[1]


def primary(system: Realization) -> str:
    """The region every agent that answers agrees is primary, once the system has settled."""
    def settled() -> str | None:
        states = [agent_state(system, r) for r in system.topology.service(DATABASE).regions]
        primaries = [s["region"] for s in states if s.get("role") == "primary"]
        standbys = [s for s in states if s.get("role") == "standby"]
        ok = len(primaries) == 1 and len(standbys) == len(states) - 1 and len({s["epoch"] for s in states}) == 1
        return primaries[0] if ok else None

    return wait_until(settled, 60, "one primary and every other server its standby, in one epoch")


def superuser(system: Realization, region: str) -> psycopg.Connection[tuple[object, ...]]:
    """The region's server as its superuser, over its unix socket (root only, as its agent reaches it)."""
    pg = system.layout.data(node_id(DATABASE, region)) / "pg"
    return psycopg.connect(host=str(pg), port=system.plan.node(DATABASE, region).db_port, user="paydar",
                           dbname="app", autocommit=True)


@dataclass
class Writers:
    """One writer per gateway registering fresh parcels through the app: the history."""

    system: Realization
    tag: str
    history: list[tuple[float, float, str, str, bool]] = field(default_factory=list)
    """(sent, answered, region, parcel, acknowledged) per request."""
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Writers:
        for region in self.system.topology.region_names:
            thread = threading.Thread(target=self._write, args=(region,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)
        assert not any(t.is_alive() for t in self._threads), "writers stopped within their request timeouts"

    def _write(self, region: str) -> None:
        for n in range(100_000):
            if self._stop.is_set():
                return
            parcel = f"{self.tag}-{region}-{n}"
            sent = time.monotonic()
            status, _ = app(self.system, region, "POST", f"/parcels/{parcel}", {"owner": self.tag})
            self.history.append((sent, time.monotonic(), region, parcel, status == 201))
            if status != 201:
                time.sleep(0.05)

    def acknowledged(self) -> list[str]:
        return [parcel for *_, parcel, ok in self.history if ok]

    def first_ack_after(self, moment: float, regions: set[str]) -> float | None:
        return min((answered for sent, answered, region, _, ok in self.history[:]
                    if ok and sent > moment and region in regions), default=None)


def assert_nothing_acknowledged_was_lost(system: Realization, writers: Writers, regions: tuple[str, ...]) -> None:
    acknowledged = writers.acknowledged()
    assert len(acknowledged) > 10, "the writers got commits acknowledged before and after the fault"
    for region in regions:
        missing = [p for p in acknowledged if app(system, region, "GET", f"/parcels/{p}")[0] != 200]
        assert not missing, f"acknowledged parcels missing through gateway.{region}: {missing[:5]}"


def test_the_app_keeps_its_state_in_the_database_through_every_gateway(system: Realization) -> None:
    regions = system.topology.region_names
    assert app(system, regions[0], "POST", "/parcels/house-1", {"owner": "sara"})[0] == 201
    status, moved = app(system, regions[1], "POST", "/transfers",
                        {"id": "sale-1", "parcel": "house-1", "from": "sara", "to": "reza"})
    assert (status, moved["committed"]) == (200, True)
    assert app(system, regions[2], "POST", "/transfers",
               {"id": "sale-2", "parcel": "house-1", "from": "sara", "to": "ali"})[0] == 409, "not hers any more"
    status, parcel = app(system, regions[2], "GET", "/parcels/house-1")
    assert (status, parcel["owner"], parcel["stale"]) == (200, "reza", False)
    assert [t["id"] for t in parcel["transfers"]] == ["sale-1"], "a transfer moves both rows or neither"
    status, answer, _ = http("GET", f"{system.plan.gateway(regions[0]).url}/v1/services/{DATABASE}/anything")
    assert status == 404 and f"through its app ({APP})" in answer["error"]
    lead = primary(system)
    state = agent_state(system, lead)
    assert set(state["standbys"]) == set(system.topology.service(DATABASE).regions) - {lead}, "both stream"
    assert state["acked_position"] > 0 and state["ack_replicas"] == system.topology.service(DATABASE).ack_replicas


def _agent_pid(system: Realization, region: str) -> int:
    return int(system.supervisor.rpc().supervisor.getProcessInfo(node_id(DATABASE, region))["pid"])


def _crash(system: Realization, region: str) -> Callable[[], None]:
    """SIGKILL the agent (its server dies with it); supervisord restarts it, and it rejoins."""
    os.kill(_agent_pid(system, region), signal.SIGKILL)
    return lambda: None


def _hang(system: Realization, region: str) -> Callable[[], None]:
    """SIGSTOP the agent: its server runs on, unobeyed, until the agent resumes."""
    pid = _agent_pid(system, region)
    os.kill(pid, signal.SIGSTOP)
    return lambda: os.kill(pid, signal.SIGCONT)


def _partition(system: Realization, region: str) -> Callable[[], None]:
    configuration = {"paydar_state_dir": str(system.layout.root)}
    partition_region(region=region, configuration=configuration)

    def heal() -> None:
        undo_fault(configuration)

    return heal


@pytest.mark.parametrize("fault", [_crash, _hang, _partition], ids=["crash", "hang", "partition"])
def test_a_failed_primary_is_replaced_with_proof_and_loses_no_acknowledged_commit(
        system: Realization, fault: Callable[[Realization, str], Callable[[], None]]) -> None:
    old = primary(system)
    others = {r for r in system.topology.region_names if r != old}
    with Writers(system, f"w{fault.__name__}") as writers:
        wait_until(lambda: len(writers.acknowledged()) >= 10, 30, "commits acknowledged before the fault")
        started = time.monotonic()
        heal = fault(system, old)
        try:
            # A frozen agent's server keeps streaming to its standbys until the fence: recovery is
            # timed from the fault to the first commit acknowledged after a standby was certified.
            moved = wait_until(lambda: current_table(system).table.route(DATABASE).primary not in (None, old)
                               and time.monotonic(), RTO, "a standby certified primary")
            back = wait_until(lambda: writers.first_ack_after(moved, others), RTO,
                              "a commit acknowledged through a surviving gateway")
            stranded = _strand(system, old, fault.__name__) if fault is _partition else {}
        finally:
            heal()  # whatever failed, the module's next test starts from a whole system
        new = primary(system)
        healed = len(writers.acknowledged())
        wait_until(lambda: len(writers.acknowledged()) >= healed + 5, 30,
                   "commits acknowledged after the old primary is back")
    assert new != old, "a standby took over"
    assert back - started < RTO
    assert_nothing_acknowledged_was_lost(system, writers, system.topology.region_names)
    state = agent_state(system, old)
    assert (state["role"], state["primary"]) == ("standby", new), "the old primary rejoined as a standby"
    wait_until(lambda: agent_state(system, old)["chain_head"] == agent_state(system, new)["chain_head"], 20,
               "the old primary streaming on the new primary's timeline")
    # Cut off, the old primary could acknowledge nothing: what was sent through its region then was
    # never acknowledged, and after its rewind none of it is anywhere.
    assert all(status != 201 for status in stranded.values()), f"the isolated primary acknowledged: {stranded}"
    assert all(app(system, new, "GET", f"/parcels/{p}")[0] == 404 for p in stranded)


def _strand(system: Realization, region: str, tag: str) -> dict[str, int]:
    """Register parcels through the isolated region's gateway (each given 3 s): their answers."""
    answers: dict[str, int] = {}

    def send(parcel: str) -> None:
        try:
            status, _, _ = http("POST", f"{system.plan.gateway(region).url}/v1/services/{APP}/parcels/{parcel}",
                                {"owner": "stranded"}, timeout=3)
        except OSError:
            status = 0  # no answer in time: not acknowledged
        answers[parcel] = status

    threads = [threading.Thread(target=send, args=(f"stranded-{tag}-{n}",)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(answers) == 3, "every stranded request ended"
    return answers


def test_a_compromised_agent_cannot_pose_as_another_standby(system: Realization) -> None:
    """It holds its own region's replication password, and connects to the primary as the other
    standby's name (``--synchronous``: it would acknowledge every commit without storing it).
    The primary's agent ends the connection: one stolen password never counts as two standbys."""
    lead = primary(system)
    mine, other = (r for r in system.topology.service(DATABASE).regions if r != lead)
    password = read_secret(system.layout.pg_secret(DATABASE, f"replicator-{mine}"))
    port = system.plan.node(DATABASE, lead).db_port
    spool = system.layout.root / "impostor-wal"
    spool.mkdir()
    command = [str(BINARIES / "bin" / "pg_receivewal"), "-D", str(spool), "--synchronous", "--no-loop",
               "-d", f"host=127.0.0.1 port={port} user=replicator_{mine} application_name={other}"]
    impostor = subprocess.Popen(command, env={"PGPASSWORD": password}, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
    STARTED_PIDS.add(impostor.pid)
    try:
        impostor.wait(20)
    except subprocess.TimeoutExpired:
        impostor.send_signal(signal.SIGKILL)
        impostor.wait(10)
        pytest.fail("the impostor kept its replication connection for 20 s")
    assert b"terminat" in (impostor.stderr.read() if impostor.stderr else b"")
    log = system.layout.log(node_id(DATABASE, lead)).read_text()
    assert f"role=replicator_{mine} name={other}: not that region's own" in log
    assert set(agent_state(system, lead)["standbys"]) == {mine, other}, "the real standbys stream on"


def test_the_agents_refuse_a_table_no_controller_quorum_signed(system: Realization) -> None:
    """A compromised agent signs a table with its own key and pushes it to its peers: refused, nothing moves."""
    lead = primary(system)
    mine = next(r for r in system.topology.service(DATABASE).regions if r != lead)
    held = http("GET", system.plan.node(DATABASE, lead).url + "/v1/routing-table")[1]
    table = SignedTable.model_validate(held).table
    route = table.route(DATABASE)
    moved = table.model_copy(update={"version": table.version + 1, "previous": table.digest(), "services": {
        **table.services, DATABASE: route.model_copy(update={"primary": mine, "standbys": (lead,),
                                                             "epoch": route.epoch + 1})}})
    forged = sign_table(moved, [system.keystore().signer(node_id(DATABASE, mine))])
    for region in system.topology.service(DATABASE).regions:
        request = urllib.request.Request(system.plan.node(DATABASE, region).url + "/v1/routing-table",
                                         data=forged.model_dump_json().encode(), method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 403
        assert json.loads(refused.value.read())["reason"] == "under-signed"
    assert primary(system) == lead


DATABASE_EXPERIMENTS = [p for p in EXPERIMENTS if NEEDS_POSTGRES in json.loads(p.read_text())["tags"]]


@pytest.mark.parametrize("experiment", DATABASE_EXPERIMENTS, ids=[p.stem for p in DATABASE_EXPERIMENTS])
def test_the_database_experiments_hold_and_roll_back(system: Realization, experiment: Path, tmp_path: Path) -> None:
    assert_experiment_holds(system, experiment, tmp_path)
    primary(system)  # the old primary is back as a standby: the next experiment starts from a whole system


def test_the_failed_over_primary_runbook(system: Realization) -> None:
    old = primary(system)
    _crash(system, old)
    wait_until(lambda: current_table(system).table.route(DATABASE).primary not in (None, old), RTO,
               "a standby certified primary")
    steps = run_runbook(system, "postgres-primary-failover", SERVICE=DATABASE, REGION=old)
    assert [s["command"] for s in steps][-1] == "paydar check"
    assert paydar(system, "status").returncode == 0, "every component healthy: the old primary rejoined"
    assert agent_state(system, old)["role"] == "standby"


def test_a_page_changed_on_a_standbys_disk_stops_it_until_its_runbook_rebuilds_it(system: Realization) -> None:
    """Ransomware on one standby's disk: its agent's integrity scan finds the page, stops the
    server (citizens go on being served, the other standby acknowledging), and the runbook
    clones it afresh; the primary itself is never rebuilt."""
    lead = primary(system)
    victim = next(r for r in system.topology.service(DATABASE).regions if r != lead)
    assert app(system, lead, "POST", "/parcels/scanned-1", {"owner": "sara"})[0] == 201
    pg = system.layout.data(node_id(DATABASE, victim)) / "pg"
    with superuser(system, victim) as connection:
        connection.execute("CHECKPOINT")  # its restartpoint writes what it replayed to its own disk
        row = connection.execute("SELECT pg_relation_filepath(c.oid) FROM pg_class c WHERE c.relkind = 'r' "
                                 "AND c.relnamespace = 'public'::regnamespace ORDER BY pg_relation_size(c.oid) DESC "
                                 "LIMIT 1").fetchone()
    assert row is not None
    with (pg / "db" / str(row[0])).open("r+b") as handle:
        handle.seek(100)
        handle.write(b"\xde\xad\xbe\xef" * 8)
    wait_until(lambda: agent_state(system, victim)["compromised"], 30, "the scan finding the changed page")
    assert app(system, lead, "POST", "/parcels/scanned-2", {"owner": "reza"})[0] == 201, "still served"
    refused = paydar(system, "rebuild", "--service", DATABASE, "--region", lead, "--yes")
    assert refused.returncode != 0 and "without its primary. Fail over first" in refused.stderr + refused.stdout
    run_runbook(system, "postgres-instance-rebuild", SERVICE=DATABASE, REGION=victim)
    state = agent_state(system, victim)
    assert (state["role"], state["compromised"]) == ("standby", None)
    assert list(pg.parent.glob("pg.rejected-*")), "the damaged data is kept aside"


def test_a_compromised_app_cannot_lock_out_its_database_or_drop_the_standby_wait(system: Realization) -> None:
    """With the app role's real password (every instance holds it) it turns off synchronous commits
    for the role and closes the database to new connections: the primary's agent puts both back."""
    lead = primary(system)
    route = system.plan.node(DATABASE, lead).route_port
    password = read_secret(system.layout.pg_secret(DATABASE, "app"))

    def connect() -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(host="127.0.0.1", port=route, user="app", password=password, dbname="app",
                               autocommit=True, connect_timeout=3)

    with connect() as hostile:
        hostile.execute("ALTER ROLE app SET synchronous_commit = local")
        hostile.execute("ALTER DATABASE app CONNECTION LIMIT 0")

    def repaired() -> bool:
        with connect() as fresh:
            return fresh.execute("SHOW synchronous_commit").fetchone() == ("on",)

    wait_until(repaired, 30, "the agent putting the app's role and database back")
    wait_until(lambda: "put back service=" in system.layout.log(node_id(DATABASE, lead)).read_text(), 10,
               "the primary's agent saying what it put back")
    assert app(system, system.topology.region_names[0], "POST", "/canary", {})[0] == 200


def test_a_stolen_replication_password_opens_no_more_than_its_regions_share(system: Realization) -> None:
    """Ordinary connections (what pg_rewind uses) are bounded per role; replication connections
    beyond its region's own are ended by the primary's agent (the impostor test above)."""
    lead = primary(system)
    mine = next(r for r in system.topology.service(DATABASE).regions if r != lead)
    password = read_secret(system.layout.pg_secret(DATABASE, f"replicator-{mine}"))
    port = system.plan.node(DATABASE, lead).db_port
    opened: list[psycopg.Connection[tuple[object, ...]]] = []
    try:
        with pytest.raises(psycopg.OperationalError, match="too many connections for role"):
            for _ in range(REPLICATOR_CONNECTIONS + 1):
                opened.append(psycopg.connect(host="127.0.0.1", port=port, user=f"replicator_{mine}",
                                              password=password, dbname="postgres", connect_timeout=3))
        assert len(opened) == REPLICATOR_CONNECTIONS
    finally:
        for connection in opened:
            connection.close()


def _archived(system: Realization, region: str) -> set[str]:
    admin = vault_client(system.plan.vault.endpoint, system.vault_admin())
    listed = admin.list_objects_v2(Bucket=bucket_name(DATABASE), Prefix=wal_manifests_prefix(region))
    return {item["Key"].rsplit("/", 1)[1].removesuffix(".json") for item in listed.get("Contents", [])}


def test_a_point_in_time_is_recovered_from_the_vault_by_its_runbook(system: Realization) -> None:
    """A base backup (its runbook takes one) and the WAL every server archives reach the vault
    under the agent's signed manifests; a recovery to an LSN holds what was committed before it
    and nothing after."""
    lead = primary(system)
    region = next(r for r in system.topology.service(DATABASE).regions if r != lead)  # a standby's own copy
    taken = paydar(system, "backup", "now", "--service", DATABASE, "--region", region)
    assert taken.returncode == 0, taken.stdout + taken.stderr
    assert app(system, lead, "POST", "/parcels/before-the-mistake", {"owner": "sara"})[0] == 201
    with superuser(system, lead) as connection:
        row = connection.execute("SELECT pg_current_wal_lsn()::text, pg_walfile_name(pg_current_wal_lsn())"
                                 ).fetchone()
        assert row is not None
        target, segment = str(row[0]), str(row[1])
    assert app(system, lead, "POST", "/parcels/the-mistake", {"owner": "nobody"})[0] == 201
    with superuser(system, lead) as connection:
        connection.execute("SELECT pg_switch_wal()")  # the segment is complete: every server archives it
    wait_until(lambda: segment in _archived(system, region), 30, f"{region}'s copy of {segment} in the vault")
    run_runbook(system, "postgres-restore", SERVICE=DATABASE, REGION=region, LSN=target)
    [into] = sorted((system.layout.root / "forensics").glob(f"{DATABASE}-{region}-*"))
    assert (into / "recovery.log").exists(), "a jailed server of its own recovered it"
    assert (into / "pg" / "db").stat().st_uid == 0, "and it is root's once recovered"
    for root, dirs, files in os.walk(into / "pg"):  # to look inside, as an operator would
        for entry in (root, *(os.path.join(root, n) for n in (*dirs, *files))):
            os.chown(entry, RECOVERY_UID, RECOVERY_UID, follow_symlinks=False)
    server = PgServer(data_dir=into / "pg", conf_dir=into / "conf", port=PortAllocator().take(), uid=RECOVERY_UID,
                      state_dir=system.layout.root)
    with (into / "inspect.log").open("ab") as out:
        process = subprocess.Popen(server.command(), stdout=out, stderr=subprocess.STDOUT)
    STARTED_PIDS.add(process.pid)
    try:
        wait_until(server.ready, 30, "the recovered database accepting connections")
        with server.connect(dbname="app") as connection:
            parcels = {str(r[0]) for r in connection.execute(
                "SELECT id FROM parcels WHERE id IN ('before-the-mistake', 'the-mistake')").fetchall()}
    finally:
        terminate(process, 20.0, signal.SIGINT)
    assert parcels == {"before-the-mistake"}, "what was committed before the LSN, and nothing after"


def test_a_standby_is_rebuilt_from_the_vault_and_catches_up(system: Realization) -> None:
    lead = primary(system)
    region = next(r for r in system.topology.service(DATABASE).regions if r != lead)
    assert paydar(system, "backup", "now", "--service", DATABASE, "--region", region).returncode == 0
    assert app(system, lead, "POST", "/parcels/after-the-backup", {"owner": "ali"})[0] == 201
    refused = paydar(system, "restore", "--service", DATABASE, "--region", lead, "--yes")
    assert refused.returncode != 0 and "Fail over first" in refused.stderr + refused.stdout
    rebuilt = paydar(system, "restore", "--service", DATABASE, "--region", region, "--yes")
    assert rebuilt.returncode == 0, rebuilt.stderr + rebuilt.stdout
    state = agent_state(system, region)
    assert (state["role"], state["compromised"]) == ("standby", None)
    with superuser(system, region) as connection:
        assert connection.execute("SELECT owner FROM parcels WHERE id = 'after-the-backup'").fetchone() == ("ali",), \
            "it caught up past its backup"


def test_an_agents_key_is_rotated_and_its_old_key_refused(system: Realization) -> None:
    """The agent signs its backups: after `paydar keys rotate` its new manifests verify, and one
    its old key signs is refused like any stranger's."""
    lead = primary(system)
    region = next(r for r in system.topology.service(DATABASE).regions if r != lead)
    node = node_id(DATABASE, region)
    old = system.keystore().signer(node)
    rotated = paydar(system, "keys", "rotate", "--component", node, "--yes")
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    assert system.keystore().signer(node).key_id != old.key_id
    taken = paydar(system, "backup", "now", "--service", DATABASE, "--region", region)
    assert taken.returncode == 0, taken.stdout + taken.stderr
    trust = TrustRoot.load(system.layout.trust_root)
    admin = vault_client(system.plan.vault.endpoint, system.vault_admin())
    [newest] = list_backups(admin, trust, DATABASE, region, newest=1)
    assert newest.verified is not None, newest.problem
    with pytest.raises(ManifestRejected, match="signed by unknown key"):
        SignedManifest.seal(newest.verified, old).verified(trust, service=DATABASE, bucket=bucket_name(DATABASE))
    primary(system)  # the restarted agent's server is a standby again


def test_a_restore_refuses_a_wal_file_whose_bytes_are_not_the_ones_signed(system: Realization,
                                                                          tmp_path: Path) -> None:
    """Last in the module: what it plants stays in the vault (object lock). The region's vault
    credentials put zeros where an archived WAL file should be, and the agent's key, stolen too,
    signs a manifest naming them with a genuine segment's hash: the bytes give it away."""
    lead = primary(system)
    region = next(r for r in system.topology.service(DATABASE).regions if r != lead)
    assert paydar(system, "backup", "now", "--service", DATABASE, "--region", region).returncode == 0
    with superuser(system, lead) as connection:
        row = connection.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()
        connection.execute("SELECT pg_switch_wal()")
    assert row is not None
    segment = str(row[0])
    wait_until(lambda: segment in _archived(system, region), 30, f"{region}'s copy of {segment} in the vault")
    admin = vault_client(system.plan.vault.endpoint, system.vault_admin())
    bucket = bucket_name(DATABASE)
    [key] = [item["Key"] for item in admin.list_objects_v2(Bucket=bucket, Prefix=wal_manifests_prefix(region))
             ["Contents"] if item["Key"].endswith(f"/{segment}.json")]
    genuine = SignedManifest.parse(admin.get_object(Bucket=bucket, Key=key)["Body"].read(), segment).manifest
    assert genuine.generation is not None
    # A later segment, planted: zeros where WAL should be, under a manifest the stolen key signs
    # with the genuine segment's hash (a manifest verifies only under its own key: its own name).
    name = f"{segment[:16]}{int(segment[16:], 16) + 100:08X}"
    regional = vault_client(system.plan.vault.endpoint, load_identity(system.layout.vault_region(region)))
    planted_at = wal_key(region, genuine.generation, name)
    swapped = regional.put_object(Bucket=bucket, Key=planted_at, Body=b"\0" * genuine.size)["VersionId"]
    forged = genuine.model_copy(update={"version_id": swapped, "key": planted_at,
                                        "position": genuine.position + 100 * 16 * 1024 * 1024})
    stolen = system.keystore().signer(node_id(DATABASE, region))
    regional.put_object(Bucket=bucket, Key=wal_manifest_key(region, genuine.generation, name),
                        Body=SignedManifest.seal(forged, stolen).model_dump_json().encode())
    refused = paydar(system, "restore", "--service", DATABASE, "--region", region, "--into",
                     str(tmp_path / "never"), "--lsn", "FFFFFFFF/0")
    assert refused.returncode != 0
    assert "does not match its signed manifest" in refused.stderr + refused.stdout
    assert not (tmp_path / "never" / "pg").exists(), "nothing was recovered"
    # The base backup itself, one byte of a file inside it changed, under a manifest the stolen
    # key signs with the changed bundle's own hash: pg_verifybackup finds the file.
    trust = TrustRoot.load(system.layout.trust_root)
    [base] = [e.verified for e in list_backups(admin, trust, DATABASE, region, newest=1) if e.verified]
    bundle = tmp_path / "bundle.tar"
    bundle.write_bytes(admin.get_object(Bucket=bucket, Key=base.key, VersionId=base.version_id)["Body"].read())
    with tarfile.open(bundle) as outer:
        outer.extractall(tmp_path / "bundle", filter="data")
    with tarfile.open(tmp_path / "bundle" / "base.tar") as inner:
        member = next(m for m in inner.getmembers() if m.name == "PG_VERSION")
        offset = member.offset_data
    with (tmp_path / "bundle" / "base.tar").open("r+b") as raw:
        raw.seek(offset)
        raw.write(b"9")  # "18" becomes "98": same size, another version
    with tarfile.open(bundle, "w") as rebuilt:
        for name in ("backup_manifest", "base.tar"):
            rebuilt.add(tmp_path / "bundle" / name, arcname=name)
    changed = regional.put_object(Bucket=bucket, Key=base.key, Body=bundle.read_bytes())["VersionId"]
    later = base.created_ms + 1
    planted = base.model_copy(update={"version_id": changed, "created_ms": later, "size": bundle.stat().st_size,
                                      "sha256": hashlib.sha256(bundle.read_bytes()).hexdigest()})
    regional.put_object(Bucket=bucket, Key=manifest_key(region, later, base.position),
                        Body=SignedManifest.seal(planted, stolen).model_dump_json().encode())
    refused = paydar(system, "restore", "--service", DATABASE, "--region", region, "--into",
                     str(tmp_path / "never-either"))
    assert refused.returncode != 0 and "pg_verifybackup" in refused.stderr + refused.stdout, refused.stderr
    assert not (tmp_path / "never-either" / "pg").exists(), "nothing was recovered"


def test_an_agents_admin_endpoints_open_only_to_its_own_admin_token(system: Realization) -> None:
    """A compromised component holds its own admin token, not this agent's: neither a rebuild nor a
    backup runs for it, and the instance is left as it was."""
    region = system.topology.service(DATABASE).regions[-1]
    agent = system.plan.node(DATABASE, region).url
    before = agent_state(system, region)
    others = [gateway_id(region), node_id(DATABASE, next(r for r in system.topology.region_names if r != region))]
    for path in ("/v1/rebuild", "/v1/backup"):
        for token in [None, *(system.admin_token(c) for c in others)]:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            request = urllib.request.Request(agent + path, data=b"", method="POST", headers=headers)
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=10)
            assert refused.value.code == 401, path
    after = agent_state(system, region)
    assert (after["role"], after["epoch"]) == (before["role"], before["epoch"]), "nothing changed"
