"""`python -m paydar.vault.upload`: put one file in the vault and print the version id it was given.

Nodes upload their backups through this short-lived process rather than holding a boto3
client: a client costs every long-running node about 26 MiB (300 MiB over the 12 nodes of
the example system) for a few seconds of use every `storage.backup_interval`. The region's
identity is read from its 0600 file here and never passes through argv or the environment.

Exit codes: 0 stored (stdout: ``{"version_id": ...}``), 1 the vault refused or failed (stderr
says why), 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from paydar.model.errors import PaydarError
from paydar.vault.s3 import VaultError, load_identity, vault_client
from paydar.vault.snapshot import Put, s3_put

__all__ = ["UPLOAD_TIMEOUT", "main", "put_through_process"]

UPLOAD_TIMEOUT = 600.0


def put_through_process(endpoint: str, identity: Path, bucket: str, timeout: float = UPLOAD_TIMEOUT) -> Put:
    """A :data:`Put` into ``bucket`` that runs this module once per file (see the module doc);
    it returns the version id, or raises :class:`VaultError` with the uploader's words."""
    def put(key: str, path: Path, content_type: str) -> str:
        try:
            done = subprocess.run(
                [sys.executable, "-m", "paydar.vault.upload", "--endpoint", endpoint, "--identity", str(identity),
                 "--bucket", bucket, "--key", key, "--file", str(path), "--content-type", content_type],
                capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise VaultError(f"upload of {bucket}/{key} did not finish within {timeout:.0f}s") from None
        if done.returncode != 0:
            raise VaultError(done.stderr.strip()[-500:] or f"paydar.vault.upload exited {done.returncode}")
        return str(json.loads(done.stdout)["version_id"])

    return put


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m paydar.vault.upload", description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True, help="S3 endpoint URL of the vault")
    parser.add_argument("--identity", required=True, type=Path, help="identity file (JSON, mode 0600)")
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--file", required=True, type=Path)
    parser.add_argument("--content-type", default="application/octet-stream")
    parser.add_argument("--timeout", type=float, default=300.0, help="per S3 call, seconds")
    args = parser.parse_args(argv)
    try:
        client = vault_client(args.endpoint, load_identity(args.identity), timeout=args.timeout)
        version_id = s3_put(client, args.bucket)(args.key, args.file, args.content_type)
    except (ClientError, BotoCoreError, PaydarError, OSError) as exc:
        print(f"{args.bucket}/{args.key} not stored: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"version_id": version_id}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
