"""Component identities: one Ed25519 key pair per component, and the trust root.

Keys are generated into ``<state>/keys`` with mode 0600 (directory 0700) and are never
logged or printed. The trust root (``<state>/trust-root.json``) lists the public keys per
role; it is public and is what every verifier loads.
"""

from __future__ import annotations

import os
import stat
from enum import StrEnum
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)
from pydantic import BaseModel, ConfigDict, ValidationError

from paydar.model.errors import IdentityError
from paydar.model.signing import Signer, key_id, public_key_from_b64, public_key_to_b64

__all__ = ["ENTRY_MODULES", "OPERATOR", "KeyStore", "Role", "TrustRoot", "TrustedKey", "trust_root_of"]


class Role(StrEnum):
    """What a component is; trust is granted per role.

    ``operator`` keys sign operator intents (drain, fence, promote); they are held by the
    operator's CLI and given to no component, so no compromised component can act as one.
    """

    NODE = "node"
    GATEWAY = "gateway"
    PROBER = "prober"
    CONTROLLER = "controller"
    OPERATOR = "operator"


ENTRY_MODULES = {Role.NODE: "paydar.node", Role.GATEWAY: "paydar.gateway", Role.PROBER: "paydar.probes",
                 Role.CONTROLLER: "paydar.failover"}
"""The module each role's process runs (``python -m MODULE --config FILE``), in every realization."""

OPERATOR = "operator"
"""The id of the local realization's operator key (``<state>/keys/operator.key``)."""


def role_of(component: str) -> Role:
    """The role of a component id such as ``node.<service>.<region>`` or ``controller.<region>``."""
    try:
        return Role(component.split(".", 1)[0])
    except ValueError:
        raise IdentityError(f"component id {component!r} does not start with a role "
                            f"({', '.join(r.value for r in Role)})") from None


class TrustedKey(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    component: str
    public_key: str


class TrustRoot(BaseModel):
    """Public keys per role, keyed by key id."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = 1
    roles: dict[Role, dict[str, TrustedKey]]

    def keys(self, role: Role) -> dict[str, Ed25519PublicKey]:
        """Trusted public keys of one role, by key id."""
        return {kid: public_key_from_b64(k.public_key) for kid, k in self.roles.get(role, {}).items()}

    def key_of(self, component: str) -> tuple[str, Ed25519PublicKey]:
        """The (key id, public key) of one component; ``IdentityError`` if it has none."""
        for kid, trusted in self.roles.get(role_of(component), {}).items():
            if trusted.component == component:
                return kid, public_key_from_b64(trusted.public_key)
        raise IdentityError(f"no trusted key for {component!r} in the trust root; "
                            "re-run `paydar up` to generate identities")

    def component_of(self, role: Role, kid: str) -> str | None:
        trusted = self.roles.get(role, {}).get(kid)
        return trusted.component if trusted else None

    @classmethod
    def load(cls, path: Path) -> TrustRoot:
        try:
            return cls.model_validate_json(path.read_bytes())
        except OSError as exc:
            raise IdentityError(f"cannot read trust root {path}: {exc.strerror}; run `paydar up` first") from None
        except ValidationError as exc:
            raise IdentityError(f"trust root {path} is malformed: {exc.error_count()} error(s); "
                                "regenerate it with `paydar up`") from None


class KeyStore:
    """Private keys of the components of one realization, one PEM file each (mode 0600)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, component: str) -> Path:
        return self.directory / f"{component}.key"

    def ensure(self, component: str) -> Ed25519PublicKey:
        """Generate the component's key pair unless it exists; return the public key."""
        role_of(component)
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        path = self.path(component)
        if path.exists():
            return self.load(component).public_key()
        key = Ed25519PrivateKey.generate()
        self._write(path, key)
        return key.public_key()

    def replace(self, component: str, key: Ed25519PrivateKey) -> None:
        """Put a new key in place of the component's (key rotation); the old one is gone."""
        role_of(component)
        staged = self.path(component).with_suffix(".key.new")
        staged.unlink(missing_ok=True)
        self._write(staged, key)
        os.replace(staged, self.path(component))

    @staticmethod
    def _write(path: Path, key: Ed25519PrivateKey) -> None:
        pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        # Create with 0600 atomically: the key must never exist with wider permissions.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)

    def load(self, component: str) -> Ed25519PrivateKey:
        """Load a private key, refusing one readable by group or others."""
        return load_private_key(self.path(component))

    def signer(self, component: str) -> Signer:
        return Signer(self.load(component))

    def build_trust_root(self, components: list[str]) -> TrustRoot:
        """Ensure every component has a key and list the public keys per role."""
        return trust_root_of({component: self.ensure(component) for component in components})


def trust_root_of(public_keys: dict[str, Ed25519PublicKey]) -> TrustRoot:
    """The trust root listing these components' public keys per role (local keystore and Pulumi alike)."""
    roles: dict[Role, dict[str, TrustedKey]] = {}
    for component, public in public_keys.items():
        roles.setdefault(role_of(component), {})[key_id(public)] = TrustedKey(
            component=component, public_key=public_key_to_b64(public))
    return TrustRoot(roles=roles)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Load an Ed25519 private key file that only its owner can read."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise IdentityError(f"key file {path} has mode {mode:o}; it must be 0600 (chmod 600 {path})")
        key = load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise IdentityError(f"cannot read key {path}: {exc.strerror}") from None
    except ValueError:
        raise IdentityError(f"key file {path} is not a PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise IdentityError(f"key file {path} is not an Ed25519 key")
    return key

