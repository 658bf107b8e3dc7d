"""The server's state without sandboxes: database migrations, keys at rest, lifecycle table, blob store."""

from __future__ import annotations

import os
import sqlite3
import time

import pytest
from pydantic import BaseModel

from corral import errors
from corral.server.app import ServerConfig, create_app
from corral.hosted.blobs import BlobStore
from corral.hosted.database import SCHEMA_VERSION, Database
from corral.contract.errors import rebuild, status_of
from corral.hosted.keys import KeyStore, new_sandbox_token, split
from corral.hosted.records import Records
from corral.contract.states import TRANSITIONS, SandboxState, allowed
from corral.contract.schemas import CreateSandbox, RequestModel


def test_database_is_migrated_once_and_refuses_a_newer_schema(tmp_path):
    path = tmp_path / "corral.db"
    Database(path).close()
    database = Database(path)  # reopening applies nothing twice
    assert database.version() == SCHEMA_VERSION
    tables = {row[0] for row in database.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"api_keys", "sandboxes", "events", "snapshots"} <= tables
    database.close()
    raw = sqlite3.connect(path)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()
    with pytest.raises(RuntimeError, match="newer"):
        Database(path)


def test_api_keys_are_hashed_at_rest_verified_and_revoked(tmp_path):
    database = Database(tmp_path / "corral.db")
    store = KeyStore(database)
    record, key = store.create("ci")
    secret = key.rsplit("_", 1)[1]
    database.close()
    assert secret.encode() not in (tmp_path / "corral.db").read_bytes() + b"".join(
        path.read_bytes() for path in tmp_path.glob("corral.db-*"))
    store = KeyStore(Database(tmp_path / "corral.db"))
    assert store.verify(key) == record.id
    assert store.verify(key[:-1] + ("0" if key[-1] != "0" else "1")) is None
    assert store.verify("ck_" + record.id) is None and store.verify("") is None and store.verify("st_x_y") is None
    assert [k.id for k in store.list()] == [record.id]
    assert store.revoke(record.id) and not store.revoke(record.id)
    assert store.verify(key) is None and not store.any_active()


def test_credentials_split_into_id_and_secret():
    token, stored_hash = new_sandbox_token("sbx_0123")
    assert split(token, "st_")[0] == "sbx_0123" and len(stored_hash) == 64
    assert split("st_nosecret", "st_") == (None, "") and split("ck_a_b", "st_") == (None, "")


def test_lifecycle_table():
    assert allowed(SandboxState.CREATING, SandboxState.RUNNING)
    assert allowed(SandboxState.RUNNING, SandboxState.PAUSED)
    assert not allowed(SandboxState.PAUSED, SandboxState.RUNNING)  # a resume is a new sandbox
    assert not TRANSITIONS[SandboxState.STOPPED]
    for state in SandboxState:  # every state can end, except the end
        assert state is SandboxState.STOPPED or allowed(state, SandboxState.STOPPED)


def test_a_broken_sandbox_can_only_stop():
    assert allowed(SandboxState.RUNNING, SandboxState.BROKEN) and allowed(SandboxState.CREATING, SandboxState.BROKEN)
    assert TRANSITIONS[SandboxState.BROKEN] == {SandboxState.STOPPED}
    for state in (SandboxState.PAUSED, SandboxState.STOPPING, SandboxState.STOPPED):  # nothing breaks after that
        assert not allowed(state, SandboxState.BROKEN)


def test_records_change_a_state_only_along_the_table(tmp_path):
    records = Records(Database(tmp_path / "corral.db"))
    records.insert_sandbox(sandbox_id="sbx_1", owner="k", template="python", spec={"language": "python"},
                           metadata={}, token_hash="h", process_tag="p", expires_at=time.time() + 60,
                           resumed_from=None)
    assert not records.transition("sbx_1", SandboxState.PAUSED, "paused", "not from creating")
    assert records.transition("sbx_1", SandboxState.BROKEN, "start_failed", "its agent died")
    for refused in (SandboxState.RUNNING, SandboxState.PAUSED, SandboxState.STOPPING, SandboxState.BROKEN):
        assert not records.transition("sbx_1", refused, "x", "a broken sandbox only stops")
    assert records.transition("sbx_1", SandboxState.STOPPED, "killed", "killed while broken")
    assert [(event.kind, event.state) for event in records.events("sbx_1")] == [
        ("created", SandboxState.CREATING), ("start_failed", SandboxState.BROKEN), ("killed", SandboxState.STOPPED)]
    assert not records.transition("missing", SandboxState.STOPPED, "x", "no such row")


