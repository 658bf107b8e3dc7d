"""The wire messages: event parsing by type, and models that build on first use."""

from __future__ import annotations

import inspect

import pytest
from pydantic import BaseModel

from corral import models, network
from corral.protocol import messages, parse_event


def test_every_event_kind_parses_to_its_model():
    frames = {
        b'{"type": "hello", "version": 1, "pid": 1, "python": "3.11"}': messages.Hello,
        b'{"type": "output", "id": 1, "stream": "stdout", "data": "x"}': messages.Output,
        b'{"type": "exec_done", "id": 1, "exit_code": 0}': messages.ExecDone,
        b'{"type": "process_started", "id": 1, "pid": 5, "log_path": "/tmp/l"}': messages.ProcessStarted,
        b'{"type": "process_list", "id": 1, "processes": [{"pid": 5, "cmd": "sleep 1", "cwd": "/home/user", '
        b'"env": {}, "tag": null, "stdin": false}]}': messages.ProcessListing,
        b'{"type": "file_stat", "id": 1, "entry": {"name": "a", "path": "/home/user/a", "kind": "symlink", '
        b'"size": 1, "mode": 511, "mtime": 1.5, "uid": 1000, "gid": 1000, "symlink_target": "b"}}': messages.FileStat,
        b'{"type": "watch_started", "id": 1}': messages.WatchStarted,
        b'{"type": "result", "id": 1, "data": {"text/plain": "42", "application/json": [1]}, "is_main_result": true}':
            messages.Result,
        b'{"type": "run_error", "id": 1, "name": "ValueError", "value": "v", "traceback": "t"}': messages.RunError,
        b'{"type": "fs_event", "id": 1, "kind": "create", "name": "a/b", "is_dir": true}': messages.FsEvent,
        b'{"type": "file_data", "id": 1, "data_b64": ""}': messages.FileData,
        b'{"type": "dir_listing", "id": 1, "entries": [{"name": "a", "kind": "file", "size": 1, "mode": 420, '
        b'"mtime": 1.5}]}': messages.DirListing,
        b'{"type": "ack", "id": 1}': messages.Ack,
        b'{"type": "error", "id": null, "code": "invalid", "message": "no"}': messages.Error,
    }
    for line, model in frames.items():
        assert type(parse_event(line)) is model
    assert set(messages.EVENT_MODELS.values()) == set(frames.values())


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        (b'{"type": "exec", "id": 1}', "unknown event type 'exec'"),  # a request is not an event
        (b'{"type": "exec_done", "id": "1", "exit_code": 0}', "id"),  # strict: no coercion
        (b'{"type": "ack", "id": 1, "extra": 2}', "extra"),
        (b'{"id": 1}', "type"),
        (b"[1]", "JSON object"),
    ],
)
def test_invalid_events_are_value_errors(line, fragment):
    with pytest.raises(ValueError, match=fragment):
        parse_event(line)


def test_every_model_builds():
    # models defer their build to first use: a schema mistake must still fail here, not in production
    found = [
        value for module in (models, network, messages) for value in vars(module).values()
        if inspect.isclass(value) and issubclass(value, BaseModel) and value.__module__ == module.__name__
    ]
    assert len(found) > 25
    for model in found:
        model.model_rebuild(force=True)
        assert model.__pydantic_complete__, model
        model.model_json_schema()
