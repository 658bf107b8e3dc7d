"""corral's results as MCP content: text for the model to read, images for rich display outputs and image files.

Everything here is a pure function of a result, so the conversion is tested
without a sandbox. Long text is cut in the middle (its start and its end are
what a model needs most: the first output and the final error), with a note
saying how much was left out.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any, Literal

from mcp_types import ContentBlock, ImageContent, TextContent

from corral.errors import InvalidInputError
from corral.models import BackgroundCommand, ExecutionResult, FileEntry

#: MIME types of display outputs sent as MCP images (the types MCP clients show); the first found wins.
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
#: File name endings that ``read_file`` answers with an image.
#: How file contents are given to and taken from the tools.
Encoding = Literal["utf-8", "base64"]
IMAGE_SUFFIXES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
                  ".webp": "image/webp"}


def truncate(text: str, limit: int) -> str:
    """``text`` if it has at most ``limit`` characters, else its start and end with a note between them."""
    if len(text) <= limit:
        return text
    head = limit // 2
    tail = limit - head
    left_out = len(text) - head - tail
    return (f"{text[:head]}\n[corral mcp: {left_out} characters left out of {len(text)}; "
            f"write the output to a file and read it in parts]\n{text[len(text) - tail:]}")


def display_outputs(result: ExecutionResult) -> list[Mapping[str, Any]]:
    """The rich display outputs of a result (``result.results``) as MIME bundles: type -> text, or base64."""
    return [output.data for output in result.results]


def bundle_content(bundle: Mapping[str, Any]) -> ContentBlock:
    """One display output as MCP content: an image if it has one, else its plain text, else a note."""
    for mime_type in IMAGE_TYPES:
        data = bundle.get(mime_type)
        if data:
            return ImageContent(type="image", data=data, mime_type=mime_type)
    if bundle.get("text/plain") is not None:
        return TextContent(type="text", text=str(bundle["text/plain"]))
    kinds = ", ".join(sorted(str(kind) for kind in bundle)) or "nothing"
    return TextContent(type="text", text=f"[a display output of {kinds}: not shown here]")


def execution_content(result: ExecutionResult, limit: int, timeout: float | None = None) -> list[ContentBlock]:
    """A run's outcome as text (exit status, notes, stdout, stderr), then its display outputs."""
    lines = [f"exit code: {result.exit_code}"]
    lines += [f"note: {note}" for note in execution_notes(result, timeout)]
    if result.stdout:
        lines += ["--- stdout ---", result.stdout.rstrip("\n")]
    if result.stderr:
        lines += ["--- stderr ---", result.stderr.rstrip("\n")]
    if not (result.stdout or result.stderr):
        lines.append("(no output)")
    content: list[ContentBlock] = [TextContent(type="text", text=truncate("\n".join(lines), limit))]
    return content + [bundle_content(bundle) for bundle in display_outputs(result)]


def execution_notes(result: ExecutionResult, timeout: float | None) -> list[str]:
    """What the model must know besides the output: limits reached, lost session state."""
    notes = []
    if result.timed_out:
        after = f" after {timeout:g} s" if timeout is not None else ""
        notes.append(f"the run timed out{after} and was killed (pass a larger timeout for long work)")
    if result.oom_killed:
        notes.append("the run ran out of memory and was killed")
    if result.cancelled:
        notes.append("the run was cancelled")
    if result.signal is not None and not (result.timed_out or result.oom_killed):
        notes.append(f"the program was killed by signal {result.signal}")
    if result.session_reset:
        notes.append("the interpreter was restarted: variables, imports and definitions of earlier runs are gone "
                     "(files are kept)")
    for stream, cut in (("stdout", result.stdout_truncated), ("stderr", result.stderr_truncated)):
        if cut:
            notes.append(f"{stream} passed the sandbox's output limit; the rest was dropped")
    return notes


def failed(result: ExecutionResult) -> bool:
    """True when the run was stopped by a limit (a timeout, memory): a tool error, not just an exit code."""
    return result.timed_out or result.oom_killed or result.cancelled


def background_text(command: BackgroundCommand) -> str:
    """A background command's handle as text."""
    return (f"started in the background: pid {command.pid}; its stdout and stderr go to {command.log_path} "
            "(read it with read_file)")


def listing_text(path: str, entries: list[FileEntry], limit: int) -> str:
    """A directory listing, one entry a line: kind, size, octal mode, name (directories end in /)."""
    if not entries:
        return f"{path}: empty directory"
    lines = [f"{entry.kind:<7} {entry.size:>10} {entry.mode & 0o7777:04o} "
             f"{entry.name}{'/' if entry.kind == 'dir' else ''}" for entry in sorted(entries, key=lambda e: e.name)]
    return truncate(f"{path}: {len(entries)} entr{'y' if len(entries) == 1 else 'ies'}\n" + "\n".join(lines), limit)


def file_content(path: str, data: bytes, encoding: Encoding, limit: int) -> ContentBlock:
    """A file's bytes as MCP content: an image, text (cut to ``limit``), or base64 (refused past ``limit``)."""
    mime_type = IMAGE_SUFFIXES.get(PurePosixPath(path).suffix.lower())
    if encoding == "utf-8" and mime_type is not None:
        return ImageContent(type="image", data=base64.b64encode(data).decode(), mime_type=mime_type)
    if encoding == "base64":
        encoded = base64.b64encode(data).decode()
        if len(encoded) > limit:
            raise InvalidInputError(f"{path} is {len(data)} bytes, {len(encoded)} characters as base64: more than "
                                    f"this MCP server's limit of {limit}; copy a part of it with run_command")
        return TextContent(type="text", text=encoded)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInputError(f"{path} is not UTF-8 text ({len(data)} bytes): read it with encoding='base64'") \
            from None
    return TextContent(type="text", text=truncate(text, limit))