def test_blob_store_is_content_addressed_and_checks_what_it_reads(tmp_path):
    store = BlobStore(tmp_path)
    digest = store.put(b"hello")
    assert store.put(b"hello") == digest and store.get(digest) == b"hello" and store.has(digest)
    assert len(list(tmp_path.rglob("*"))) == 2  # one directory, one blob; no temporary left
    store.path(digest).write_bytes(b"jello")
    with pytest.raises(OSError, match="corrupt"):
        store.get(digest)
    with pytest.raises(ValueError):
        store.path("../../etc/passwd")


def test_every_error_has_an_http_status_and_comes_back_as_itself():
    for name in errors.__all__:
        kind = getattr(errors, name)
        if kind in (errors.IsolationUnavailableError, errors.PackageInstallError, errors.FileOperationError):
            continue
        status = status_of(kind("message"))
        assert 400 <= status < 600, name
        assert type(rebuild(name, "message", None)) is kind
    assert status_of(errors.NotFoundError("x")) == 404 and status_of(errors.InvalidInputError("x")) == 422
    assert status_of(errors.AuthenticationError("x")) == 401 and status_of(errors.LimitExceededError("x")) == 429
    assert status_of(errors.FileOperationError("not_found", "x")) == 404
    rebuilt = rebuild("FileOperationError", "gone", "not_found")
    assert isinstance(rebuilt, errors.FileOperationError) and rebuilt.code == "not_found"
    assert type(rebuild("NoSuchError", "x", None)) is errors.CorralError


@pytest.mark.parametrize("metadata", [{"": "x"}, {"a b": "x"}, {"k": "\x00"}, {f"k{i}": "v" for i in range(33)}])
def test_bad_metadata_is_refused(metadata):
    with pytest.raises(ValueError):
        CreateSandbox(metadata=metadata)


def test_blob_collection_keeps_referenced_and_recent_blobs(tmp_path):
    store = BlobStore(tmp_path)
    kept, dropped, recent = store.put(b"kept"), store.put(b"dropped"), store.put(b"recent")
    old = time.time() - 7200
    for digest in (kept, dropped):
        os.utime(store.path(digest), (old, old))
    assert store.collect({kept}, grace_s=3600) == (1, len(b"dropped"))
    assert store.has(kept) and not store.has(dropped) and store.has(recent)
    os.utime(store.path(kept), (old, old))
    store.put(b"kept")  # storing it again refreshes it: a pause in progress protects what it references
    assert store.collect(set(), grace_s=3600) == (0, 0)


def test_every_request_body_refuses_strings_that_are_not_unicode(tmp_path):
    """Every route's body model is a RequestModel, so a new route cannot forget the check."""
    app = create_app(ServerConfig(tmp_path))
    models: dict[str, list[type]] = {}
    pending = [BaseModel]
    while pending:
        for sub in pending.pop().__subclasses__():
            models.setdefault(sub.__name__, []).append(sub)
            pending.append(sub)
    bodies = {}
    for path, operations in app.openapi()["paths"].items():
        for method, operation in operations.items():
            schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if schema is not None:
                ref = schema.get("$ref") or next(item["$ref"] for item in schema["anyOf"] if "$ref" in item)
                bodies[f"{method} {path}"] = ref.rsplit("/", 1)[1]
    assert len(bodies) >= 5
    for where, name in bodies.items():
        assert all(issubclass(model, RequestModel) for model in models[name]), where
    with pytest.raises(ValueError, match="lone surrogate"):
        CreateSandbox.model_validate({"metadata": {"k": "\ud800"}})
    app.state.service.db.close()


def test_a_failed_blob_batch_removes_only_what_it_alone_created(tmp_path):
    store = BlobStore(tmp_path / "blobs")
    shared = store.put(b"stored before")
    with pytest.raises(RuntimeError):
        with store.batch() as batch:
            mine, again, also = batch.put(b"only mine"), batch.put(b"stored before"), batch.put(b"also stored by another")
            store.put(b"also stored by another")  # another writer stores the same content meanwhile
            raise RuntimeError("the pause failed")
    assert again == shared and store.has(shared) and store.has(also) and not store.has(mine)
    with store.batch() as batch:
        kept = batch.put(b"a pause that succeeded")
    assert store.has(kept) and not list((tmp_path / "blobs").rglob(".tmp-*"))
