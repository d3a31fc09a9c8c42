"""What an agency app is given to reach its own database (``workload: postgres``), and how a
database role's password is stored: one place for the realizer that hands them out and the
agent that creates the roles.

A role is created from a SCRAM-SHA-256 verifier (RFC 5802/7677, what PostgreSQL stores in
``pg_authid``), never from its password: whoever creates the roles never learns the passwords,
and a verifier proves a login but cannot make one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

__all__ = ["APP_DATABASE", "APP_ROLE", "SCRAM_ITERATIONS", "scram_verifier"]

APP_DATABASE = "app"
"""The database an app keeps its state in, owned by its role."""
APP_ROLE = "app"
"""The app's role: only the app's instances hold its password."""
SCRAM_ITERATIONS = 4096


def scram_verifier(password: str, *, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for ``password``."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"
