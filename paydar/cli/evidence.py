"""`paydar evidence`: check a drill's signed evidence bundle."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from paydar.cli.common import DEFAULT_STATE, FAILED, fail, out
from paydar.model.errors import PaydarError, SignatureError

__all__ = ["evidence"]


@click.group()
def evidence() -> None:
    """Evidence bundles: a drill's report, journals, routing-table history and Locust figures,
    signed with the operator key (written by `paydar drill` as <state-dir>/evidence.tar.gz)."""


@evidence.command()
@click.argument("bundle", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--state-dir", type=click.Path(path_type=Path), default=DEFAULT_STATE, show_default=True,
              help="Trust the operator keys of this realization's trust root (the drill's --state-dir). Never "
                   "a trust root found beside the bundle: whoever hands you the bundle could have put it there.")
@click.option("--public-key", "public_key", default=None, metavar="BASE64",
              help="Trust this operator public key (raw Ed25519, base64) instead: for an auditor who holds it.")
def verify(bundle: Path, state_dir: Path, public_key: str | None) -> None:
    """Check that BUNDLE is signed by a trusted operator key and holds exactly the files its signed
    manifest lists, byte for byte. Nothing is extracted.

    \b
    Exit status: 0 verified; 1 altered, incomplete or signed by an untrusted key; 2 bad usage.
    Examples:
      paydar evidence verify DRILL/evidence.tar.gz --state-dir DRILL
      paydar evidence verify evidence.tar.gz --public-key BASE64   # an auditor with the key
    """
    from paydar.model.identity import Role, TrustRoot
    from paydar.model.signing import key_id, public_key_from_b64
    from paydar.ops.evidence import EvidenceInvalid, verify_bundle

    try:
        if public_key is not None:
            key = public_key_from_b64(public_key.strip())
            trusted, source = {key_id(key): key}, "the public key given"
        else:
            trusted = TrustRoot.load(state_dir / "trust-root.json").keys(Role.OPERATOR)
            source = f"the operator keys of {state_dir / 'trust-root.json'}"
    except (SignatureError, PaydarError) as exc:
        fail(f"no trusted operator key: {exc}")
    try:
        checked = verify_bundle(bundle, trusted)
    except EvidenceInvalid as exc:
        fail(f"{bundle}: NOT verified: {exc}", FAILED)
    meta = checked.meta
    out.print(f"{bundle}: verified — {checked.files} files, {checked.bytes} bytes, signed by operator key "
              f"{checked.key_id}, trusted as one of {source}", markup=False, soft_wrap=True)
    out.print(f"  drill started {meta.get('started', '?')} with Paydar {meta.get('paydar_version', '?')} at commit "
              f"{meta.get('paydar_commit', '?')} on topology {meta.get('topology', '?')} "
              f"(SHA-256 {meta.get('topology_sha256', '?')})", markup=False, soft_wrap=True)
    sys.exit(0)
