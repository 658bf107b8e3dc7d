"""The server's embedded SQLite database: one file, a versioned schema, forward migrations.

``PRAGMA user_version`` holds the schema version; :data:`MIGRATIONS` lists the
steps from each version to the next, applied in one transaction at open. The
connection is shared by the event loop's thread; every statement is short.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from corral.errors import StorageFullError
from corral.host.data_dir import data_dir

#: Step ``i`` takes the schema from version ``i`` to ``i + 1``.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        secret_hash TEXT NOT NULL,
        created_at REAL NOT NULL,
        revoked_at REAL
    );
    CREATE TABLE sandboxes (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        state TEXT NOT NULL,
        template TEXT NOT NULL,
        spec_json TEXT NOT NULL,
        metadata_json TEXT NOT NULL,
        token_hash TEXT NOT NULL,
        process_tag TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        expires_at REAL,
        snapshot_id TEXT,
        resumed_from TEXT
    );
    CREATE INDEX sandboxes_owner_state ON sandboxes (owner, state);
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        sandbox_id TEXT NOT NULL,
        at REAL NOT NULL,
        kind TEXT NOT NULL,
        state TEXT NOT NULL,
        message TEXT NOT NULL
    );
    CREATE INDEX events_sandbox ON events (sandbox_id, seq);
    CREATE TABLE snapshots (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        sandbox_id TEXT NOT NULL,
        manifest_digest TEXT NOT NULL,
        template TEXT NOT NULL,
        spec_json TEXT NOT NULL,
        metadata_json TEXT NOT NULL,
        file_count INTEGER NOT NULL,
        size_bytes INTEGER NOT NULL,
        memory INTEGER NOT NULL,
        created_at REAL NOT NULL
    );
    """,
    """
    CREATE TABLE templates (
        owner TEXT NOT NULL,
        name TEXT NOT NULL,
        id TEXT NOT NULL,
        definition_json TEXT NOT NULL,
        manifest_digest TEXT NOT NULL,
        file_count INTEGER NOT NULL,
        size_bytes INTEGER NOT NULL,
        build_seconds REAL NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (owner, name)
    );
    CREATE INDEX templates_owner_id ON templates (owner, id);
    """,
    """
    ALTER TABLE api_keys ADD COLUMN scope TEXT;
    """,
    # cluster placements (corral serve --ray): which Ray node each sandbox was started on
    """
    CREATE TABLE cluster_placements (
        sandbox_id TEXT PRIMARY KEY,
        node_id TEXT NOT NULL,
        hostname TEXT NOT NULL,
        placed_at REAL NOT NULL
    );
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)
#: Name of the database file in a state directory.
DB_FILE = "corral.db"


def default_state_dir(kind: str = "server") -> Path:
    """Where ``corral serve`` (``kind="server"``) or local mode (``"local"``) keeps its state by default."""
    return data_dir() / kind


class Database:
    """The state file: open it, and it is migrated to :data:`SCHEMA_VERSION`."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        # created by us, readable by this user only (SQLite gives its -wal and -shm files the same mode)
        try:
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise StorageFullError(f"cannot create {path}: the disk is full") from exc
            raise
        os.chmod(path, 0o600)
        self.path = path
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    def _migrate(self) -> None:
        with self.transaction() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(f"{self.path} has schema version {version}, newer than this corral "
                                   f"({SCHEMA_VERSION}): upgrade corral")
            for step in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[step].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {step + 1}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on error).

        A full disk is a StorageFullError, and the transaction is rolled back: nothing is recorded.
        """
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn
                    self._conn.execute("COMMIT")
                except BaseException:
                    if self._conn.in_transaction:
                        with suppress(sqlite3.Error):
                            self._conn.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:
                raise _translated(exc) from exc

    def query(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        """Rows of one read."""
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                raise _translated(exc) from exc

    def version(self) -> int:
        """The schema version of the open file."""
        return self.query("PRAGMA user_version")[0][0]

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()


def _translated(exc: sqlite3.OperationalError) -> Exception:
    """StorageFullError for SQLite's "database or disk is full", else ``exc``."""
    if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(exc):
        return StorageFullError("the server's data disk is full: recording the change failed, so nothing was "
                                "recorded; free space on it (delete snapshots or templates) and retry")
    return exc
