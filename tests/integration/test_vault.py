"""The local vault on a real SeaweedFS (``weed mini``): buckets are locked, versioned, and
backups can't be deleted or have their retention shortened, by the admin or by a region.

One weed per module; each test uses its own buckets, so tests don't depend on each other.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from botocore.exceptions import ClientError

from paydar.infra.local.vault import GRPC_OFFSET, WEED, VaultPorts, render_s3_config, standalone_vault, weed_command
from paydar.model.buckets import InvalidBucketName, bucket_name
from paydar.vault.s3 import (
    BucketNotLocked,
    S3Client,
    S3Identity,
    describe_bucket,
    new_identity,
    provision_buckets,
    vault_client,
)
from tests.helpers import wait_until
from tests.integration.conftest import STARTED_PIDS

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import ObjectLockRetentionTypeDef

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

REGION_BUCKET = "paydar-x"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Vault:
    endpoint: str
    ports: VaultPorts
    pid: int
    admin: S3Identity
    region: S3Identity

    def client(self, identity: S3Identity) -> S3Client:
        return vault_client(self.endpoint, identity)


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_vault_ports(attempts: int = 100) -> VaultPorts:
    """Five distinct free ports whose gRPC twins (port + 10000) are free too."""
    for _ in range(attempts):
        with ExitStack() as held:  # hold each port until all five are chosen, so they differ
            ports = []
            for _ in range(5):
                sock = held.enter_context(socket.socket())
                sock.bind(("127.0.0.1", 0))
                ports.append(sock.getsockname()[1])
            twins = [p + GRPC_OFFSET for p in ports]
            if len(set(ports) | set(twins)) == 10 and all(t < 65536 and _bindable(t) for t in twins):
                return VaultPorts(*ports)
    raise RuntimeError(f"no 5 free ports with free port+{GRPC_OFFSET} on 127.0.0.1 in {attempts} attempts")


@pytest.fixture(scope="module")
def vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vault]:
    admin = new_identity("paydar-admin", ["Admin", "Read", "Write", "List", "Tagging"])
    region = new_identity("region-x", [f"Read:{REGION_BUCKET}", f"Write:{REGION_BUCKET}", f"List:{REGION_BUCKET}"])
    ports = free_vault_ports()
    with standalone_vault(tmp_path_factory.mktemp("vault"), ports, [admin, region], timeout=20,
                          on_start=STARTED_PIDS.add) as weed:
        yield Vault(endpoint=weed.endpoint, ports=ports, pid=weed.pid, admin=admin, region=region)


def error_code(excinfo: pytest.ExceptionInfo[ClientError]) -> str:
    return str(excinfo.value.response["Error"]["Code"])


def listeners(pid: int, namespace_of: int | None = None) -> set[tuple[str, str, int]]:
    """(protocol, address, port) of every socket the process listens on, from /proc.

    Sockets are looked up in the network namespace of ``namespace_of`` (the process's own by default)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd)
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for proto, listening_state in (("tcp", "0A"), ("tcp6", "0A"), ("udp", "07"), ("udp6", "07")):
        for line in Path(f"/proc/{namespace_of or pid}/net/{proto}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if inode in inodes and state == listening_state:
                address, port = local.split(":")
                if len(address) == 8:
                    address = socket.inet_ntoa(bytes.fromhex(address)[::-1])
                found.add((proto, address, int(port, 16)))
    return found


# --- the process ---------------------------------------------------------------------------


def test_every_weed_flag_exists_in_this_weed() -> None:
    usage = subprocess.run([WEED, "mini", "-h"], capture_output=True, text=True, timeout=20, check=False)
    text = usage.stdout + usage.stderr
    command = weed_command(WEED, Path("/d"), VaultPorts(1, 2, 3, 4, 5), Path("/c"))
    flags = [arg.split("=")[0] for arg in command[command.index("mini") + 1:]]
    assert [f for f in flags if f"  {f} " not in text and f"  {f}\n" not in text] == []


def _weed_pid(jail_pid: int) -> int:
    children = Path(f"/proc/{jail_pid}/task/{jail_pid}/children").read_text().split()
    assert len(children) == 1, f"the jail runs exactly one program, found {children}"
    return int(children[0])


def test_weed_runs_in_its_own_network_and_only_s3_reaches_it(vault: Vault) -> None:
    weed = _weed_pid(vault.pid)
    assert os.readlink(f"/proc/{weed}/ns/net") != os.readlink("/proc/self/ns/net")
    # Inside its namespace weed binds all its ports on loopback (the admin server binds after S3 answers).
    wait_until(lambda: {port for _, _, port in listeners(weed)} >= vault.ports.listening(), 10,
               f"weed to listen on all of {sorted(vault.ports.listening())}")
    inside = listeners(weed)
    assert {address for _, address, _ in inside} == {"127.0.0.1"}
    assert {proto for proto, _, _ in inside} == {"tcp"}
    assert {port for _, _, port in inside} == vault.ports.listening()
    # From this namespace, the one the components share, only the S3 port is there.
    assert listeners(vault.pid, namespace_of=os.getpid()) == {("tcp", "127.0.0.1", vault.ports.s3)}
    refused = []
    for port in sorted(vault.ports.listening() - {vault.ports.s3}):
        with socket.socket() as probe, contextlib.suppress(ConnectionRefusedError):
            probe.settimeout(3)
            probe.connect(("127.0.0.1", port))
            continue
        refused.append(port)
    assert refused == sorted(vault.ports.listening() - {vault.ports.s3})


# --- provisioning --------------------------------------------------------------------------


def test_provision_creates_locked_versioned_buckets(vault: Vault) -> None:
    admin = vault.client(vault.admin)
    provision_buckets(admin, ["paydar-new-a", "paydar-new-b"], retention_days=3)
    for bucket in ("paydar-new-a", "paydar-new-b"):
        assert describe_bucket(admin, bucket) == {"bucket": bucket, "versioning": "Enabled", "object_lock": True,
                                                  "mode": "COMPLIANCE", "days": 3, "years": None}


def test_provisioning_twice_changes_nothing(vault: Vault, caplog: pytest.LogCaptureFixture) -> None:
    admin = vault.client(vault.admin)
    provision_buckets(admin, ["paydar-twice"], retention_days=2)
    before = describe_bucket(admin, "paydar-twice")
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="paydar.vault.s3"):
        provision_buckets(admin, ["paydar-twice"], retention_days=2)
    changes = [r.getMessage() for r in caplog.records if r.name == "paydar.vault.s3" and r.levelno >= logging.INFO]
    assert changes == []
    assert describe_bucket(admin, "paydar-twice") == before


def test_bucket_without_object_lock_is_refused(vault: Vault) -> None:
    admin = vault.client(vault.admin)
    admin.create_bucket(Bucket="paydar-unlocked")
    with pytest.raises(BucketNotLocked, match="paydar-unlocked exists without object lock"):
        provision_buckets(admin, ["paydar-unlocked"], retention_days=1)


# --- immutability --------------------------------------------------------------------------


def test_locked_version_cannot_be_deleted_even_by_admin_with_bypass(vault: Vault) -> None:
    admin = vault.client(vault.admin)
    provision_buckets(admin, ["paydar-immutable"], retention_days=1)
    version = admin.put_object(Bucket="paydar-immutable", Key="snap", Body=b"backup-1")["VersionId"]
    head = admin.head_object(Bucket="paydar-immutable", Key="snap", VersionId=version)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"] > datetime.now(UTC) + timedelta(hours=23)

    with pytest.raises(ClientError) as refused:
        admin.delete_object(Bucket="paydar-immutable", Key="snap", VersionId=version, BypassGovernanceRetention=True)
    assert error_code(refused) == "AccessDenied"
    batch = admin.delete_objects(Bucket="paydar-immutable", BypassGovernanceRetention=True,
                                 Delete={"Objects": [{"Key": "snap", "VersionId": version}]})
    assert [(e["VersionId"], e["Code"]) for e in batch["Errors"]] == [(version, "AccessDenied")]
    with pytest.raises(ClientError) as not_empty:
        admin.delete_bucket(Bucket="paydar-immutable")
    assert error_code(not_empty) == "BucketNotEmpty"
    # A plain delete only stacks a delete marker; the locked version stays readable.
    assert admin.delete_object(Bucket="paydar-immutable", Key="snap")["DeleteMarker"] is True

    body = admin.get_object(Bucket="paydar-immutable", Key="snap", VersionId=version)["Body"].read()
    assert body == b"backup-1"


def test_retention_cannot_be_shortened_or_weakened(vault: Vault) -> None:
    admin = vault.client(vault.admin)
    provision_buckets(admin, ["paydar-retention"], retention_days=1)
    version = admin.put_object(Bucket="paydar-retention", Key="snap", Body=b"backup")["VersionId"]
    before = admin.get_object_retention(Bucket="paydar-retention", Key="snap", VersionId=version)["Retention"]
    sooner = datetime.now(UTC) + timedelta(minutes=1)
    later = datetime.now(UTC) + timedelta(days=2)

    attempts: list[ObjectLockRetentionTypeDef] = [{"Mode": "COMPLIANCE", "RetainUntilDate": sooner},
                                                  {"Mode": "GOVERNANCE", "RetainUntilDate": later}]
    for retention in attempts:
        with pytest.raises(ClientError) as refused:
            admin.put_object_retention(Bucket="paydar-retention", Key="snap", VersionId=version,
                                       Retention=retention, BypassGovernanceRetention=True)
        assert error_code(refused) == "AccessDenied", retention
    after = admin.get_object_retention(Bucket="paydar-retention", Key="snap", VersionId=version)["Retention"]
    assert after == before


# --- region credentials --------------------------------------------------------------------


def test_region_identity_writes_its_bucket_and_nothing_else(vault: Vault) -> None:
    admin, region = vault.client(vault.admin), vault.client(vault.region)
    provision_buckets(admin, [REGION_BUCKET, "paydar-other"], retention_days=1)
    admin.put_object(Bucket="paydar-other", Key="snap", Body=b"other")

    version = region.put_object(Bucket=REGION_BUCKET, Key="snap", Body=b"mine")["VersionId"]
    assert region.get_object(Bucket=REGION_BUCKET, Key="snap")["Body"].read() == b"mine"
    denied: dict[str, Callable[[], object]] = {
        "get outside": lambda: region.get_object(Bucket="paydar-other", Key="snap"),
        "put outside": lambda: region.put_object(Bucket="paydar-other", Key="snap", Body=b"evil"),
        "list outside": lambda: region.list_objects_v2(Bucket="paydar-other"),
        "delete own version": lambda: region.delete_object(Bucket=REGION_BUCKET, Key="snap", VersionId=version,
                                                           BypassGovernanceRetention=True),
        "change lock": lambda: region.put_object_lock_configuration(
            Bucket=REGION_BUCKET, ObjectLockConfiguration={
                "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}}),
    }
    codes = {}
    for name, call in denied.items():
        with pytest.raises(ClientError) as refused:
            call()
        codes[name] = error_code(refused)
    assert codes == dict.fromkeys(denied, "AccessDenied")
    assert admin.get_object(Bucket="paydar-other", Key="snap")["Body"].read() == b"other"


# --- names and identities ------------------------------------------------------------------


@pytest.mark.parametrize(("service_id", "expected"), [
    ("1101", "paydar-1101"), ("Tax.Filing_2", "paydar-tax-filing-2"), ("-x-", "paydar-x"),
    ("a" * 56, "paydar-" + "a" * 56),
])
def test_bucket_name(service_id: str, expected: str) -> None:
    assert bucket_name(service_id) == expected


@pytest.mark.parametrize(("service_id", "message"), [
    ("a" * 57, "is 64 characters, S3 allows at most 63; use a service id of at most 56 characters"),
    ("..", "has no letter or digit"),
])
def test_bad_bucket_name(service_id: str, message: str) -> None:
    with pytest.raises(InvalidBucketName, match=message):
        bucket_name(service_id)


def test_identity_config_and_secrecy() -> None:
    identity = new_identity("region-x", ["Write:paydar-x"])
    assert render_s3_config([identity]) == {"identities": [{
        "name": "region-x", "credentials": [{"accessKey": identity.access_key, "secretKey": identity.secret_key}],
        "actions": ["Write:paydar-x"]}]}
    assert identity.secret_key not in repr(identity)
    assert new_identity("region-x", []).secret_key != identity.secret_key
    assert S3Identity(**{**identity.__dict__, "actions": ["Read"]}).actions == ("Read",)


# --- the side doors: only the S3 API with its IAM reaches the data -----------------------------


def _raw(method: str, url: str, data: bytes | None = None, *, unix: str | None = None) -> int:
    """The HTTP status of one request, 0 when nothing answered; over the unix socket ``unix`` if given."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)

    class Connection(http.client.HTTPConnection):
        def connect(self) -> None:
            if unix is None:
                super().connect()
                return
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.settimeout(5)
            self.sock.connect(unix)

    connection = Connection(parts.hostname or "127.0.0.1", parts.port, timeout=5)
    try:
        connection.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), body=data)
        return connection.getresponse().status
    except OSError:
        return 0
    finally:
        connection.close()


def _unix_listeners(pid: int) -> dict[str, str]:
    """{kind: path} of the unix sockets the process listens on, kind as weed names it ("filer-grpc")."""
    inodes = {os.readlink(fd)[8:-1] for fd in Path(f"/proc/{pid}/fd").iterdir()
              if os.readlink(fd).startswith("socket:[")}
    found = {}
    for line in Path(f"/proc/{pid}/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) == 8 and fields[6] in inodes and fields[5] == "01":
            found[fields[7].removeprefix("/tmp/seaweedfs-").rsplit("-", 1)[0]] = fields[7]
    return found


def test_every_door_beside_s3_is_shut(vault: Vault) -> None:
    import grpc

    admin = vault.client(vault.admin)
    provision_buckets(admin, ["paydar-doors"], retention_days=1)
    admin.put_object(Bucket="paydar-doors", Key="tehran/snapshot", Body=b"citizen data")
    filer, master = f"http://127.0.0.1:{vault.ports.filer}", f"http://127.0.0.1:{vault.ports.master}"
    filer_doors = {"filer list": ("GET", "/buckets/"), "filer read": ("GET", "/buckets/paydar-doors/tehran/snapshot"),
                   "filer delete": ("DELETE", "/buckets/paydar-doors/tehran/snapshot"),
                   "filer write": ("PUT", "/buckets/paydar-doors/tehran/planted")}
    over_tcp = {name: _raw(method, filer + path, b"x" if method == "PUT" else None)
                for name, (method, path) in filer_doors.items()}
    over_tcp |= {"master assign": _raw("GET", f"{master}/dir/assign"),
                 "volume status": _raw("GET", f"http://127.0.0.1:{vault.ports.volume}/status")}
    assert over_tcp == dict.fromkeys(over_tcp, 0), f"weed's TCP side doors answered from outside: {over_tcp}"
    # Unix sockets are not network-scoped: each one must check credentials itself.
    sockets = _unix_listeners(_weed_pid(vault.pid))
    assert {"filer", "s3", "master-grpc", "volume-grpc", "filer-grpc", "s3-grpc"} <= set(sockets), sockets
    over_unix = {name: _raw(method, "http://x" + path, b"x" if method == "PUT" else None, unix=sockets["filer"])
                 for name, (method, path) in filer_doors.items()}
    assert over_unix == dict.fromkeys(over_unix, 401), over_unix
    assert _raw("GET", "http://x/paydar-doors/tehran/snapshot", unix=sockets["s3"]) == 403
    for kind in sorted(k for k in sockets if k.endswith("grpc")):
        channel = grpc.insecure_channel(f"unix:{sockets[kind]}")
        listing = channel.unary_stream("/filer_pb.SeaweedFiler/ListEntries",
                                       request_serializer=lambda b: b, response_deserializer=lambda b: b)
        with pytest.raises(grpc.RpcError) as refused:
            list(listing(b"\n\x01/", timeout=3))
        assert refused.value.code() is grpc.StatusCode.UNAVAILABLE, (kind, refused.value)
        channel.close()
    assert admin.get_object(Bucket="paydar-doors", Key="tehran/snapshot")["Body"].read() == b"citizen data", \
        "the S3 API with its IAM still works, and nothing went through a side door"


def test_the_master_cannot_drop_a_locked_bucket_without_credentials(vault: Vault) -> None:
    admin = vault.client(vault.admin)
    provision_buckets(admin, ["paydar-doomed"], retention_days=1)
    admin.put_object(Bucket="paydar-doomed", Key="tehran/snapshot", Body=b"citizen data")
    assert _raw("GET", f"http://127.0.0.1:{vault.ports.master}/col/delete?collection=paydar-doomed") == 0
    assert admin.get_object(Bucket="paydar-doomed", Key="tehran/snapshot")["Body"].read() == b"citizen data"
