"""API keys and per-sandbox access tokens: random secrets, stored only as hashes.

A key reads ``ck_<id>_<secret>``: the id finds the record, the secret is
compared by hash in constant time. A sandbox token reads
``st_<sandbox id>_<secret>`` and grants the data plane of that one sandbox.
Secrets are 256 random bits, so an unsalted SHA-256 is enough (nothing to
brute-force); secrets never reach a log. A key with a scope (one of
:data:`SCOPES`) is good for that front-end alone: :meth:`KeyStore.verify`
refuses it, only :meth:`KeyStore.verify_scoped` accepts it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from corral.hosted.database import Database

KEY_PREFIX = "ck_"
TOKEN_PREFIX = "st_"
#: Scopes a key can be limited to: ``sandbox-fusion`` grants SandboxFusion's ``/run_code`` only.
SCOPES = ("sandbox-fusion",)


def hash_secret(secret: str) -> str:
    """Hex SHA-256 of a secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def matches(secret: str, stored_hash: str) -> bool:
    """Constant-time check of ``secret`` against a stored hash."""
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def new_secret() -> str:
    """256 random bits as hex (no ``_``, which separates the parts of a credential)."""
    return secrets.token_hex(32)


@dataclass(frozen=True)
class ApiKey:
    """A key's record (never its secret)."""

    id: str
    name: str
    created_at: float
    revoked_at: float | None
    scope: str | None = None


class KeyStore:
    """Create, list, revoke and check API keys."""

    def __init__(self, db: Database):
        self.db = db

    def create(self, name: str = "default", scope: str | None = None) -> tuple[ApiKey, str]:
        """A new key (``scope``: limited to one front-end); returns its record and the full key, shown only once."""
        if scope is not None and scope not in SCOPES:
            raise ValueError(f"unknown key scope {scope!r}; choose one of {', '.join(SCOPES)}")
        key_id, secret = secrets.token_hex(6), new_secret()
        now = time.time()
        with self.db.transaction() as conn:
            conn.execute("INSERT INTO api_keys (id, name, secret_hash, created_at, scope) VALUES (?, ?, ?, ?, ?)",
                         (key_id, name, hash_secret(secret), now, scope))
        return ApiKey(key_id, name, now, None, scope), f"{KEY_PREFIX}{key_id}_{secret}"

    def list(self) -> list[ApiKey]:
        """Every key, revoked ones included, oldest first."""
        rows = self.db.query("SELECT id, name, created_at, revoked_at, scope FROM api_keys ORDER BY created_at")
        return [ApiKey(row["id"], row["name"], row["created_at"], row["revoked_at"], row["scope"]) for row in rows]

    def revoke(self, key_id: str) -> bool:
        """Revoke a key at once; False if there is no such active key."""
        with self.db.transaction() as conn:
            cursor = conn.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                                  (time.time(), key_id))
        return cursor.rowcount == 1

    def verify(self, key: str) -> str | None:
        """The id of the active, unscoped key ``key``, or None (a scoped key is good for its front-end only)."""
        return self._verify(key, None)

    def verify_scoped(self, key: str, scope: str) -> str | None:
        """The id of the active key ``key`` if it is unscoped or has ``scope``, or None."""
        return self._verify(key, scope)

    def _verify(self, key: str, scope: str | None) -> str | None:
        key_id, secret = split(key, KEY_PREFIX)
        if key_id is None:
            return None
        rows = self.db.query("SELECT secret_hash, scope FROM api_keys WHERE id = ? AND revoked_at IS NULL", (key_id,))
        stored = rows[0]["secret_hash"] if rows else hash_secret("")
        # hash and compare even for an unknown id, so timing does not tell ids apart
        if not (matches(secret, stored) and rows):
            return None
        return key_id if rows[0]["scope"] in (None, scope) else None

    def active(self, key_id: str) -> bool:
        """True when the key ``key_id`` exists and is not revoked."""
        return bool(self.db.query("SELECT 1 FROM api_keys WHERE id = ? AND revoked_at IS NULL", (key_id,)))

    def any_active(self) -> bool:
        """True when at least one unscoped key can be used."""
        return bool(self.db.query("SELECT 1 FROM api_keys WHERE revoked_at IS NULL AND scope IS NULL LIMIT 1"))


def split(credential: str, prefix: str) -> tuple[str | None, str]:
    """``(id, secret)`` of ``<prefix><id>_<secret>``, or ``(None, "")`` if it has another form."""
    if not credential.startswith(prefix):
        return None, ""
    ident, sep, secret = credential[len(prefix):].rpartition("_")
    if not sep or not ident or not secret:
        return None, ""
    return ident, secret


def new_sandbox_token(sandbox_id: str) -> tuple[str, str]:
    """A fresh token for ``sandbox_id``: ``(token, hash to store)``."""
    secret = new_secret()
    return f"{TOKEN_PREFIX}{sandbox_id}_{secret}", hash_secret(secret)
