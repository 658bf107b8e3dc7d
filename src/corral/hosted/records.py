"""Rows of the sandboxes, snapshots and events tables, and the transitions that change them.

Every state change goes through :meth:`Records.transition`: it checks the
lifecycle table, updates the row only if it is still in the expected state,
and appends the LogEvent, in one transaction.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from typing import Any

from corral.contract.schemas import LogEvent, SandboxInfo, SnapshotInfo
from corral.contract.states import SandboxState, allowed
from corral.errors import NotFoundError, SandboxClosedError
from corral.hosted.database import Database

#: Every recorded event is also logged here, one JSON object per line (no credentials in them).
events_log = logging.getLogger("corral.server.events")


class Records:
    """Reads and writes of sandbox, snapshot and event rows."""

    def __init__(self, db: Database):
        self.db = db

    def insert_sandbox(self, *, sandbox_id: str, owner: str, template: str, spec: dict[str, Any],
                       metadata: dict[str, str], token_hash: str, process_tag: str, expires_at: float,
                       resumed_from: str | None) -> None:
        """Record a new sandbox in state Creating, with its first event."""
        now = time.time()
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO sandboxes (id, owner, state, template, spec_json, metadata_json, token_hash, process_tag,"
                " created_at, updated_at, expires_at, resumed_from) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (sandbox_id, owner, SandboxState.CREATING.value, template, json.dumps(spec), json.dumps(metadata),
                 token_hash, process_tag, now, now, expires_at, resumed_from),
            )
            message = f"creating from template {template!r}" + (f", resuming {resumed_from}" if resumed_from else "")
            _event(conn, sandbox_id, now, "created", SandboxState.CREATING, message)

    def transition(self, sandbox_id: str, new: SandboxState, kind: str, message: str,
                   *, snapshot: dict[str, Any] | None = None) -> bool:
        """Move the sandbox to ``new`` and record why; False if it already left the states that allow it.

        ``snapshot`` (a snapshots row) is inserted in the same transaction, so a Paused
        sandbox always points at a snapshot record.
        """
        now = time.time()
        with self.db.transaction() as conn:
            row = conn.execute("SELECT state FROM sandboxes WHERE id = ?", (sandbox_id,)).fetchone()
            if row is None or not allowed(SandboxState(row["state"]), new):
                return False
            if snapshot is not None:
                columns = ", ".join(snapshot)
                conn.execute(f"INSERT INTO snapshots ({columns}) VALUES ({', '.join('?' * len(snapshot))})",
                             tuple(snapshot.values()))
                conn.execute("UPDATE sandboxes SET snapshot_id = ? WHERE id = ?", (snapshot["id"], sandbox_id))
            conn.execute("UPDATE sandboxes SET state = ?, updated_at = ? WHERE id = ?", (new.value, now, sandbox_id))
            _event(conn, sandbox_id, now, kind, new, message)
        return True

    def note(self, sandbox_id: str, kind: str, message: str) -> None:
        """Record an event that changes no state (a new timeout, a failed pause...)."""
        with self.db.transaction() as conn:
            row = conn.execute("SELECT state FROM sandboxes WHERE id = ?", (sandbox_id,)).fetchone()
            if row is not None:
                _event(conn, sandbox_id, time.time(), kind, SandboxState(row["state"]), message)

    def set_expiry(self, sandbox_id: str, expires_at: float, message: str) -> None:
        """Set when the sandbox expires, with an event."""
        with self.db.transaction() as conn:
            conn.execute("UPDATE sandboxes SET expires_at = ?, updated_at = ? WHERE id = ?",
                         (expires_at, time.time(), sandbox_id))
            row = conn.execute("SELECT state FROM sandboxes WHERE id = ?", (sandbox_id,)).fetchone()
            _event(conn, sandbox_id, time.time(), "timeout", SandboxState(row["state"]), message)

    def sandbox_row(self, sandbox_id: str, owner: str | None) -> sqlite3.Row:
        """The row of a sandbox ``owner`` may see (any owner when None); NotFoundError otherwise."""
        rows = self.db.query("SELECT * FROM sandboxes WHERE id = ?", (sandbox_id,))
        if not rows or (owner is not None and rows[0]["owner"] != owner):
            raise NotFoundError(f"no sandbox {sandbox_id!r}")
        return rows[0]

    def snapshot_row(self, snapshot_id: str, owner: str | None) -> sqlite3.Row:
        """The row of a snapshot ``owner`` may see; NotFoundError otherwise."""
        rows = self.db.query("SELECT * FROM snapshots WHERE id = ?", (snapshot_id,))
        if not rows or (owner is not None and rows[0]["owner"] != owner):
            raise NotFoundError(f"no snapshot {snapshot_id!r}")
        return rows[0]

    def sandboxes(self, owner: str | None, state: SandboxState | None = None) -> list[sqlite3.Row]:
        """Rows of ``owner``'s sandboxes (every owner's when None), newest first."""
        sql, params = "SELECT * FROM sandboxes WHERE 1 = 1", []
        if owner is not None:
            sql, params = sql + " AND owner = ?", [*params, owner]
        if state is not None:
            sql, params = sql + " AND state = ?", [*params, state.value]
        return self.db.query(sql + " ORDER BY created_at DESC", tuple(params))

    def snapshots(self, owner: str | None) -> list[sqlite3.Row]:
        """Rows of ``owner``'s snapshots, newest first."""
        if owner is None:
            return self.db.query("SELECT * FROM snapshots ORDER BY created_at DESC")
        return self.db.query("SELECT * FROM snapshots WHERE owner = ? ORDER BY created_at DESC", (owner,))

    def delete_snapshot(self, snapshot_id: str) -> None:
        """Forget a snapshot (a paused sandbox that points at it cannot be resumed any more)."""
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM snapshots WHERE id = ?", (snapshot_id,))

    def events(self, sandbox_id: str, after: int = 0, limit: int = 1000) -> list[LogEvent]:
        """The sandbox's events after sequence number ``after``, oldest first."""
        rows = self.db.query("SELECT * FROM events WHERE sandbox_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                             (sandbox_id, after, limit))
        return [LogEvent(seq=row["seq"], sandbox_id=row["sandbox_id"], at=row["at"], kind=row["kind"],
                         state=SandboxState(row["state"]), message=row["message"]) for row in rows]

    def token(self, sandbox_id: str) -> tuple[str, str] | None:
        """(stored hash of the sandbox's access token, its owner), or None if there is no such sandbox."""
        rows = self.db.query("SELECT token_hash, owner FROM sandboxes WHERE id = ?", (sandbox_id,))
        return (rows[0]["token_hash"], rows[0]["owner"]) if rows else None

    def manifest_digests(self) -> set[str]:
        """Manifests of every snapshot and built template (what blob collection must keep)."""
        rows = self.db.query("SELECT manifest_digest FROM snapshots UNION SELECT manifest_digest FROM templates")
        return {row[0] for row in rows}

    def counts_by_state(self) -> dict[str, int]:
        """How many sandboxes are in each state."""
        return {row[0]: row[1] for row in self.db.query("SELECT state, COUNT(*) FROM sandboxes GROUP BY state")}


def sandbox_info(row: sqlite3.Row) -> SandboxInfo:
    """The API view of a sandboxes row."""
    spec = json.loads(row["spec_json"])
    return SandboxInfo(
        id=row["id"], state=SandboxState(row["state"]), template=row["template"], language=spec["language"],
        metadata=json.loads(row["metadata_json"]), created_at=row["created_at"], updated_at=row["updated_at"],
        expires_at=row["expires_at"], snapshot_id=row["snapshot_id"], resumed_from=row["resumed_from"],
    )


def snapshot_info(row: sqlite3.Row) -> SnapshotInfo:
    """The API view of a snapshots row."""
    return SnapshotInfo(
        id=row["id"], sandbox_id=row["sandbox_id"], template=row["template"],
        metadata=json.loads(row["metadata_json"]), file_count=row["file_count"], size_bytes=row["size_bytes"],
        memory=bool(row["memory"]), created_at=row["created_at"],
    )


def require_state(row: sqlite3.Row, *states: SandboxState) -> None:
    """Raise SandboxClosedError unless the sandbox is in one of ``states``."""
    state = SandboxState(row["state"])
    if state not in states:
        hint = f"; resume snapshot {row['snapshot_id']}" if state is SandboxState.PAUSED else ""
        raise SandboxClosedError(f"sandbox {row['id']} is {state.value}{hint}")


def _event(conn: sqlite3.Connection, sandbox_id: str, at: float, kind: str, state: SandboxState, message: str) -> None:
    conn.execute("INSERT INTO events (sandbox_id, at, kind, state, message) VALUES (?, ?, ?, ?, ?)",
                 (sandbox_id, at, kind, state.value, message))
    events_log.info(json.dumps({"at": at, "sandbox_id": sandbox_id, "kind": kind, "state": state.value,
                                "message": message}))
