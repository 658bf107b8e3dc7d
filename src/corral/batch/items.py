"""What a batch is made of: items (a program, its language, files, limits) and their tests.

An item is a :class:`BatchItem` or a plain dict with the same fields. Each test
feeds ``stdin`` to the program and compares its stdout with ``expected`` by the
item's ``compare`` mode. An item without tests is run once and gives the
ExecutionResult of that run.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from corral.protocol import wire

#: Languages a batch item can be written in ("cpp" is compiled once per item, see corral.cpp).
BatchLanguage = Literal["python", "javascript", "shell", "cpp"]
CompareMode = Literal["exact", "whitespace", "float"]

#: Tests one item may carry.
MAX_TESTS = 1000
#: Files one item may bring (each at most wire.MAX_FILE_BYTES).
MAX_FILES = 64


class TestCase(BaseModel):
    """One test: the program's stdin and the stdout it must print."""

    __test__ = False  # not a pytest class
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    stdin: str | bytes = ""
    expected: str


class BatchItem(BaseModel):
    """One program to run: alone (``tests`` empty) or once per test."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    code: str = Field(max_length=wire.MAX_CODE_BYTES)
    language: BatchLanguage = "python"
    stdin: str | bytes | None = Field(default=None, description="stdin of the single run (items without tests)")
    files: dict[str, str | bytes] = Field(default_factory=dict, description="relative path -> contents, "
                                          "written into the home directory before the program runs")
    fetch_files: list[str] = Field(default_factory=list, max_length=MAX_FILES,
                                   description="paths read back after the single run (items without tests)")
    timeout: float | None = Field(default=None, gt=0, le=24 * 3600, description="seconds per run")
    compile_timeout: float = Field(default=30.0, gt=0, le=3600, description="seconds for the compile (cpp)")
    memory_mb: int | None = Field(default=None, ge=64, le=1024 * 1024)
    tests: list[TestCase] = Field(default_factory=list, max_length=MAX_TESTS)
    compare: CompareMode = "exact"
    tolerance: float = Field(default=1e-6, ge=0, description="absolute or relative, for compare='float'")

    @field_validator("files")
    @classmethod
    def _files(cls, files: dict[str, str | bytes]) -> dict[str, str | bytes]:
        if len(files) > MAX_FILES:
            raise ValueError(f"at most {MAX_FILES} files per item")
        for path, data in files.items():
            problem = _relative_path_problem(path)
            if problem:
                raise ValueError(f"{path!r}: {problem}")
            size = len(data.encode() if isinstance(data, str) else data)
            if size > wire.MAX_FILE_BYTES:
                raise ValueError(f"{path!r} is {size} bytes; the limit is {wire.MAX_FILE_BYTES}")
        return files

    @field_validator("fetch_files")
    @classmethod
    def _fetch(cls, paths: list[str]) -> list[str]:
        for path in paths:
            problem = wire.path_problem(path)
            if problem:
                raise ValueError(f"{path!r}: {problem}")
        return paths

    @model_validator(mode="after")
    def _single_run_fields(self) -> BatchItem:
        if self.tests and (self.stdin is not None or self.fetch_files):
            raise ValueError("stdin and fetch_files are for an item without tests (each test has its own stdin)")
        return self


def _relative_path_problem(path: str) -> str | None:
    if path.startswith("/"):
        return "must be relative to the home directory"
    if any(part in ("", ".", "..") for part in path.split("/")):
        return "must not contain empty, '.' or '..' parts"
    return wire.path_problem(path)


def parse_item(raw: Any) -> BatchItem:
    """A BatchItem from a BatchItem or a dict; ValueError (with every problem named) if invalid."""
    if isinstance(raw, BatchItem):
        return raw
    if not isinstance(raw, dict):
        raise ValueError(f"an item is a BatchItem or a dict, not {type(raw).__name__}")
    try:
        return BatchItem(**raw)
    except ValidationError as exc:
        raise ValueError("; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'item'}: {error['msg']}" for error in exc.errors()
        )) from None
    except TypeError as exc:  # a non-string key
        raise ValueError(str(exc)) from None


def as_bytes(data: str | bytes) -> bytes:
    """File contents or stdin as bytes (str is UTF-8)."""
    return data.encode() if isinstance(data, str) else data

